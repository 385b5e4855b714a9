"""Summaries of a localization: the validation table per mode, and how concentrated an attribution is.

:func:`summarise_validation` reduces :func:`ffnmem.methods.validation.validate`'s per-fact rows to
one row per group (per ablation mode by default; add ``"method"`` or ``"relation"`` to ``by`` when
rows carry it): mean *and* median of each drop with percentile bootstrap 95% CIs over facts — relative
drops of small margins have outliers that move a mean (the lesson of the held-out ablation claims) —,
the fraction of facts whose target drop exceeds their random-set drop, and the median ``k_half``.

:func:`concentration` says how many memories a fact's attribution is spread over (issue 15, item 5:
relating localization to frequency): shares of the total |score| held by the top 1/10/100 memories,
the participation ratio ``(Σ|s|)² / Σ s²`` and the entropy-based effective number ``exp(H(p))`` with
``p = |s| / Σ|s|`` — both ``n`` for a flat attribution over ``n`` memories and 1 for a single one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.stats import mean_ci, median_ci

DROPS = ("target_drop", "random_drop", "same_relation_drop", "other_relation_drop", "specificity",
         "paraphrase_drop", "target_delta", "random_delta")


def summarise_validation(rows: Sequence[dict], *, by: Sequence[str] = ("mode",), n_boot: int = 2000,
                         level: float = 0.95, seed: int = 0) -> list[dict]:
    """One row per group of ``rows`` (keys ``by``), in first-seen order.

    For each column of :data:`DROPS`: ``{col}_mean`` with ``{col}_lo``/``{col}_hi`` (bootstrap CI of
    the mean), ``{col}_median`` with ``{col}_median_lo``/``{col}_median_hi``, and ``{col}_n`` (facts
    where it is defined: a fact without a known paraphrase has no paraphrase drop). Also
    ``frac_target_gt_random`` (with CI), ``k_half_median`` (censored facts count as larger than any
    k tried, so it is inf when more than half are censored), ``k_half_censored_frac`` and ``n_facts``.
    """
    if not rows:
        raise BadInput("no validation rows to summarise (no fact was known?)")
    missing = [c for c in (*by, *DROPS, "k_half", "k_half_censored") if c not in rows[0]]
    if missing:
        raise BadInput(f"validation rows lack column {missing[0]!r}; summarise the rows validate() returns")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[c] for c in by)].append(r)
    rng = np.random.default_rng(seed)
    out = []
    for key, rs in groups.items():
        s: dict = dict(zip(by, key))
        s["n_facts"] = len(rs)
        for col in DROPS:
            x = np.array([r[col] for r in rs], dtype=float)
            x = x[np.isfinite(x)]
            s[f"{col}_mean"] = float(x.mean()) if x.size else math.nan
            s[f"{col}_lo"], s[f"{col}_hi"] = mean_ci(x, rng, n_boot, level)
            s[f"{col}_median"] = float(np.median(x)) if x.size else math.nan
            s[f"{col}_median_lo"], s[f"{col}_median_hi"] = median_ci(x, rng, n_boot, level)
            s[f"{col}_n"] = int(x.size)
        win = np.array([float(r["target_drop"] > r["random_drop"]) for r in rs])
        s["frac_target_gt_random"] = float(win.mean())
        s["frac_target_gt_random_lo"], s["frac_target_gt_random_hi"] = mean_ci(win, rng, n_boot, level)
        kh = np.array([math.inf if r["k_half_censored"] else r["k_half"] for r in rs], dtype=float)
        s["k_half_median"] = float(np.sort(kh)[(len(kh) - 1) // 2])  # lower median: a k that was tried, or inf
        s["k_half_censored_frac"] = float(np.isinf(kh).mean())
        out.append(s)
    return out


def concentration(scores: Tensor, tops: Sequence[int] = (1, 10, 100)) -> dict:
    """How concentrated one fact's attribution is over memories (any shape; read as a flat list).

    ``share_top{n}`` is the fraction of ``Σ|s|`` held by the ``n`` largest |s|; ``participation_ratio``
    is ``(Σ|s|)² / Σ s²`` and ``effective_number`` is ``exp(−Σ p log p)``, ``p = |s| / Σ|s|`` — both
    count memories (1 … n). All NaN when every score is 0.
    """
    a = scores.detach().flatten().abs().double().cpu()
    if a.numel() == 0:
        raise BadInput("concentration of an empty score tensor; pass one score per memory")
    if not torch.isfinite(a).all():
        raise BadInput("scores hold NaN or inf; a concentration needs finite scores")
    total = float(a.sum())
    out: dict = {"n_memories": a.numel(), "total_abs": total}
    if total == 0:
        return out | {f"share_top{n}": math.nan for n in tops} | {"participation_ratio": math.nan,
                                                                   "effective_number": math.nan}
    desc = a.sort(descending=True).values
    for n in tops:
        out[f"share_top{n}"] = float(desc[:n].sum()) / total
    p = a / total
    out["participation_ratio"] = total ** 2 / float((a ** 2).sum())
    out["effective_number"] = math.exp(-float((p[p > 0] * p[p > 0].log()).sum()))
    return out
