"""Statistics shared by every analysis: bootstrap intervals, rank correlation, logistic fits, exact tails.

One place for them, so a claim's CI or p-value means the same thing whichever analysis made it.
All functions are pure and seeded through the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr


def bootstrap_ci(x: np.ndarray, resamples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``x``; ``resamples[b]`` indexes resample ``b``.

    Pass the same ``resamples`` for several columns of one group so they share their draws.
    """
    means = x[resamples].mean(1)
    return float(np.percentile(means, 100 * (1 - level) / 2)), float(np.percentile(means, 100 * (1 + level) / 2))


def mean_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000,
            level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (nan, nan for an empty array)."""
    if len(values) == 0:
        return math.nan, math.nan
    return bootstrap_ci(values, rng.integers(0, len(values), size=(n_boot, len(values))), level)


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (nan when either is constant)."""
    if len(set(np.asarray(x).tolist())) < 2 or len(set(np.asarray(y).tolist())) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def logistic_fit(x: np.ndarray, y: np.ndarray, iters: int = 50, ridge: float = 1e-3) -> np.ndarray:
    """Intercept and slope of P(y=1) = σ(a + b x) by Newton's method (small ridge for separable data)."""
    X = np.stack([np.ones_like(x), x], 1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X @ w))
        grad = X.T @ (p - y) + ridge * w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + ridge * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    return w


def poisson_binomial_tail(ps: list[float], k: int) -> float:
    """``P(Σ Bernoulli(p_i) ≥ k)``, exact (dynamic programming over the PMF)."""
    pmf = np.zeros(len(ps) + 1)
    pmf[0] = 1.0
    for p in ps:
        pmf[1:] = pmf[1:] * (1 - p) + pmf[:-1] * p
        pmf[0] *= 1 - p
    return float(min(1.0, pmf[max(k, 0):].sum()))
