"""Knowledge neurons selected on some prompts of a fact, ablated on a held-out paraphrase: the job
behind the batch analysis ``knowledge_neurons_heldout``.

Selection follows Dai et al. (2022): integrated gradients of p(answer) over every FFN coefficient
at the last position (``steps`` Riemann steps, :mod:`ffnmem.methods.knowledge_neurons`), neurons
with ``IG ≥ threshold · max IG`` on each selection prompt, refined to those selected on more than
``share`` of the selection prompts. The selection prompts are the fact's ``prompt`` and every
paraphrase but the first; ``paraphrases[0]`` is held out. On it the knowledge neurons are ablated
(zero, Dai et al.'s suppression) against ``random_sets`` random sets of the same size and layer
histogram. Facts without a paraphrase are skipped (counted in the meta).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact
from ffnmem.jobs.ablation import heldout_split, mean_reference
from ffnmem.jobs.params import FirstTokenParams, encoded_facts
from ffnmem.methods.ablation import ablate_sets, layer_histogram, layer_matched_random, relative_drop
from ffnmem.methods.knowledge_neurons import integrated_gradients, refine_neurons, select_neurons
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows


class KnowledgeNeuronParams(FirstTokenParams):
    steps: int = Field(20, ge=1)
    batch_steps: int = Field(20, ge=1)
    threshold: float = Field(0.2, gt=0, le=1)
    share: float = Field(0.7, ge=0, lt=1)
    max_neurons: int | None = Field(None, ge=1)
    mode: Literal["zero", "mean"] = "zero"
    random_sets: int = Field(5, ge=1)
    reference_windows: int = Field(32, ge=1)


def compute_heldout(wb: Workbench, facts: list[Fact], p: KnowledgeNeuronParams, seed: int = 0) -> Result:
    """One row per fact: its knowledge neurons and their ablation on the held-out paraphrase."""
    kept, skipped = heldout_split(facts)
    enc = encoded_facts(wb, kept, p)
    g = torch.Generator().manual_seed(seed)
    reference = mean_reference(wb, p.reference_windows, seed) if p.mode == "mean" else None
    rows = []
    for b, e in enumerate(enc):
        answer = e.answer_ids[0]
        select = [e.fact.prompt, *e.fact.paraphrases[1:]]
        per_prompt = [select_neurons(integrated_gradients(wb, s, answer, steps=p.steps, batch_steps=p.batch_steps),
                                     p.threshold, p.max_neurons) for s in select]
        kn = refine_neurons(per_prompt, p.share)
        randoms = [layer_matched_random(wb, kn, g) for _ in range(p.random_sets)] if kn else []
        held = ablate_sets(wb, e.fact.paraphrases[0], answer, [kn, *randoms], p.mode,
                           reference=reference, seed=seed + b).tolist() if kn else []
        rand = [relative_drop(held[0], x) for x in held[2:]]
        rows.append({
            "relation": e.fact.relation, "subject": e.fact.subject, "mode": p.mode,
            "select_prompts": " | ".join(select), "eval_prompt": e.fact.paraphrases[0],
            "n_selected_per_prompt": ",".join(str(len(s)) for s in per_prompt), "n_neurons": len(kn),
            "neurons": ",".join(f"{l}.{n}" for l, n in kn),
            "layer_hist": ",".join(f"{l}:{c}" for l, c in layer_histogram(kn).items()),
            "p_clean": held[0] if kn else None, "p_kn": held[1] if kn else None,
            "drop_kn": relative_drop(held[0], held[1]) if kn else None,
            "drop_random": sum(rand) / len(rand) if kn else None,
        })
    meta = {"params": p.model_dump(), "n_facts": len(enc), "skipped_no_paraphrase": skipped,
            "no_knowledge_neurons": sum(r["n_neurons"] == 0 for r in rows)}
    return Result(kind="knowledge_neurons_heldout", tables={"facts": table_from_rows(rows)}, meta=meta,
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed, params=p.model_dump()))
