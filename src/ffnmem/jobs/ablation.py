"""Ablation of each fact's top direct-effect memories against random ones: the job behind the batch
analysis ``ablation_topk_vs_random``, and of ``ablation_heldout`` (:func:`compute_heldout`), which
selects each fact's top set on its prompt and ablates it on a held-out paraphrase, against random
sets of the same layers and the top set of another fact of the same relation.

For every fact, the ``k`` FFN memories with the largest direct effect on its answer and ``k``
memories drawn uniformly from all layers are ablated at the chosen positions (zero, mean or resample
of their coefficients; :mod:`ffnmem.methods.ablation`); the ``prompts`` table holds p(answer)
clean, with the top set ablated and with the random set ablated. Mean and resample ablation take
their reference coefficients from ``reference_windows`` 64-token windows of the built-in corpus.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ffnmem.core.workbench import Workbench
from ffnmem.data.corpus import default_corpus, windows
from ffnmem.data.facts import Fact
from ffnmem.jobs.params import FirstTokenParams, encoded_facts
from ffnmem.methods.ablation import (
    ablate_sets,
    derangement,
    layer_histogram,
    layer_matched_random,
    reference_coefficients,
    relative_drop,
    top_vs_random,
)
from ffnmem.methods.attribution import direct_effects
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows


class AblationParams(FirstTokenParams):
    k: int = Field(20, ge=1)
    mode: Literal["zero", "mean", "resample"] = "zero"
    positions: Literal["last", "all"] = "last"
    reference_windows: int = Field(32, ge=1)


def compute(wb: Workbench, facts: list[Fact], p: AblationParams, seed: int = 0) -> Result:
    """Top-k vs random-k ablation per fact; see the module docstring."""
    enc = encoded_facts(wb, facts, p)
    reference = None
    if p.mode != "zero":
        tokens = windows(wb, default_corpus(), window=64, max_windows=p.reference_windows)
        reference = reference_coefficients(wb, tokens, list(range(wb.n_layers)), seed=seed)
    rows = top_vs_random(wb, [e.fact.prompt for e in enc], [e.answer_ids[0] for e in enc], k=p.k, mode=p.mode,
                         positions=p.positions, seed=seed, reference=reference)
    for r, e in zip(rows, enc):
        r["subject"] = e.fact.subject
    return Result(kind="ablation_topk_vs_random", tables={"prompts": table_from_rows(rows)},
                  meta={"params": p.model_dump()},
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed, params=p.model_dump()))


class HeldoutParams(FirstTokenParams):
    k: int = Field(20, ge=1)
    modes: list[Literal["zero", "mean"]] = Field(["zero"], min_length=1)
    positions: Literal["last", "all"] = "last"
    random_sets: int = Field(5, ge=1)
    reference_windows: int = Field(32, ge=1)


def heldout_split(facts: list[Fact]) -> tuple[list[Fact], int]:
    """Facts with a held-out paraphrase (selection on ``prompt``, validation on ``paraphrases[0]``),
    and how many were skipped for having none."""
    kept = [f for f in facts if f.paraphrases]
    return kept, len(facts) - len(kept)


def mean_reference(wb: Workbench, windows_n: int, seed: int):
    """Reference coefficients of every layer for mean ablation (``windows_n`` corpus windows)."""
    tokens = windows(wb, default_corpus(), window=64, max_windows=windows_n)
    return reference_coefficients(wb, tokens, list(range(wb.n_layers)), seed=seed)


def compute_heldout(wb: Workbench, facts: list[Fact], p: HeldoutParams, seed: int = 0) -> Result:
    """Top-k DLA neurons selected on each fact's prompt, ablated on its held-out paraphrase.

    One row per fact and ablation mode: p(answer) on the paraphrase clean, with the fact's own top-k
    ablated, with the top-k selected for another fact of the same relation ablated (a seeded
    derangement within the relation, among this unit's facts) and with ``random_sets`` random sets
    of the own set's layer histogram ablated (their relative drops averaged); plus the own and
    other-fact drops on the selection prompt itself, for comparison with same-prompt numbers.
    """
    kept, skipped = heldout_split(facts)
    enc = encoded_facts(wb, kept, p)
    answers = [e.answer_ids[0] for e in enc]
    fx = direct_effects(wb, [e.fact.prompt for e in enc], answers)
    tops = [[(l, n) for l, n, _ in fx.top(b, p.k)] for b in range(len(enc))]
    g = torch.Generator().manual_seed(seed)
    partner = derangement([e.fact.relation for e in enc], g)
    randoms = [[layer_matched_random(wb, top, g) for _ in range(p.random_sets)] for top in tops]
    reference = mean_reference(wb, p.reference_windows, seed) if "mean" in p.modes else None
    rows = []
    for mode in p.modes:
        for b, e in enumerate(enc):
            other = [] if partner[b] is None else tops[partner[b]]
            held = ablate_sets(wb, e.fact.paraphrases[0], answers[b], [tops[b], other, *randoms[b]], mode,
                               positions=p.positions, reference=reference, seed=seed + b).tolist()
            same = ablate_sets(wb, e.fact.prompt, answers[b], [tops[b], other], mode,
                               positions=p.positions, reference=reference, seed=seed + b).tolist()
            rand = [relative_drop(held[0], x) for x in held[3:]]
            rows.append({
                "relation": e.fact.relation, "subject": e.fact.subject, "mode": mode, "k": p.k,
                "select_prompt": e.fact.prompt, "eval_prompt": e.fact.paraphrases[0],
                "layer_hist": ",".join(f"{l}:{c}" for l, c in layer_histogram(tops[b]).items()),
                "other_subject": None if partner[b] is None else enc[partner[b]].fact.subject,
                "overlap_other": len(set(tops[b]) & set(other)),
                "p_clean": held[0], "p_own": held[1], "p_other": None if partner[b] is None else held[2],
                "drop_own": relative_drop(held[0], held[1]),
                "drop_other": None if partner[b] is None else relative_drop(held[0], held[2]),
                "drop_random": sum(rand) / len(rand), "drop_random_sd": float(torch.tensor(rand).std()) if len(rand) > 1 else 0.0,
                "p_clean_select": same[0], "drop_own_select": relative_drop(same[0], same[1]),
                "drop_other_select": None if partner[b] is None else relative_drop(same[0], same[2]),
            })
    meta = {"params": p.model_dump(), "n_facts": len(enc), "skipped_no_paraphrase": skipped}
    return Result(kind="ablation_heldout", tables={"facts": table_from_rows(rows)}, meta=meta,
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed, params=p.model_dump()))
