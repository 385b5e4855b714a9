"""ffnmem.stats: the statistics every analysis shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from ffnmem.stats import bootstrap_ci, logistic_fit, mean_ci, poisson_binomial_tail, spearman


def test_poisson_binomial_tail_matches_binomial_and_edges():
    assert poisson_binomial_tail([0.3] * 12, 5) == pytest.approx(binom.sf(4, 12, 0.3), abs=1e-12)
    assert poisson_binomial_tail([0.2, 0.9], 0) == 1.0
    assert poisson_binomial_tail([0.5, 0.5], 2) == pytest.approx(0.25)
    assert poisson_binomial_tail([0.5], 3) == 0.0


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, big = rng.normal(size=20), rng.normal(size=2000)
    lo_s, hi_s = mean_ci(small, np.random.default_rng(1))
    lo_b, hi_b = mean_ci(big, np.random.default_rng(1))
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5  # ~ 1/sqrt(n): 10x narrower
    assert all(math.isnan(v) for v in mean_ci(np.array([]), rng))
    x = np.arange(5.0)
    assert bootstrap_ci(x, np.tile(np.arange(5), (10, 1))) == (2.0, 2.0)  # every resample is x itself


def test_logistic_fit_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 20000)
    y = (rng.uniform(size=x.size) < 1 / (1 + np.exp(-(0.5 + 2.0 * x)))).astype(float)
    a, b = logistic_fit(x, y)
    assert a == pytest.approx(0.5, abs=0.1) and b == pytest.approx(2.0, abs=0.1)


def test_spearman_is_nan_when_constant():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))
