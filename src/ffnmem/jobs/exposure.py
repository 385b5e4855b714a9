"""Recall against exposure on a synthetic fact corpus: the job behind ``ffnmem exposure`` /
``ffnmem recall --run`` and the batch analysis ``exposure_recall``.

:func:`compute` scores every query of a trained model (:mod:`ffnmem.methods.frequency`), bins it by
exposure with bootstrap CIs, fits the recall curve, estimates the knowledge stored, and attributes
each fact's answer to FFN and attention layers per bin. Its ``exposure_recall`` Result has tables
``facts``, ``bins``, ``curve``, ``summary``, ``dla_facts``, ``dla_bins`` (``target`` = margin or
logit; skipped with ``dla = false``), ``fact_bits`` and, when training curves are given, ``evals``.
``fact_bits`` holds one row per fact and ``arm`` (bits stored = log2|V| − loss bits, unclipped):
``trained`` (the model on its facts), ``unseen`` (the model on fresh facts of the same attributes
and templates it never saw: :func:`ffnmem.data.synthetic.unseen_queries`) and, when the untrained
model is given, ``init`` (the same shape at its initial weights, same seed, on the trained facts):
the claims' per-fact rows and their two controls. :func:`train_and_compute` trains a preset's
model first (the batch analysis); :func:`write` adds the figures.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

from pydantic import Field

from ffnmem.core.workbench import Workbench
from ffnmem.data.synthetic import FactCorpus, generate, unseen_queries
from ffnmem.jobs.params import Params
from ffnmem.methods import frequency as fq
from ffnmem.methods import training
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import (
    plot_dla_by_exposure,
    plot_loss_decomposition,
    plot_recall_vs_exposure,
    save_figure,
)

KIND = "exposure_recall"


class ExposureParams(Params):
    n_boot: int = Field(1000, ge=10)
    heldout: bool = False  # score the held-out templates instead of the trained ones
    dla: bool = True  # direct logit attribution per bin (the slow part; the claims do not read it)


class TrainExposureParams(ExposureParams):
    preset: Literal["tiny", "paper"] = "tiny"
    steps: int | None = Field(None, ge=1)


def compute(wb: Workbench, corpus: FactCorpus, evals: list[dict], p: ExposureParams, seed: int = 0, *,
            progress: bool = False, init_wb: Workbench | None = None) -> Result:
    """Recall, capacity and FFN/attention attribution per exposure bin; see the module docstring.
    ``init_wb``: the same model before training, scored into ``fact_bits`` as arm ``init``."""
    def score(model, queries):
        return fq.score_queries(model, queries, value_sets=corpus.values, value_noise=corpus.config.value_noise,
                                heldout=p.heldout)

    rows = score(wb, corpus.queries)
    arms = {"trained": rows, "unseen": score(wb, unseen_queries(corpus, seed=seed)),
            **({"init": score(init_wb, corpus.queries)} if init_wb is not None else {})}
    per_fact = [r for arm, rs in arms.items() for r in fq.fact_bits(rs, corpus.values, arm)]
    bins = fq.by_exposure(rows, n_boot=p.n_boot, seed=seed)
    curve = fq.recall_curve(rows, n_boot=min(p.n_boot, 500), seed=seed)
    cap = fq.capacity_bits(rows, corpus.config.n_values, wb.n_params())
    queries = [q for q in corpus.queries if bool(q["heldout"]) == p.heldout]
    dla = {"margin": fq.dla_rows(wb, queries, contrast=corpus.values, progress=progress),
           "logit": fq.dla_rows(wb, queries, progress=progress)} if p.dla else {}
    dla_bins = {t: fq.dla_by_exposure(r, n_boot=p.n_boot, seed=seed) for t, r in dla.items()}
    spearman = fq.spearman_over_bins(bins) if len(bins) > 1 else None
    spearman = None if spearman is None or math.isnan(spearman) else spearman  # constant recall: undefined
    summary = {"spearman_accuracy": spearman, **cap, **fq.summarize(rows),
               "kl_bits_first": evals[0]["kl_bits"] if evals else None,
               "kl_bits_final": evals[-1]["kl_bits"] if evals else None}
    tables = {"facts": table_from_rows(rows), "bins": table_from_rows(bins),
              "curve": table_from_rows([dict(zip(("exposures", "y", "lo", "hi"), v))
                                        for v in zip(curve["x"], curve["y"], curve["lo"], curve["hi"])]),
              "summary": table_from_rows([summary]), "fact_bits": table_from_rows(per_fact)}
    if dla:
        tables["dla_facts"] = table_from_rows([{"target": t, **r} for t, rs in dla.items() for r in rs])
        tables["dla_bins"] = table_from_rows([{"target": t, **b} for t, bs in dla_bins.items() for b in bs])
    if evals:
        tables["evals"] = table_from_rows(evals)
    meta = {"spearman_accuracy": spearman, "capacity": cap, "summary": fq.summarize(rows),
            "curve": {k: v for k, v in curve.items() if not isinstance(v, list)},
            "value_entropy_bits": corpus.value_entropy_bits(), "heldout_templates": p.heldout}
    if dla:
        meta["ffn_share_by_exposure"] = {"exposures": [b["exposures"] for b in dla_bins["margin"]],
                                         **{t: [b["ffn_share"] for b in bs] for t, bs in dla_bins.items()}}
    return Result(kind=KIND, tables=tables, meta=meta,
                  provenance=make_provenance(wb, seed=seed, params=p.model_dump(),
                                             facts_config=corpus.config.to_dict()))


def train_and_compute(p: TrainExposureParams, seed: int = 0) -> Result:
    """Generate the preset's corpus, train its model in memory (seeded), then :func:`compute` with
    the untrained model of the same run (0 steps: the initial weights of the same seed) as ``init``."""
    fact_cfg, train_cfg = training.preset(p.preset)
    train_cfg = dataclasses.replace(train_cfg, seed=seed, **({"steps": p.steps} if p.steps else {}))
    corpus = generate(fact_cfg)
    init = training.train(corpus, train_cfg, None, device="cpu", progress=False, stop_at=0)
    run = training.train(corpus, train_cfg, None, device="cpu", progress=False)
    return compute(run.wb, corpus, run.evals, p, seed, init_wb=init.wb)


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` with ``recall_vs_exposure.png``, ``dla_by_exposure.png`` and, with training
    curves, ``loss_decomposition.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curve = {**result.meta["curve"], **{k: list(v) for k, v in result.table("curve").items()}}
    curve["x"] = curve.pop("exposures")
    bins = result.table("bins").to_dict("records")
    save_figure(plot_recall_vs_exposure(bins, curve), out / "recall_vs_exposure.png", dpi=120)
    if "dla_bins" in result.tables:
        margin = [b for b in result.table("dla_bins").to_dict("records") if b["target"] == "margin"]
        save_figure(plot_dla_by_exposure(margin), out / "dla_by_exposure.png", dpi=120)
    if "evals" in result.tables:
        save_figure(plot_loss_decomposition(result.table("evals").to_dict("records")), out / "loss_decomposition.png",
                    dpi=120)
    return result.save(out / "result")
