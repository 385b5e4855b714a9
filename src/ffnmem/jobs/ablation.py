"""Ablation of each fact's top direct-effect memories against random ones: the job behind the batch
analysis ``ablation_topk_vs_random``.

For every fact, the ``k`` FFN memories with the largest direct effect on its answer and ``k``
memories drawn uniformly from all layers are ablated at the chosen positions (zero, mean or resample
of their coefficients; :mod:`ffnmem.methods.ablation`); the ``prompts`` table holds p(answer)
clean, with the top set ablated and with the random set ablated. Mean and resample ablation take
their reference coefficients from ``reference_windows`` 64-token windows of the built-in corpus.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ffnmem.core.workbench import Workbench
from ffnmem.data.corpus import default_corpus, windows
from ffnmem.data.facts import Fact
from ffnmem.jobs.params import FirstTokenParams, encoded_facts
from ffnmem.methods.ablation import reference_coefficients, top_vs_random
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
