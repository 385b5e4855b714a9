"""Where a fact lives, validated: every localization method on the same facts, scored the same way.

For each fact the model knows (its answer's margin over the relation's other answers is positive),
each method (:data:`ffnmem.methods.localize.METHODS`) ranks FFN memories for the answer's margin
(:func:`ffnmem.methods.localize.locate`), and every ranked set is validated by ablation the same way
(:func:`ffnmem.methods.validation.validate`): the margin drop on the fact's prompt, on random sets of
the same layers matched on activation size (the null), on other facts of the same relation and of
other relations (collateral), on the fact's held-out paraphrase (generality), and the smallest k that
removes half the margin. Tables:

* ``facts``: one row per fact (known or not, clean margin, popularity of the subject);
* ``memories``: per fact and method, the ranked memories (rank, layer, neuron, score);
* ``cells``: causal tracing's top (layer, position) cells, where tracing is among the methods;
* ``validation``: one row per fact, method and ablation mode;
* ``summary``: per method and mode, means and medians with 95% bootstrap CIs over facts;
* ``concentration``: per fact and method, how concentrated the attribution is, with the subject's
  popularity (wordfreq Zipf) — the frequency link: do rare facts need more memories?
* ``frequency``: per method, Spearman's ρ (95% bootstrap CI, two-sided permutation p) of the
  frequency measure against ``k_half`` (zero ablation), the top-10 share of attribution and the
  target drop.

:func:`train_and_compute` runs the same on a model trained on a synthetic preset, where the
frequency measure is each fact's exposure count in the corpus (not a proxy) and the held-out
templates are the paraphrases.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import EncodedFact, Fact
from ffnmem.data.synthetic import FactCorpus, generate
from ffnmem.jobs.ablation import mean_reference
from ffnmem.jobs.params import FirstTokenParams, encoded_facts
from ffnmem.methods import training
from ffnmem.methods.interventions import Margin, run_metric
from ffnmem.methods.localize import METHODS, locate
from ffnmem.methods.popularity import popularity
from ffnmem.methods.targets import alternatives
from ffnmem.methods.validation import validate
from ffnmem.methods.validation_summary import concentration, summarise_validation
from ffnmem.stats import claim_test
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows

KIND = "localization"
RANKED_METHODS = tuple(m for m in METHODS if m != "tracing")  # tracing ranks cells, not memories


class LocalizationParams(FirstTokenParams):
    methods: list[Literal[METHODS]] = Field(list(RANKED_METHODS), min_length=1)
    k: int = Field(20, ge=1)  # the validated set: each method's top k memories
    ks: list[int] = Field([1, 2, 4, 8, 16, 32, 64], min_length=1)  # grid for the smallest k removing half the margin
    modes: list[Literal["zero", "mean", "resample"]] = Field(["zero", "mean", "resample"], min_length=1)
    n_random: int = Field(3, ge=1)  # random matched sets per fact (the null)
    n_collateral: int = Field(5, ge=1)  # other facts per relation class the set is also ablated on
    reference_windows: int = Field(32, ge=1)  # corpus windows for mean / resample reference coefficients
    target: Literal["margin", "logit", "prob"] = "margin"
    known_only: bool = True  # ROME and Dai trace / attribute facts the model knows


def margins(wb: Workbench, encoded: list[EncodedFact], alts: list[list[int]], *, batch_size: int = 32) -> list[float]:
    """Each fact's clean margin: answer logit minus the mean logit of its alternatives (prompts of one
    token length batched together: the bridge takes no padding mask)."""
    by_len: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        by_len.setdefault(len(e.prompt_ids), []).append(i)
    out = [math.nan] * len(encoded)
    for idx in by_len.values():
        for s in range(0, len(idx), batch_size):
            part = idx[s: s + batch_size]
            m = run_metric(wb, torch.tensor([encoded[i].prompt_ids for i in part]),
                           torch.tensor([encoded[i].answer_ids[0] for i in part]), Margin([alts[i] for i in part]))
            for i, v in zip(part, m.tolist()):
                out[i] = float(v)
    return out


def compute(wb: Workbench, facts: list[Fact], p: LocalizationParams, seed: int = 0, *,
            progress: bool = False, frequency: dict[tuple[str, str], float] | None = None) -> Result:
    """Locate and validate every method on the known facts; see the module docstring."""
    enc = encoded_facts(wb, facts, p)
    alts = alternatives(enc)
    m = margins(wb, enc, alts)
    fact_rows = [{"fact": i, "relation": e.fact.relation, "subject": e.fact.subject, "prompt": e.fact.prompt,
                  "target": e.fact.target, "margin": m[i], "known": m[i] > 0,
                  "subject_zipf": popularity(e.fact.subject)} for i, e in enumerate(enc)]
    freq_name = "subject_zipf" if frequency is None else "exposures"
    for r in fact_rows:
        if frequency is not None:
            r["exposures"] = frequency[(r["subject"], r["relation"])]
    keep = [i for i in range(len(enc)) if m[i] > 0 or not p.known_only]
    kept, kept_alts = [enc[i] for i in keep], [alts[i] for i in keep]
    reference = (mean_reference(wb, p.reference_windows, seed)
                 if set(p.modes) & {"mean", "resample"} and kept else None)
    memory_rows, cell_rows, val_rows, conc_rows = [], [], [], []
    depth = max(p.k, max(p.ks))
    for method in tqdm(p.methods, desc="localization methods", unit="method", disable=not progress):
        if not kept:
            break
        located = locate(wb, kept, method, k=depth, target=p.target, alternatives=kept_alts, seed=seed,
                         progress=progress)
        for loc in located:
            i = keep[loc.fact]
            base = {"method": method, "fact": i, "relation": enc[i].fact.relation, "subject": enc[i].fact.subject}
            memory_rows += [{**base, "rank": r, "layer": l, "neuron": n, "score": s}
                            for r, (l, n, s) in enumerate(loc.memories)]
            cell_rows += [{**base, "rank": r, "layer": l, "position": t, "effect": s}
                          for r, (l, t, s) in enumerate(loc.cells)]
            if loc.memories:
                conc = concentration(torch.tensor([s for _, _, s in loc.memories]))
                conc_rows.append({**base, freq_name: fact_rows[i][freq_name], **conc})
        ranked = [[(l, n) for l, n, _ in loc.memories] for loc in located]
        if not any(ranked):
            continue
        heldout = [list(e.fact.paraphrases[-1:]) if e.fact.paraphrases else [] for e in kept]
        rows = validate(wb, kept, ranked, k=p.k, modes=tuple(p.modes), reference=reference, alternatives=kept_alts,
                        n_random=p.n_random, n_collateral=p.n_collateral, ks=tuple(p.ks), seed=seed,
                        heldout_prompts=heldout, progress=progress)
        val_rows += [{"method": method, **r, "fact": keep[r["fact"]]} for r in rows]
    summary = []
    for method in p.methods:
        mine = [r for r in val_rows if r["method"] == method]
        if mine:
            summary += [{"method": method, **s} for s in summarise_validation(mine, seed=seed)]
    freq = frequency_link(fact_rows, val_rows, conc_rows, freq_name, seed)
    tables = {"facts": table_from_rows(fact_rows), "memories": table_from_rows(memory_rows),
              "frequency": table_from_rows(_nulls(freq)),
              "cells": table_from_rows(cell_rows), "validation": table_from_rows(_nulls(val_rows)),
              "summary": table_from_rows(_nulls(summary)), "concentration": table_from_rows(_nulls(conc_rows))}
    meta = {"params": p.model_dump(), "n_facts": len(enc), "n_known": sum(r["known"] for r in fact_rows),
            "target": p.target, "frequency_measure": freq_name}
    return Result(kind=KIND, tables=tables, meta=meta,
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed, params=p.model_dump()))


def _nulls(rows: list[dict]) -> list[dict]:
    """Undefined values as NULL, the results store's convention (NaN there means broken numbers): a
    fact with no known held-out paraphrase or no collateral fact, a censored k½, a statistic over no
    facts. The validation computes them as NaN; every input margin is checked finite upstream."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]


def frequency_link(fact_rows: list[dict], val_rows: list[dict], conc_rows: list[dict], x: str,
                   seed: int) -> list[dict]:
    """Per method, Spearman's ρ of the frequency measure ``x`` against how localized a fact is:
    ``k_half`` (zero ablation; censored facts ranked above every k tried), ``share_top10`` (of the
    attribution) and ``target_drop`` (zero ablation of the top k). Two-sided: rare facts may be
    more or less localized; the p is the smaller one-sided permutation p doubled."""
    freq = {r["fact"]: r[x] for r in fact_rows}
    out = []
    for method in dict.fromkeys(r["method"] for r in conc_rows + val_rows):
        zero = [r for r in val_rows if r["method"] == method and r["mode"] == "zero"]
        ys = {"k_half": [(freq[r["fact"]], float("inf") if r["k_half_censored"] else r["k_half"]) for r in zero],
              "target_drop": [(freq[r["fact"]], r["target_drop"]) for r in zero],
              "share_top10": [(freq[r["fact"]], r["share_top10"]) for r in conc_rows if r["method"] == method]}
        for y, pairs in ys.items():
            pairs = [(a, b) for a, b in pairs if a is not None and b == b and a == a]
            if len(pairs) < 3:
                continue
            xs, vs = np.array([a for a, _ in pairs], float), np.array([b for _, b in pairs], float)
            vs[np.isinf(vs)] = np.nanmax(np.where(np.isinf(vs), np.nan, vs), initial=0) * 2 + 1  # censored: above all
            up = claim_test("correlation", {"x": xs, "y": vs}, alternative="greater", rng=seed)
            down = claim_test("correlation", {"x": xs, "y": vs}, alternative="less", rng=seed)
            out.append({"method": method, "x": x, "y": y, "n": up.n, "rho": up.estimate, "rho_lo": up.ci[0],
                        "rho_hi": up.ci[1], "p_two_sided": min(1.0, 2 * min(up.p_value, down.p_value))})
    return out


class SyntheticLocalizationParams(LocalizationParams):
    first_token: Literal["strict", "any"] = "any"  # word-level synthetic vocabulary
    preset: Literal["tiny"] = "tiny"
    steps: int | None = Field(None, ge=1)
    facts_per_bin: int = Field(8, ge=1)  # facts drawn per (attribute, exposure bin), seeded


def synthetic_facts(corpus: FactCorpus) -> tuple[list[Fact], dict[tuple[str, str], float]]:
    """The corpus' queries as facts: a corpus-template prompt, the held-out templates as paraphrases;
    and each fact's exposure count."""
    by: dict[tuple[str, str], dict] = {}
    for q in corpus.queries:
        d = by.setdefault((q["entity"], q["attribute"]), {"held": [], "seen": None})
        if q["heldout"]:
            d["held"].append(q["prompt"])
        else:
            d["seen"] = q
    facts = [Fact(subject=e, relation=a, prompt=d["seen"]["prompt"], target=" " + d["seen"]["answer"],
                  paraphrases=tuple(d["held"]), where=f"synthetic:{e}/{a}") for (e, a), d in by.items()]
    return facts, {k: float(d["seen"]["exposures"]) for k, d in by.items()}


def train_and_compute(p: SyntheticLocalizationParams, seed: int = 0, *, progress: bool = False) -> Result:
    """Train the preset's model (seeded), then :func:`compute` on ``facts_per_bin`` facts per attribute
    and exposure bin, with exposures as the frequency measure."""
    import dataclasses

    fact_cfg, train_cfg = training.preset(p.preset)
    train_cfg = dataclasses.replace(train_cfg, seed=seed, **({"steps": p.steps} if p.steps else {}))
    corpus = generate(fact_cfg)
    run = training.train(corpus, train_cfg, None, device="cpu", progress=progress)
    facts, exposures = synthetic_facts(corpus)
    rng = np.random.default_rng([seed, 0x10C])
    groups: dict[tuple[str, float], list[int]] = {}
    for i, f in enumerate(facts):
        groups.setdefault((f.relation, exposures[(f.subject, f.relation)]), []).append(i)
    keep = sorted(j for idx in groups.values() for j in rng.permutation(idx)[: p.facts_per_bin])
    res = compute(run.wb, [facts[i] for i in keep], p, seed, progress=progress, frequency=exposures)
    res.meta["facts_config"] = fact_cfg.to_dict()
    return res


def write(result: Result, out_dir: str | Path) -> Path:
    """``result/`` under ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "result")
    return out
