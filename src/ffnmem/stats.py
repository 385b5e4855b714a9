"""Statistics shared by every analysis: bootstrap intervals, rank correlation, logistic fits, exact
tails, and the hypothesis tests a claim rests on.

One place for them, so a claim's CI or p-value means the same thing whichever analysis made it.
All functions are pure; the random ones are seeded through the caller's ``numpy.random.Generator``
(or an int seed). Each test returns a :class:`TestResult`; its null hypothesis:

- :func:`permutation_test`: two independent samples ``x`` and ``y`` come from one distribution
  (the labels are exchangeable); default statistic ``mean(x) - mean(y)``.
- :func:`paired_permutation_test`: within each pair, ``x_i`` and ``y_i`` are exchangeable, so each
  difference ``x_i - y_i`` is symmetric about 0 (sign-flip test); default statistic the mean
  difference. Use it for "target drop vs random-set drop on the same prompts".
- :func:`sign_test`: a paired difference is as likely positive as negative (ties dropped).
- :func:`binomial_test`: ``successes`` is a Binomial(``n``, ``p0``) draw.
- :func:`bootstrap_diff_ci` is an interval, not a test: percentile bootstrap CI of
  ``mean(x) - mean(y)`` for two independent samples.
- :func:`holm` adjusts the p-values of a claim's sub-tests (Holm–Bonferroni, family-wise error).

Permutation p-values follow scipy: when the resamples cover every arrangement the test is exact
(the observed arrangement is one of them); otherwise ``p = (count + 1) / (n_resamples + 1)``, which
counts the observed arrangement too, so p is never 0. Two-sided p is twice the smaller tail, at most 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.stats import spearmanr

from ffnmem.core.errors import BadInput

Seed = np.random.Generator | int
_ALTERNATIVES = ("greater", "less", "two-sided")  # a str, not a Literal: a bad one is a BadInput


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


def median_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000,
              level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the median of ``values`` (nan, nan for an empty array); report it
    beside the mean where one outlier can move the mean (relative drops of small margins)."""
    if len(values) == 0:
        return math.nan, math.nan
    medians = np.median(values[rng.integers(0, len(values), size=(n_boot, len(values)))], 1)
    return float(np.percentile(medians, 100 * (1 - level) / 2)), float(np.percentile(medians, 100 * (1 + level) / 2))


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


@dataclass(frozen=True)
class TestResult:
    """One test's outcome: ``statistic`` observed, its mean under the null, the p-value, the number
    of observations used (both samples; pairs; trials), and ``method`` in words."""

    __test__ = False  # not a pytest class, despite the name

    statistic: float
    null_mean: float
    p_value: float
    n: int
    method: str


def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """``mean(x) - mean(y)`` along ``axis`` (vectorised, as scipy's resampling wants)."""
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def mean_paired_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """``mean(x - y)`` along ``axis``: the mean of paired differences."""
    return np.mean(x - y, axis=axis)


def _sample(values, name: str) -> np.ndarray:
    """``values`` as a non-empty, finite 1-D float array, or a BadInput saying what is wrong."""
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise BadInput(f"{name} must be a non-empty 1-D sample (got shape {a.shape}); pass at least one value")
    if not np.isfinite(a).all():
        raise BadInput(f"{name} has {int((~np.isfinite(a)).sum())} NaN/inf values; drop or fix them before testing")
    return a


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _sample(x, "x"), _sample(y, "y")
    if x.size != y.size:
        raise BadInput(f"paired samples differ in length ({x.size} vs {y.size}); pass one x and one y per pair")
    return x, y


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise BadInput(f"alternative {alternative!r} is not one of {', '.join(_ALTERNATIVES)}")


def _resampled(data: tuple[np.ndarray, ...], statistic: Callable, kind: str, n_arrangements: int,
               n_resamples: int, alternative: str, rng: Seed, name: str) -> TestResult:
    """Run ``scipy.stats.permutation_test`` and describe the run in a TestResult."""
    _check_alternative(alternative)
    if n_resamples < 1:
        raise BadInput(f"n_resamples is {n_resamples}; use at least 1 (9999 for a claim)")
    res = sps.permutation_test(data, statistic, permutation_type=kind, n_resamples=n_resamples,
                               alternative=alternative, rng=np.random.default_rng(rng))
    exact = n_resamples >= n_arrangements
    how = f"exact, all {n_arrangements} arrangements" if exact else f"{n_resamples} random arrangements"
    return TestResult(float(res.statistic), float(np.mean(res.null_distribution)), float(res.pvalue),
                      sum(len(d) for d in data) if kind == "independent" else len(data[0]),
                      f"{name} ({how}, {alternative})")


def permutation_test(x, y, *, rng: Seed, statistic: Callable = mean_diff, n_resamples: int = 9999,
                     alternative: str = "two-sided") -> TestResult:
    """Permutation test of two independent samples (null: the labels x/y are exchangeable).

    ``statistic(x, y, axis)`` defaults to ``mean(x) - mean(y)``; "greater" asks whether it is larger
    than chance. Exact when ``n_resamples`` reaches the number of distinct splits.
    """
    x, y = _sample(x, "x"), _sample(y, "y")
    return _resampled((x, y), statistic, "independent", math.comb(x.size + y.size, x.size),
                      n_resamples, alternative, rng, "permutation test")


def paired_permutation_test(x, y, *, rng: Seed, statistic: Callable = mean_paired_diff,
                            n_resamples: int = 9999, alternative: str = "two-sided") -> TestResult:
    """Sign-flip test of paired samples (null: each ``x_i - y_i`` is symmetric about 0).

    Swapping ``x_i`` and ``y_i`` within a pair flips the sign of its difference; with the default
    statistic (the mean difference) this is the classic sign-flip test. Exact up to ``2**n`` flips.
    """
    x, y = _pair(x, y)
    return _resampled((x, y), statistic, "samples", 2 ** x.size, n_resamples, alternative, rng,
                      "paired sign-flip permutation test")


def binomial_test(successes: int, n: int, p0: float = 0.5, alternative: str = "two-sided") -> TestResult:
    """Exact binomial test (null: ``successes ~ Binomial(n, p0)``); statistic is ``successes / n``."""
    _check_alternative(alternative)
    if n < 1 or not 0 <= successes <= n:
        raise BadInput(f"binomial test needs 0 <= successes <= n and n >= 1 (got {successes} of {n})")
    if not 0 <= p0 <= 1:
        raise BadInput(f"p0 is {p0}; a null success probability lies in [0, 1]")
    res = sps.binomtest(int(successes), int(n), p0, alternative=alternative)
    return TestResult(successes / n, p0, float(res.pvalue), int(n), f"exact binomial test (p0={p0}, {alternative})")


def sign_test(x, y, alternative: str = "two-sided") -> TestResult:
    """Sign test of paired samples (null: ``x_i > y_i`` as likely as ``x_i < y_i``); ties are dropped.

    Statistic: the share of untied pairs with ``x_i > y_i``. If every pair ties there is no evidence
    either way: p = 1 with n = 0.
    """
    _check_alternative(alternative)
    x, y = _pair(x, y)
    above, below = int((x > y).sum()), int((x < y).sum())
    if above + below == 0:
        return TestResult(0.5, 0.5, 1.0, 0, f"sign test (all {x.size} pairs tied, {alternative})")
    res = binomial_test(above, above + below, 0.5, alternative)
    return TestResult(res.statistic, 0.5, res.p_value, res.n,
                      f"sign test ({x.size - res.n} ties dropped, {alternative})")


def bootstrap_diff_ci(x, y, rng: Seed, n_boot: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(x) - mean(y)``, each sample resampled on its own."""
    x, y = _sample(x, "x"), _sample(y, "y")
    if n_boot < 1 or not 0 < level < 1:
        raise BadInput(f"need n_boot >= 1 and 0 < level < 1 (got {n_boot}, {level})")
    rng = np.random.default_rng(rng)
    diffs = (x[rng.integers(0, x.size, (n_boot, x.size))].mean(1)
             - y[rng.integers(0, y.size, (n_boot, y.size))].mean(1))
    return float(np.percentile(diffs, 100 * (1 - level) / 2)), float(np.percentile(diffs, 100 * (1 + level) / 2))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input's order (reject where adjusted p <= alpha).

    Sorted ascending, the i-th smallest (0-based) of m is multiplied by ``m - i``; a running maximum
    keeps the adjusted values in the same order as the raw ones; each is capped at 1.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or p.size == 0:
        raise BadInput("holm needs a non-empty list of p-values; pass one p-value per sub-test")
    if not ((p >= 0) & (p <= 1)).all():
        raise BadInput(f"p-values must lie in [0, 1] (got {p[~((p >= 0) & (p <= 1))][:3].tolist()})")
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (p.size - np.arange(p.size))))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


# --- the tests a claim names (``test = ...`` in probes/claims/*.toml) -------------------------------

CLAIM_TESTS = ("paired", "proportion", "correlation")


@dataclass(frozen=True)
class Estimate:
    """A claim's statistic on its items: ``estimate`` (effect: claim minus null) with its percentile
    bootstrap ``ci`` over items, the raw ``value`` and ``null`` it compares, the p-value of the null
    in the claimed direction, ``n`` items and the method in words."""

    estimate: float
    ci: tuple[float, float]
    value: float
    null: float
    p_value: float
    n: int
    method: str


def claim_test(test: str, columns: dict[str, np.ndarray], *, alternative: str, rng: Seed,
               n_resamples: int = 9999, n_boot: int = 2000) -> Estimate:
    """Run a claim's test on its per-item columns (one entry per item: fact, neuron, seed, ...).

    * ``paired`` (``value``, ``null``): estimate ``mean(value - null)``; p by sign-flip permutation.
    * ``proportion`` (``success`` 0/1, ``p0`` each item's success probability under the null):
      estimate ``mean(success) - mean(p0)``; p the exact Poisson-binomial tail of the success count.
    * ``correlation`` (``x``, ``y``): estimate Spearman's rho; null 0 with ``y`` permuted over items.

    The CI is a percentile bootstrap over items (items resampled whole). ``alternative`` is
    ``greater`` or ``less``: claims are directional.
    """
    if alternative not in ("greater", "less"):
        raise BadInput(f"a claim's alternative is 'greater' or 'less', not {alternative!r}")
    if test not in CLAIM_TESTS:
        raise BadInput(f"unknown claim test {test!r}; choose from {', '.join(CLAIM_TESTS)}")
    rng = np.random.default_rng(rng)
    need = {"paired": ("value", "null"), "proportion": ("success", "p0"), "correlation": ("x", "y")}[test]
    missing = [c for c in need if c not in columns]
    if missing:
        raise BadInput(f"a {test} test needs columns {', '.join(need)}; the query gave no {', '.join(missing)}")
    a, b = _pair(columns[need[0]], columns[need[1]])
    if a.size < 2:
        raise BadInput(f"a {test} test needs at least 2 items; the query gave {a.size}")
    boot = rng.integers(0, a.size, size=(n_boot, a.size))
    if test == "correlation":
        return _correlation(a, b, boot, alternative, rng, n_resamples)
    if test == "proportion":
        if not np.isin(a, (0, 1)).all() or not ((b >= 0) & (b <= 1)).all():
            raise BadInput("a proportion test needs success in {0, 1} and p0 in [0, 1]")
        k = int(a.sum())
        p = poisson_binomial_tail(b.tolist(), k) if alternative == "greater" else \
            1 - poisson_binomial_tail(b.tolist(), k + 1)
        lo, hi = _percentiles((a[boot] - b[boot]).mean(1))
        return Estimate(float(a.mean() - b.mean()), (lo, hi), float(a.mean()), float(b.mean()), float(min(1.0, p)),
                        a.size, f"exact Poisson-binomial tail of {k} successes in {a.size} ({alternative})")
    d = a - b
    if not d.any():  # every pair ties: no evidence either way
        p, how = 1.0, "all pairs tied"
    else:
        res = paired_permutation_test(a, b, rng=rng, n_resamples=n_resamples, alternative=alternative)
        p, how = res.p_value, res.method
    lo, hi = _percentiles(d[boot].mean(1))
    return Estimate(float(d.mean()), (lo, hi), float(a.mean()), float(b.mean()), float(p), a.size, how)


def _percentiles(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    return float(np.percentile(draws, 100 * (1 - level) / 2)), float(np.percentile(draws, 100 * (1 + level) / 2))


def _pearson_rows(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson correlation along ``axis`` (on ranks it is Spearman's rho); nan for a constant row."""
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    den = np.sqrt((xc ** 2).sum(axis=axis) * (yc ** 2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=axis) / np.where(den > 0, den, 1), np.nan)


def _correlation(x: np.ndarray, y: np.ndarray, boot: np.ndarray, alternative: str, rng, n_resamples: int) -> Estimate:
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    rho = float(_pearson_rows(rx, ry))
    if math.isnan(rho):
        return Estimate(math.nan, (math.nan, math.nan), math.nan, 0.0, 1.0, x.size,
                        "Spearman rho undefined (a constant column)")
    res = sps.permutation_test((rx, ry), _pearson_rows, permutation_type="pairings", n_resamples=n_resamples,
                               alternative=alternative, vectorized=True, rng=rng)
    lo, hi = _percentiles(_pearson_rows(sps.rankdata(x[boot], axis=1), sps.rankdata(y[boot], axis=1)))
    return Estimate(rho, (lo, hi), rho, 0.0, float(res.pvalue), x.size,
                    f"Spearman rho, permutation test of the pairings ({n_resamples} permutations, {alternative})")
