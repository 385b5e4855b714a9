"""Lossy compression of facts: what a model of fixed size loses, and what it answers instead.

Inputs are the rows of :func:`ffnmem.methods.frequency.score_queries` (one per fact: ``entity``,
``attribute``, ``answer``, ``loss_bits``, ``kl_bits``, ``correct``, ``exposures``, ``prediction`` =
the top-1 token and ``value_prediction`` = the attribute's value ranked highest) and the corpus'
fact table (for the value frequencies). Everything is pure.

* **Value frequency** of value v of attribute a: its share of a's value mentions in the corpus text,
  ``f(v) = Σ_facts e·((1 − ε)[v_f = v] + ε/|V|) / Σ_facts e`` (``weight="mentions"``: what a
  next-token predictor sees), or its share of the entities (``weight="facts"``). Rank 1 = most common.
* **Recall by bin**: accuracy, loss bits and KL gap with percentile-bootstrap CIs per log2 bin of
  exposure and per log2 bin of the true value's frequency rank (1, 2–3, 4–7, ...).
* **Substitution test**: over wrong answers that are another value of the right attribute, the
  share that is the attribute's most frequent *other* value (the most common value that is not the
  truth), against two nulls per row: the value-frequency null ``f(top)/(1 − f(truth))`` (the wrong
  answer drawn in proportion to corpus frequency) and the uniform null ``1/(|V| − 1)``; one-sided
  exact Poisson-binomial p-values (:func:`ffnmem.stats.poisson_binomial_tail`; rows assumed
  independent — a model with one default answer per attribute makes them dependent, hence the
  per-attribute table). Second statistic: the mean frequency rank of the wrong answer against its
  exact expectation under each null, p-value by Monte Carlo draws from the null (seeded).
* **KL gap by exposure**: the KL gap above the exact data entropy in rare (exposure ≤ the 1/3
  quantile, rounded down to an exposure that occurs) vs frequent (≥ the 2/3 quantile, rounded up) facts, the difference with a bootstrap CI and a
  permutation p-value.
* **Survival**: recall per exposure bin for each model size, and for each step down in size the
  exposures of the facts lost against those kept (which facts are forgotten first).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import pairwise

import numpy as np

from ffnmem.core.errors import BadInput
from ffnmem.stats import (
    bootstrap_diff_ci,
    mean_ci,
    permutation_test,
    poisson_binomial_tail,
)


# --- value frequencies ----------------------------------------------------------------------------
def value_frequencies(facts: list[dict], value_sets: dict[str, list[str]], *, weight: str = "mentions",
                      value_noise: float = 0.0) -> dict[str, dict[str, float]]:
    """attribute -> value -> share (sums to 1 per attribute); see the module docstring."""
    if weight not in ("mentions", "facts"):
        raise BadInput(f"weight {weight!r}; use mentions or facts")
    out: dict[str, dict[str, float]] = {}
    for a, vals in value_sets.items():
        fs = [f for f in facts if f["attribute"] == a]
        if not fs:
            continue
        w = {v: 0.0 for v in vals}
        for f in fs:
            e = float(f["exposures"]) if weight == "mentions" else 1.0
            noise = value_noise if weight == "mentions" else 0.0
            w[f["value"]] += e * (1 - noise)
            for v in vals:
                w[v] += e * noise / len(vals)
        total = sum(w.values())
        out[a] = {v: x / total for v, x in w.items()}
    return out


def frequency_ranks(freqs: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    """attribute -> value -> rank by frequency (1 = most common; ties by the value set's order)."""
    return {a: {v: r + 1 for r, v in enumerate(sorted(fv, key=lambda v: -fv[v]))} for a, fv in freqs.items()}


def bits_above_prior(rows: list[dict], freqs: dict[str, dict[str, float]]) -> float:
    """Σ over facts of ``−log2 f(v*) − loss bits``: what the model knows beyond the value law.

    ``log2|V| − loss`` (the capacity estimator) credits a model that only learned the value
    frequencies with ``log2|V| − H(f)`` bits per fact; against the prior ``f`` that part is 0.
    Unclipped; ``f`` must be positive at every answer (value noise or weight="mentions" with noise).
    """
    return float(sum(-math.log2(freqs[r["attribute"]][r["answer"]]) - r["loss_bits"] for r in rows))


def log2_bin(x: int | float) -> tuple[int, int]:
    """The log2 bin [2^k, 2^(k+1) − 1] holding the positive integer ``x``."""
    k = math.floor(math.log2(max(1, x)))
    return 2 ** k, 2 ** (k + 1) - 1


# --- 1. recall, loss and KL by exposure and by value frequency -------------------------------------
def recall_by(rows: list[dict], by: str, ranks: dict | None = None, *, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> list[dict]:
    """Per log2 bin of ``by`` ("exposures", or "value_rank": the true value's frequency rank, needs
    ``ranks``): n, accuracy, loss bits and KL gap, each with a bootstrap CI."""
    if not rows:
        raise BadInput("no scored facts to bin")
    if by == "value_rank":
        if ranks is None:
            raise BadInput("binning by value frequency needs the value ranks")
        x = [ranks[r["attribute"]][r["answer"]] for r in rows]
    elif by == "exposures":
        x = [r["exposures"] for r in rows]
    else:
        raise BadInput(f"cannot bin by {by!r}; use exposures or value_rank")
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, v in enumerate(x):
        groups[log2_bin(v)].append(i)
    rng = np.random.default_rng(seed)
    cols = {k: np.array([r[k] for r in rows], dtype=float) for k in ("correct", "loss_bits", "kl_bits")}
    out = []
    for (lo, hi), idx in sorted(groups.items()):
        row = {"by": by, "bin_lo": lo, "bin_hi": hi, "n": len(idx)}
        for k, name in (("correct", "accuracy"), ("loss_bits", "loss_bits"), ("kl_bits", "kl_bits")):
            vals = cols[k][idx]
            row[name] = float(vals.mean())
            row[f"{name}_lo"], row[f"{name}_hi"] = mean_ci(vals, rng, n_boot, level)
        out.append(row)
    return out


# --- 2. the substitution test --------------------------------------------------------------------------
def substitution_rows(rows: list[dict], freqs: dict[str, dict[str, float]], key: str = "prediction") -> list[dict]:
    """One row per wrong answer (``key`` ≠ answer) that is another value of the right attribute:
    the predicted value's rank, whether it is the most frequent other value (``top``), and each
    null's chance of that and expected rank."""
    ranks = frequency_ranks(freqs)
    out = []
    for r in rows:
        a, truth, pred = r["attribute"], r["answer"], r.get(key)
        if pred is None or pred == truth or pred not in freqs.get(a, {}):
            continue
        f, rk = freqs[a], ranks[a]
        others = [v for v in f if v != truth]
        top = min(others, key=lambda v: rk[v])
        rest = 1.0 - f[truth]
        out.append({"entity": r["entity"], "attribute": a, "answer": truth, "predicted": pred,
                    "exposures": r["exposures"], "answer_rank": rk[truth], "predicted_rank": rk[pred],
                    "top": pred == top, "chance_frequency": f[top] / rest if rest > 0 else None,
                    "chance_uniform": 1 / len(others),
                    "rank_frequency": sum(rk[v] * f[v] for v in others) / rest if rest > 0 else None,
                    "rank_uniform": float(np.mean([rk[v] for v in others]))})
    return out


def _rank_p(subs: list[dict], freqs: dict, null: str, n_sim: int, rng: np.random.Generator) -> float:
    """P(mean predicted rank ≤ observed) when each wrong answer is drawn from ``null`` (Monte Carlo)."""
    ranks = frequency_ranks(freqs)
    sims = np.zeros(n_sim)
    for (a, truth), n in Counter((s["attribute"], s["answer"]) for s in subs).items():
        others = [v for v in freqs[a] if v != truth]
        p = np.array([freqs[a][v] for v in others]) if null == "frequency" else np.ones(len(others))
        rk = np.array([ranks[a][v] for v in others], dtype=float)
        sims += rk[rng.choice(len(others), size=(n_sim, n), p=p / p.sum())].sum(1)
    observed = sum(s["predicted_rank"] for s in subs)
    return float((np.sum(sims <= observed) + 1) / (n_sim + 1))


def substitution_test(rows: list[dict], freqs: dict[str, dict[str, float]], *, key: str = "prediction",
                      n_boot: int = 1000, n_sim: int = 2000, seed: int = 0, level: float = 0.95,
                      subs: list[dict] | None = None) -> dict:
    """The substitution statistic against the value-frequency and uniform nulls (module docstring).

    ``rate_minus_frequency_null``: observed top-share minus the mean value-frequency chance, with a
    bootstrap CI over wrong answers; ``rate_ratio_frequency``: their ratio.
    """
    subs = substitution_rows(rows, freqs, key) if subs is None else subs  # given: computed once by the caller
    wrong = sum(1 for r in rows if r.get(key) != r["answer"])
    out = {"key": key, "n_scored": len(rows), "n_wrong": wrong, "n_substitutions": len(subs),
           "substitution_share": len(subs) / wrong if wrong else None}
    if not subs:
        return {**out, "n_top": 0, **{k: None for k in ("top_rate", "top_rate_lo", "top_rate_hi", "null_frequency",
                                                 "null_uniform", "p_frequency", "p_uniform", "rate_ratio_frequency",
                                                 "rate_minus_frequency_null", "rate_minus_frequency_null_lo",
                                                 "rate_minus_frequency_null_hi", "mean_rank", "mean_rank_frequency",
                                                 "mean_rank_uniform", "p_rank_frequency", "p_rank_uniform")}}
    rng = np.random.default_rng(seed)
    top = np.array([s["top"] for s in subs], dtype=float)
    cf = np.array([s["chance_frequency"] for s in subs], dtype=float)  # None (degenerate law) -> NaN
    cu = np.array([s["chance_uniform"] for s in subs])
    lo, hi = mean_ci(top, rng, n_boot, level)
    d_lo, d_hi = mean_ci(top - cf, rng, n_boot, level)
    k = int(top.sum())
    return {**out, "n_top": k, "top_rate": float(top.mean()), "top_rate_lo": lo, "top_rate_hi": hi,
            "null_frequency": float(cf.mean()), "null_uniform": float(cu.mean()),
            "p_frequency": poisson_binomial_tail(cf.tolist(), k), "p_uniform": poisson_binomial_tail(cu.tolist(), k),
            "rate_ratio_frequency": float(top.mean() / cf.mean()) if cf.mean() > 0 else None,
            "rate_minus_frequency_null": float((top - cf).mean()),
            "rate_minus_frequency_null_lo": d_lo, "rate_minus_frequency_null_hi": d_hi,
            "mean_rank": float(np.mean([s["predicted_rank"] for s in subs])),
            "mean_rank_frequency": float(np.mean(np.array([s["rank_frequency"] for s in subs], dtype=float))),
            "mean_rank_uniform": float(np.mean([s["rank_uniform"] for s in subs])),
            "p_rank_frequency": _rank_p(subs, freqs, "frequency", n_sim, rng),
            "p_rank_uniform": _rank_p(subs, freqs, "uniform", n_sim, rng)}


def substitution_by_attribute(rows: list[dict], freqs: dict[str, dict[str, float]], *,
                              key: str = "prediction", subs: list[dict] | None = None) -> list[dict]:
    """Per attribute: substitutions, top-share and its nulls, and the model's most common wrong
    answer with its share and frequency rank (one default answer per attribute shows here)."""
    subs = substitution_rows(rows, freqs, key) if subs is None else subs
    out = []
    for a in sorted({s["attribute"] for s in subs}):
        ss = [s for s in subs if s["attribute"] == a]
        (default, n_default), = Counter(s["predicted"] for s in ss).most_common(1)
        out.append({"attribute": a, "n_substitutions": len(ss), "top_rate": float(np.mean([s["top"] for s in ss])),
                    "null_frequency": float(np.mean([s["chance_frequency"] for s in ss])),
                    "null_uniform": float(np.mean([s["chance_uniform"] for s in ss])),
                    "default_answer": default, "default_share": n_default / len(ss),
                    "default_rank": frequency_ranks(freqs)[a][default]})
    return out


# --- 3. KL gap: rare vs frequent facts -----------------------------------------------------------
def exposure_cuts(rows: list[dict]) -> tuple[float, float]:
    """Rare facts have exposures ≤ the first cut, frequent ones ≥ the second (module docstring)."""
    e = np.array([r["exposures"] for r in rows], dtype=float)
    lo_cut, hi_cut = np.quantile(e, 1 / 3, method="lower"), np.quantile(e, 2 / 3, method="higher")
    if lo_cut >= hi_cut:
        raise BadInput("rare and frequent facts overlap: the facts need at least two exposure levels")
    return float(lo_cut), float(hi_cut)


def kl_split(rows: list[dict], *, n_boot: int = 1000, n_resamples: int = 9999, seed: int = 0,
             level: float = 0.95) -> dict:
    """Mean KL gap (bits above the data entropy) in rare vs frequent facts; module docstring."""
    lo_cut, hi_cut = exposure_cuts(rows)
    e = np.array([r["exposures"] for r in rows], dtype=float)
    kl = np.array([r["kl_bits"] for r in rows], dtype=float)
    rare, freq = kl[e <= lo_cut], kl[e >= hi_cut]
    rng = np.random.default_rng(seed)
    r_lo, r_hi = mean_ci(rare, rng, n_boot, level)
    f_lo, f_hi = mean_ci(freq, rng, n_boot, level)
    d_lo, d_hi = bootstrap_diff_ci(rare, freq, rng, n_boot, level)
    test = permutation_test(rare, freq, rng=rng, n_resamples=n_resamples, alternative="greater")
    return {"rare_max_exposures": float(lo_cut), "frequent_min_exposures": float(hi_cut),
            "n_rare": len(rare), "n_frequent": len(freq), "h_bits": float(np.mean([r["h_bits"] for r in rows])),
            "kl_rare": float(rare.mean()), "kl_rare_lo": r_lo, "kl_rare_hi": r_hi,
            "kl_frequent": float(freq.mean()), "kl_frequent_lo": f_lo, "kl_frequent_hi": f_hi,
            "kl_diff": float(rare.mean() - freq.mean()), "kl_diff_lo": d_lo, "kl_diff_hi": d_hi,
            "p_value": test.p_value, "kl_total_bits": float(kl.sum()),
            "kl_share_rare": float(rare.sum() / kl.sum()) if kl.sum() > 0 else None}


# --- 4. survival across model sizes --------------------------------------------------------------
def survival(models: list[dict], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Recall per exposure bin for each model; ``models``: dicts with ``label``, ``params`` and
    ``rows`` (scored facts), any order. One row per model and bin, smallest model first."""
    out = []
    for m in sorted(models, key=lambda m: m["params"]):
        for b in recall_by(m["rows"], "exposures", n_boot=n_boot, seed=seed, level=level):
            out.append({"model": m["label"], "params": m["params"], "bin_lo": b["bin_lo"], "bin_hi": b["bin_hi"],
                        "n": b["n"], "recall": b["accuracy"], "recall_lo": b["accuracy_lo"],
                        "recall_hi": b["accuracy_hi"], "kl_bits": b["kl_bits"]})
    return out


def forgetting_order(models: list[dict], *, n_resamples: int = 9999, seed: int = 0) -> list[dict]:
    """For each step from a model to the next smaller one: facts the larger recalls and the smaller
    does not (lost) against those both recall (kept); median exposures of each and a one-sided
    permutation p that lost facts have lower log2 exposure."""
    ms = sorted(models, key=lambda m: m["params"])
    out = []
    for small, large in pairwise(ms):
        ok_small = {(r["entity"], r["attribute"]): r["correct"] for r in small["rows"]}
        lost, kept = [], []
        for r in large["rows"]:
            if r["correct"] and (r["entity"], r["attribute"]) in ok_small:
                (kept if ok_small[r["entity"], r["attribute"]] else lost).append(math.log2(r["exposures"]))
        row = {"from": large["label"], "to": small["label"], "from_params": large["params"],
               "to_params": small["params"], "n_lost": len(lost), "n_kept": len(kept),
               "median_exposures_lost": 2 ** float(np.median(lost)) if lost else None,
               "median_exposures_kept": 2 ** float(np.median(kept)) if kept else None, "p_value": None}
        if lost and kept:
            row["p_value"] = permutation_test(lost, kept, rng=seed, n_resamples=n_resamples, alternative="less").p_value
        out.append(row)
    return out
