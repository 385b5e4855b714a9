"""Scoring a localization against planted ground truth (:mod:`ffnmem.methods.injection`).

A localization method returns, per fact, a ranking of (layer, neuron[, score]); Chang et al. 2024
score its top k against the planted set (k = the set's size, so precision = recall). Pure: rankings
and sets in, numbers out; :func:`dla_rankings` is the direct-effect ranking used as a first method.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact
from ffnmem.methods.attribution import direct_effects
from ffnmem.stats import mean_ci

Neuron = tuple[int, int]


def answer_and_alternatives(wb: Workbench, fact: Fact) -> tuple[int, list[int]]:
    """The answer's token and its alternatives (the distractors' first tokens, answer left out)."""
    answer = wb.answer_token(fact.target)
    alts = list(dict.fromkeys(t for d in fact.distractors if (t := wb.encode(d, prepend_bos=False)[0]) != answer))
    if not alts:
        raise BadInput(f"{fact.where}: no distractors to contrast {fact.target!r} with; the margin needs at least one")
    return answer, alts

def precision_recall(ranked: Sequence[Sequence], planted: set[Neuron] | Sequence[Neuron], k: int) -> tuple[float, float]:
    """precision@k and recall@k of a ranking of (layer, neuron[, score]) against the planted set.

    The first ``k`` distinct (layer, neuron) pairs are the prediction; a ranking shorter than ``k``
    counts its missing places as misses.
    """
    gold = {(int(l), int(n)) for l, n in planted}
    if k < 1 or not gold:
        raise BadInput(f"precision@k needs k >= 1 and a non-empty planted set (k={k}, {len(gold)} planted)")
    top: list[Neuron] = []
    for r in ranked:
        key = (int(r[0]), int(r[1]))
        if key not in top:
            top.append(key)
        if len(top) == k:
            break
    return len(gold.intersection(top)) / k, len(gold.intersection(top)) / len(gold)


def summarize_localization(rankings: Sequence[Sequence[Sequence]], planted: Sequence[Sequence[Neuron]], k: int, *,
                           eligible: int, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean precision@k and recall@k over facts with percentile bootstrap CIs (facts resampled),
    and the chance levels of a uniformly random ranking of the ``eligible`` neurons:
    E[precision@k] = |planted| / eligible, E[recall@k] = k / eligible."""
    if len(rankings) != len(planted) or not planted:
        raise BadInput(f"{len(rankings)} rankings for {len(planted)} planted sets; give one per fact")
    if eligible < k:
        raise BadInput(f"k={k} exceeds the {eligible} eligible neurons")
    pr = np.array([precision_recall(r, p, k) for r, p in zip(rankings, planted)])
    sizes = np.array([len(set(map(tuple, p))) for p in planted])
    rng = np.random.default_rng(seed)
    p_lo, p_hi = mean_ci(pr[:, 0], rng, n_boot)
    r_lo, r_hi = mean_ci(pr[:, 1], rng, n_boot)
    return {"n_facts": len(planted), "k": k, "eligible": eligible,
            "precision": float(pr[:, 0].mean()), "precision_lo": p_lo, "precision_hi": p_hi,
            "recall": float(pr[:, 1].mean()), "recall_lo": r_lo, "recall_hi": r_hi,
            "chance_precision": float(sizes.mean() / eligible), "chance_recall": k / eligible}


def random_rankings(layers: Sequence[int], d_mlp: int, n: int, *, seed: int = 0) -> list[list[Neuron]]:
    """The null: ``n`` seeded uniformly random orderings of the eligible neurons."""
    eligible = [(l, i) for l in layers for i in range(d_mlp)]
    rng = np.random.default_rng([seed, 0xA11])
    return [[eligible[j] for j in rng.permutation(len(eligible))] for _ in range(n)]


def dla_rankings(wb: Workbench, facts: Sequence[Fact], layers: Sequence[int] | None = None) -> list[list[tuple[int, int, float]]]:
    """Per fact, the eligible neurons by direct effect on its margin at its prompt, largest first."""
    layers = list(range(wb.n_layers)) if layers is None else sorted({wb.check_layer(l) for l in layers})
    pairs = [answer_and_alternatives(wb, f) for f in facts]
    fx = direct_effects(wb, [f.prompt for f in facts], [a for a, _ in pairs], [alts for _, alts in pairs])
    out = []
    for b in range(len(facts)):
        eff = fx.neurons[b, layers]  # (len(layers), d_mlp)
        order = eff.flatten().argsort(descending=True)
        out.append([(layers[int(j) // wb.d_mlp], int(j) % wb.d_mlp, float(eff.flatten()[j])) for j in order])
    return out
