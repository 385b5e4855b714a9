"""Fits over a capacity sweep: bits = c · params, the more-steps check, and the scaling law.

- :func:`fit_capacity`: per seed, least squares through the origin, c = Σ b·P / Σ P²; across seeds
  the mean with a Student-t interval (n − 1 degrees of freedom; needs ≥ 2 seeds, ≥ 3 asked).
  Allen-Zhu & Li instead report the *peak* capacity ratio R = bits / params over the sizes they
  train (≥ 2 at 1,000 exposures, ≥ 1 at 100); ``peak_ratio`` (the largest mean-over-seeds
  bits/params among the sizes) is that summary, kept beside c. Which parameter count they use
  could not be checked here (only their abstract is in the searchable corpus), so both counts are
  fitted and reported: all parameters and non-embedding parameters.
- :func:`steps_check`: the check that the models are capacity-limited, not training-limited: the
  same size and seed retrained with more steps; the ratio of bits stored (long / base) with a
  paired bootstrap CI over facts. A ratio whose CI includes 1 (or lies below it) means more
  training no longer raises bits; a CI above 1 means the base run was still training-limited.
- :func:`scaling_fit`: cross-entropy at the value positions L(x) = H + A·x^−α against parameters
  or exposures (scipy ``curve_fit``), with H free (compared with the data's exact entropy) or fixed
  to it.
"""

from __future__ import annotations

import math

import numpy as np

from ffnmem.core.errors import BadInput


def _t_interval(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """Student-t interval of the mean; None (undefined, stored as NULL) below two values."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None, None
    half = stats.t.ppf((1 + level) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def fit_capacity(rows: list[dict], *, params: str = "params_non_embedding", bits: str = "bits",
                 level: float = 0.95) -> dict:
    """c in bits = c · params per seed and over seeds (mean, t CI). ``params``: which count."""
    if not rows:
        raise BadInput("no sweep rows to fit")
    seeds = sorted({r["seed"] for r in rows})
    per_seed = {}
    for s in seeds:
        p = np.array([r[params] for r in rows if r["seed"] == s], dtype=float)
        b = np.array([r[bits] for r in rows if r["seed"] == s], dtype=float)
        per_seed[s] = float((b * p).sum() / (p * p).sum())
    cs = np.array(list(per_seed.values()))
    lo, hi = _t_interval(cs, level)
    ratios: dict[int, list[float]] = {}
    for r in rows:
        ratios.setdefault(r[params], []).append(r[bits] / r[params])
    peak_p, peak = max(((p, float(np.mean(v))) for p, v in ratios.items()), key=lambda t: t[1])
    return {"params": params, "bits": bits, "c": float(cs.mean()), "c_lo": lo, "c_hi": hi, "n_seeds": len(cs),
            "level": level, "peak_ratio": peak, "peak_ratio_params": int(peak_p), "per_seed": per_seed}


def steps_check(rows: list[dict], checks: list[dict], *, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> list[dict]:
    """Per retrained (size, seed): bits base and long, the ratio long/base and the gain long − base,
    each with a paired bootstrap CI over facts (needs ``per_fact_bits`` in both); ``still_rising``
    when the gain's CI lies above 0 (the ratio is undefined, NULL, when the base stores ≤ 0 bits)."""
    base = {(r["size"], r["seed"]): r for r in rows}
    rng = np.random.default_rng(seed)
    out = []
    for c in checks:
        b = base.get((c["size"], c["seed"]))
        if b is None:
            raise BadInput(f"check run {c['size']} seed {c['seed']} has no base run to compare with")
        x, y = np.array(b["per_fact_bits"]), np.array(c["per_fact_bits"])
        if len(x) != len(y):
            raise BadInput(f"check run {c['size']} scored {len(y)} facts, its base {len(x)}")
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = y[idx].sum(1) / x[idx].sum(1)
        q = 100 * (1 - level) / 2
        lo, hi = np.nanpercentile(ratios, [q, 100 - q])
        gains = y[idx].sum(1) - x[idx].sum(1)
        g_lo, g_hi = np.percentile(gains, [q, 100 - q])
        ratio = y.sum() / x.sum() if x.sum() > 0 else None  # a ratio means nothing when base bits are <= 0
        out.append({"size": c["size"], "seed": c["seed"], "steps_base": b["steps"], "steps_long": c["steps"],
                    "bits_base": float(x.sum()), "bits_long": float(y.sum()), "ratio": ratio,
                    "ratio_lo": float(lo) if ratio is not None else None,
                    "ratio_hi": float(hi) if ratio is not None else None,
                    "gain": float(y.sum() - x.sum()), "gain_lo": float(g_lo), "gain_hi": float(g_hi),
                    "still_rising": bool(g_lo > 0)})
    return out


def _law(x, h, a, alpha):
    return h + a * np.power(x, -alpha)


def scaling_fit(x, y, *, h: float | None = None) -> dict:
    """Fit L = H + A·x^−α (H fixed when given). Returns H, A, α with standard errors (from the
    covariance of ``curve_fit``; nan when it cannot be estimated) and the residual RMS."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < (2 if h is not None else 3) or np.any(x <= 0):
        raise BadInput(f"a scaling fit needs at least {2 if h is not None else 3} points with x > 0")
    import warnings

    from scipy.optimize import OptimizeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # an unestimable covariance is reported as NULL
        return _fit(x, y, h, curve_fit)


def _fit(x, y, h, curve_fit) -> dict:
    scale = float(np.exp(np.log(x).mean()))  # fit in x / scale: A stays of order y
    xs = x / scale
    try:
        if h is None:
            p, cov = curve_fit(_law, xs, y, p0=[max(0.0, y.min() * 0.9), y.max() - y.min() + 1e-3, 0.5],
                               bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, 5.0]), maxfev=20000)
            hh, a, alpha = p
            err = np.sqrt(np.clip(np.diag(cov), 0, None))
        else:
            p, cov = curve_fit(lambda t, a, alpha: _law(t, h, a, alpha), xs, y,
                               p0=[max(y.max() - h, 1e-3), 0.5], bounds=([0.0, 0.0], [np.inf, 5.0]), maxfev=20000)
            hh, (a, alpha) = h, p
            err = np.r_[0.0, np.sqrt(np.clip(np.diag(cov), 0, None))]
    except (RuntimeError, ValueError) as exc:
        raise BadInput(f"the scaling fit did not converge ({exc})") from None
    a_orig = a * scale ** alpha  # A·(x/s)^−α = (A·s^α)·x^−α
    resid = y - _law(x, hh, a_orig, alpha)

    def fin(v):  # an unestimable standard error is NULL, not inf (results refuse non-finite numbers)
        return float(v) if np.isfinite(v) else None

    return {"H": float(hh), "H_se": fin(err[0]), "A": float(a_orig), "alpha": float(alpha),
            "alpha_se": fin(err[2]), "h_fixed": h is not None,
            "rms": float(np.sqrt(np.mean(resid ** 2))), "n": len(x)}


def scaling_points(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(by size: mean CE bits over seeds at the end of training against non-embedding and all params;
    by exposures: CE bits at each evaluation, per size and seed)."""
    sizes = sorted({r["size"] for r in rows}, key=lambda s: next(r["params_non_embedding"] for r in rows if r["size"] == s))
    by_size = []
    for s in sizes:
        rs = [r for r in rows if r["size"] == s]
        by_size.append({"size": s, "params_non_embedding": rs[0]["params_non_embedding"], "params_all": rs[0]["params_all"],
                        "ce_bits": float(np.mean([r["ce_bits"] for r in rs])),
                        "ce_bits_sd": float(np.std([r["ce_bits"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
                        "h_bits": rs[0]["h_bits"], "n_seeds": len(rs)})
    by_exp = [{"size": r["size"], "seed": r["seed"], "params_non_embedding": r["params_non_embedding"],
               "exposures": e["exposures"], "ce_bits": e["ce_bits"], "accuracy": e["accuracy"]}
              for r in rows for e in r["evals"]]
    return by_size, by_exp
