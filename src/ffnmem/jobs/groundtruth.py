"""Localization against ground truth: new facts planted in known neurons (Chang et al. 2024's INJ).

A model is trained on a synthetic preset (seeded); ``n_facts`` new facts (entities the corpus never
names) are injected one at a time, each into ``neurons_per_fact`` random FFN neurons of ``layers``
with every other weight frozen (:func:`ffnmem.methods.injection.inject_each`, Chang's
one-model-per-item design: the injection is undone before the next fact). On each injected model
every localization method ranks memories for the new fact's margin over its relation's other
values (:func:`ffnmem.methods.localize.locate`), and a uniformly random ranking is the null.
Precision@k = recall@k at k = ``neurons_per_fact`` (Chang's score), with 95% bootstrap CIs over
facts and the chance level. Tables: ``injections`` (one row per fact: recall before/after,
steps, the other facts' recall), ``rankings`` (per method and fact, precision and recall; ``precision_shuffled``: the same ranking
scored against the next fact's planted set — the negative control; ``chance``: a random ranking's
expected precision),
``summary`` (per method).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
from pydantic import Field

from ffnmem.data.facts import encode_facts
from ffnmem.data.synthetic import generate
from ffnmem.jobs.params import Params
from ffnmem.methods import training
from ffnmem.methods.injection import corpus_facts, inject_each, new_facts
from ffnmem.methods.injection_scoring import (
    answer_and_alternatives,
    precision_recall,
    random_rankings,
    summarize_localization,
)
from ffnmem.methods.localize import METHODS, locate
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows

KIND = "localization_groundtruth"
GT_METHODS = tuple(m for m in METHODS if m != "tracing")


class GroundTruthParams(Params):
    preset: Literal["tiny"] = "tiny"
    steps: int | None = Field(None, ge=1)  # training steps of the preset's model (None: the preset's)
    methods: list[Literal[GT_METHODS]] = Field(list(GT_METHODS), min_length=1)
    n_facts: int = Field(24, ge=2)
    neurons_per_fact: int = Field(8, ge=1)
    layers: list[int] | None = None  # eligible layers (None: all, Chang's global draw)
    parts: Literal["value", "key_value"] = "value"  # Chang tune value vectors only
    inject_steps: int = Field(100, ge=1)  # Chang: at most 100 epochs, lr 1e-2, stop at loss 0.05
    others: int = Field(140, ge=0)  # corpus facts scored before/after each injection (collateral)


def compute(p: GroundTruthParams, seed: int = 0, *, progress: bool = False) -> Result:
    """Train, inject, locate, score; see the module docstring."""
    fact_cfg, train_cfg = training.preset(p.preset)
    train_cfg = dataclasses.replace(train_cfg, seed=seed, **({"steps": p.steps} if p.steps else {}))
    corpus = generate(fact_cfg)
    wb = training.train(corpus, train_cfg, None, device="cpu", progress=progress).wb
    layers = list(range(wb.n_layers)) if p.layers is None else sorted({wb.check_layer(l) for l in p.layers})
    facts, held = new_facts(corpus, p.n_facts, seed=seed)
    others = corpus_facts(corpus)[: p.others] or None
    depth = max(64, 4 * p.neurons_per_fact)

    def ranker(method: str):
        def rank(wb, fact):
            alts = answer_and_alternatives(wb, fact)[1]
            located = locate(wb, encode_facts(wb, [fact]), method, k=depth, alternatives=[alts], seed=seed)[0]
            return [(l, n, s) for l, n, s in located.memories if l in layers]
        return rank

    injections, ranked = inject_each(wb, facts, {m: ranker(m) for m in p.methods}, seed=seed, heldout=held,
                                     neurons_per_fact=p.neurons_per_fact, layers=layers, parts=p.parts,
                                     steps=p.inject_steps, others=others)
    planted = [i.planted[0] for i in injections]
    ranked["random"] = random_rankings(layers, wb.d_mlp, len(facts), seed=seed)
    eligible, k = len(layers) * wb.d_mlp, p.neurons_per_fact
    summary, rank_rows = [], []
    for method, rankings in ranked.items():
        summary.append({"method": method, **summarize_localization(rankings, planted, k, eligible=eligible, seed=seed)})
        for i, (r, gold) in enumerate(zip(rankings, planted)):
            prec, rec = precision_recall(r, gold, k)
            # negative control: the same ranking scored against another fact's planted neurons
            shuffled = precision_recall(r, planted[(i + 1) % len(planted)], k)[0]
            rank_rows.append({"method": method, "fact": i, "subject": facts[i].subject, "relation": facts[i].relation,
                              "precision": prec, "recall": rec, "precision_shuffled": shuffled,
                              "chance": len(set(map(tuple, gold))) / eligible})
    inj_rows = []
    for i, inj in enumerate(injections):
        for r in inj.rows():
            inj_rows.append({**{k2: v for k2, v in r.items() if not isinstance(v, (list, dict))}, "fact": i,
                             "others_recall_before": inj.others.get("recall_before", np.nan) if inj.others else np.nan,
                             "others_recall_after": inj.others.get("recall_after", np.nan) if inj.others else np.nan,
                             "weights_ok": inj.weight_check["ok"]})
    meta = {"params": p.model_dump(), "layers": layers, "eligible": eligible, "k": k, "n_params": wb.n_params(),
            "facts_config": fact_cfg.to_dict()}
    return Result(kind=KIND, tables={"summary": table_from_rows(summary), "rankings": table_from_rows(rank_rows),
                                     "injections": table_from_rows(inj_rows)}, meta=meta,
                  provenance=make_provenance(wb, seed=seed, params=p.model_dump(), facts_config=fact_cfg.to_dict()))
