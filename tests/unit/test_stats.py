"""ffnmem.stats: the statistics every analysis shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import binom

from ffnmem.core.errors import BadInput
from ffnmem.stats import (
    TestResult,
    binomial_test,
    bootstrap_ci,
    bootstrap_diff_ci,
    holm,
    logistic_fit,
    mean_ci,
    median_ci,
    paired_permutation_test,
    permutation_test,
    poisson_binomial_tail,
    sign_test,
    spearman,
)


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


def test_median_ci_brackets_the_median_and_ignores_an_outlier():
    rng = np.random.default_rng(0)
    x = np.append(rng.normal(size=99), 1e6)  # one outlier drags the mean, not the median
    lo, hi = median_ci(x, np.random.default_rng(1))
    assert lo < np.median(x) < hi and hi < 1
    assert mean_ci(x, np.random.default_rng(1))[1] > 1000
    assert all(math.isnan(v) for v in median_ci(np.array([]), rng))


def test_logistic_fit_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 20000)
    y = (rng.uniform(size=x.size) < 1 / (1 + np.exp(-(0.5 + 2.0 * x)))).astype(float)
    a, b = logistic_fit(x, y)
    assert a == pytest.approx(0.5, abs=0.1) and b == pytest.approx(2.0, abs=0.1)


def test_spearman_is_nan_when_constant():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))


# --- hypothesis tests -------------------------------------------------------------------------------------------

def _within_binomial(hits: int, reps: int, p: float) -> bool:
    """``hits`` of ``reps`` is inside the central 99% of Binomial(reps, p)."""
    lo, hi = binom.interval(0.99, reps, p)
    return lo <= hits <= hi


def _null_p_values(test, alternative: str, reps: int = 200, n: int = 8) -> np.ndarray:
    rng = np.random.default_rng(123)
    return np.array([test(rng.normal(size=n), rng.normal(size=n), rng=rng, n_resamples=199,
                          alternative=alternative).p_value for _ in range(reps)])


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("test", [permutation_test, paired_permutation_test])
def test_permutation_tests_are_calibrated_under_the_null(test, alternative):
    # both samples from one distribution: P(p <= a) = a, so the share of rejections is Binomial(200, a)
    p = _null_p_values(test, alternative)
    for a in (0.05, 0.5):
        assert _within_binomial(int((p <= a).sum()), p.size, a), f"share of p <= {a}: {(p <= a).mean():.3f}"
    assert p.min() >= 1 / 200  # the observed arrangement counts: p is never 0


def test_sign_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(7)
    p = np.array([sign_test(rng.normal(size=20), rng.normal(size=20)).p_value for _ in range(200)])
    for a in (0.05, 0.5):
        # a discrete test is conservative: its exact size at a is P(p <= a) over the 21 outcomes of B(20, 0.5)
        size = sum(binom.pmf(k, 20, 0.5) for k in range(21) if sps.binomtest(k, 20).pvalue <= a)
        assert size <= a and _within_binomial(int((p <= a).sum()), p.size, size)


def test_tests_find_a_clear_effect():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.5, 1, 20), rng.normal(0, 1, 20)
    assert permutation_test(x, y, rng=1, n_resamples=999, alternative="greater").p_value < 0.01
    assert permutation_test(x, y, rng=1, n_resamples=999).p_value < 0.01
    assert permutation_test(x, y, rng=1, n_resamples=999, alternative="less").p_value > 0.9
    # paired: a big shared per-prompt spread hides the effect from an independent test, not from a paired one
    base = rng.normal(0, 10, 20)
    target, random_set = base + 1 + rng.normal(0, 0.3, 20), base + rng.normal(0, 0.3, 20)
    assert paired_permutation_test(target, random_set, rng=1, n_resamples=999, alternative="greater").p_value < 0.01
    assert permutation_test(target, random_set, rng=1, n_resamples=999, alternative="greater").p_value > 0.05
    assert sign_test(target, random_set, alternative="greater").p_value < 0.01
    assert binomial_test(18, 20, 0.5, "greater").p_value < 0.01


def test_permutation_tests_agree_exactly_with_scipy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.4, 1, 12), rng.normal(0, 1, 9)
    ours = permutation_test(x, y, rng=5, n_resamples=500, alternative="greater")
    theirs = sps.permutation_test((x, y), lambda a, b, axis: a.mean(axis) - b.mean(axis), n_resamples=500,
                                  alternative="greater", rng=np.random.default_rng(5))
    assert (ours.statistic, ours.p_value) == (theirs.statistic, theirs.pvalue)
    assert ours.null_mean == theirs.null_distribution.mean() and ours.n == 21 and "500 random" in ours.method
    # exact paired test (2**8 = 256 flips) = scipy's one-sample sign flip of the differences
    a, b = rng.normal(0.5, 1, 8), rng.normal(0, 1, 8)
    paired = paired_permutation_test(a, b, rng=0, n_resamples=10_000)
    flips = sps.permutation_test((a - b,), lambda d, axis: d.mean(axis), permutation_type="samples",
                                 n_resamples=10_000)
    assert paired.p_value == pytest.approx(flips.pvalue, abs=1e-12) and "all 256" in paired.method
    assert paired.statistic == pytest.approx(np.mean(a - b))


def test_binomial_and_sign_tests_agree_exactly_with_scipy():
    for k, n, p0, alt in [(7, 10, 0.5, "two-sided"), (3, 40, 0.2, "less"), (9, 12, 0.5, "greater")]:
        assert binomial_test(k, n, p0, alt) == TestResult(k / n, p0, sps.binomtest(k, n, p0, alt).pvalue, n,
                                                          f"exact binomial test (p0={p0}, {alt})")
    x, y = np.array([3.0, 2, 5, 1, 4, 4]), np.array([1.0, 2, 2, 0, 1, 5])  # 4 above, 1 below, 1 tie
    res = sign_test(x, y, alternative="greater")
    assert res.p_value == sps.binomtest(4, 5, 0.5, "greater").pvalue
    assert (res.statistic, res.n) == (0.8, 5) and "1 ties dropped" in res.method


def test_p_value_counts_the_observed_arrangement():
    # perfectly separated samples: every random arrangement is below the observed one, yet p = 1/(99+1), not 0
    x, y = np.arange(10.0) + 100, np.arange(10.0)
    assert permutation_test(x, y, rng=0, n_resamples=99, alternative="greater").p_value == 1 / 100
    # exact: C(6, 3) = 20 splits, the observed one the only one as extreme
    assert permutation_test([1, 1, 1], [0, 0, 0], rng=0, alternative="greater").p_value == 1 / 20


def test_holm_matches_a_hand_computed_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max -> 0.06 for the last
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Holm rejects all three at 0.05 where Bonferroni (x3) would reject only the first
    assert holm([0.01, 0.02, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]  # 1.2 and 0.7 -> running max 1.2 -> capped at 1
    assert holm([0.2]).tolist() == [0.2]


def test_seeded_tests_and_intervals_are_reproducible():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=15), rng.normal(0.3, 1, 15)
    kw = dict(n_resamples=99)
    assert permutation_test(x, y, rng=4, **kw) == permutation_test(x, y, rng=np.random.default_rng(4), **kw)
    assert paired_permutation_test(x, y, rng=4, **kw) == paired_permutation_test(x, y, rng=4, **kw)
    assert permutation_test(x, y, rng=4, **kw).null_mean != permutation_test(x, y, rng=5, **kw).null_mean
    assert bootstrap_diff_ci(x, y, 4) == bootstrap_diff_ci(x, y, np.random.default_rng(4))
    assert bootstrap_diff_ci(x, y, 4) != bootstrap_diff_ci(x, y, 5)


def test_bootstrap_diff_ci_covers_the_true_difference():
    rng = np.random.default_rng(11)
    cover = sum(lo <= 1.0 <= hi for lo, hi in (bootstrap_diff_ci(rng.normal(1, 1, 30), rng.normal(0, 2, 30), rng,
                                                                   n_boot=400) for _ in range(200)))
    # the percentile interval under-covers a little at n = 30; 99% band of Binomial(200, 0.95) is [181, 197]
    assert _within_binomial(cover, 200, 0.95), f"coverage {cover / 200:.3f}"
    lo, hi = bootstrap_diff_ci([5.0, 5.0, 5.0], [2.0, 2.0], 0)
    assert (lo, hi) == (3.0, 3.0)  # constant samples: no spread, the interval is the difference itself


def test_constant_and_tied_samples():
    for alt in ("greater", "less", "two-sided"):
        res = permutation_test([2.0] * 5, [2.0] * 5, rng=0, alternative=alt)
        assert (res.statistic, res.p_value) == (0.0, 1.0)
        assert paired_permutation_test([2.0] * 5, [2.0] * 5, rng=0, alternative=alt).p_value == 1.0
    tied = sign_test([1.0, 2.0], [1.0, 2.0])
    assert (tied.p_value, tied.n) == (1.0, 0) and "all 2 pairs tied" in tied.method


@pytest.mark.parametrize("call, match", [
    (lambda: permutation_test([], [1.0], rng=0), "x must be a non-empty"),
    (lambda: permutation_test([1.0], np.array([]), rng=0), "y must be a non-empty"),
    (lambda: paired_permutation_test([1.0, 2.0], [1.0], rng=0), "differ in length"),
    (lambda: paired_permutation_test([1.0, np.nan], [1.0, 2.0], rng=0), "NaN/inf"),
    (lambda: permutation_test([1.0], [2.0], rng=0, alternative="bigger"), "alternative 'bigger'"),
    (lambda: permutation_test([1.0], [2.0], rng=0, n_resamples=0), "n_resamples"),
    (lambda: sign_test([], []), "non-empty"),
    (lambda: binomial_test(5, 3), "successes <= n"),
    (lambda: binomial_test(1, 3, 1.5), "p0"),
    (lambda: bootstrap_diff_ci([], [1.0], 0), "non-empty"),
    (lambda: bootstrap_diff_ci([1.0], [1.0], 0, level=95.0), "level"),
    (lambda: holm([]), "non-empty"),
    (lambda: holm([0.2, 1.3]), r"\[0, 1\]"),
])
def test_bad_input_is_a_clear_one_line_error(call, match):
    with pytest.raises(BadInput, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --- claim tests (ffnmem.stats.claim_test): known answers -----------------------------------------

def test_claim_paired_exact_sign_flip_and_direction():
    from ffnmem.stats import claim_test

    value, null = np.array([1.0, 2, 3, 4, 5]), np.zeros(5)
    up = claim_test("paired", {"value": value, "null": null}, alternative="greater", rng=0, n_resamples=99)
    assert up.estimate == 3 and up.value == 3 and up.null == 0 and up.n == 5
    assert up.p_value == pytest.approx(1 / 32)  # exact: only the observed signs reach a mean of 3
    down = claim_test("paired", {"value": value, "null": null}, alternative="less", rng=0, n_resamples=99)
    assert down.p_value == 1.0
    assert up.ci[0] <= up.estimate <= up.ci[1]
    tied = claim_test("paired", {"value": value, "null": value}, alternative="greater", rng=0)
    assert tied.p_value == 1.0 and tied.estimate == 0


def test_claim_proportion_is_the_binomial_tail_when_p0_is_constant():
    from scipy.stats import binomtest

    from ffnmem.stats import claim_test

    success = np.array([1] * 9 + [0] * 11, dtype=float)
    res = claim_test("proportion", {"success": success, "p0": np.full(20, 0.2)}, alternative="greater", rng=0)
    assert res.p_value == pytest.approx(binomtest(9, 20, 0.2, alternative="greater").pvalue)
    assert res.estimate == pytest.approx(0.45 - 0.2) and res.null == pytest.approx(0.2)
    less = claim_test("proportion", {"success": success, "p0": np.full(20, 0.2)}, alternative="less", rng=0)
    assert less.p_value == pytest.approx(binomtest(9, 20, 0.2, alternative="less").pvalue)
    with pytest.raises(BadInput, match="success in"):
        claim_test("proportion", {"success": success * 2, "p0": np.full(20, 0.2)}, alternative="greater", rng=0)


def test_claim_correlation_permutes_the_pairings():
    from scipy.stats import spearmanr

    from ffnmem.stats import claim_test

    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    res = claim_test("correlation", {"x": x, "y": y}, alternative="greater", rng=0, n_resamples=999)
    assert res.estimate == pytest.approx(spearmanr(x, y).statistic) and res.null == 0
    assert res.p_value == pytest.approx(1 / 1000)  # no permutation reaches rho ~ 0.7 at n = 40
    assert res.ci[0] < res.estimate < res.ci[1] < 1
    flat = claim_test("correlation", {"x": x, "y": rng.normal(size=40)}, alternative="greater", rng=0, n_resamples=999)
    assert flat.p_value > 0.05
    with pytest.raises(BadInput, match="needs columns x, y"):
        claim_test("correlation", {"x": x}, alternative="greater", rng=0)
    with pytest.raises(BadInput, match="'greater' or 'less'"):
        claim_test("correlation", {"x": x, "y": y}, alternative="two-sided", rng=0)
