"""Recall of a fact set: the job behind ``ffnmem recall`` and the batch analysis ``recall``, and the
popularity analysis that ``ffnmem recall --popularity`` adds.

:func:`compute` scores every fact (:func:`ffnmem.methods.recall.recall`: rank, top-1/top-k,
p(answer), loss bits) into a ``recall`` Result; :func:`popularity` relates those scores to
``wordfreq`` popularity and classifies the wrong answers (:mod:`ffnmem.methods.popularity`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import Field

from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact
from ffnmem.jobs.params import Params
from ffnmem.methods.popularity import popularity_analysis, shipped_facts
from ffnmem.methods.recall import recall
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result
from ffnmem.viz import (
    plot_recall,
    plot_recall_vs_popularity,
    plot_substitutions,
    save_figure,
)


class RecallParams(Params):
    scoring: Literal["first_token", "sequence"] = "first_token"
    k: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)


def compute(wb: Workbench, facts: list[Fact], p: RecallParams, seed: int = 0, *, progress: bool = False) -> Result:
    """Recall of every fact: tables ``facts`` (one row per fact) and ``relations``."""
    res = recall(wb, facts, scoring=p.scoring, k=p.k, batch_size=p.batch_size, progress=progress)
    return dataclasses.replace(res, provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed,
                                                               params=p.model_dump()))


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` and ``recall.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_recall(result), out / "recall.png")
    return result.save(out / "result")


def popularity(wb: Workbench, facts: list[Fact], recalled: Result, *, n_bins: int = 5, seed: int = 0) -> Result:
    """Recall vs popularity and the substitution analysis of a :func:`compute` result (same facts);
    the shipped fact files pool the candidate entities of each type."""
    return popularity_analysis(wb, facts, recalled, n_bins=n_bins, seed=seed, pool_facts=shipped_facts())


class PopularityParams(RecallParams):
    n_bins: int = Field(5, ge=1)


def compute_popularity(wb: Workbench, facts: list[Fact], p: PopularityParams, seed: int = 0) -> Result:
    """The batch analysis ``popularity``: the per-item tables of :func:`popularity` on a fresh
    :func:`compute` — ``facts`` (recall with subject/target Zipf frequency) and ``substitutions`` (one
    row per wrong fact, with its chance under the uniform, frequency-weighted and re-pairing nulls).
    The claims layer computes the statistics from these rows; the per-bin and per-relation summaries
    stay with the CLI."""
    recalled = compute(wb, facts, RecallParams(**p.model_dump(exclude={"n_bins"})), seed)
    res = popularity(wb, facts, recalled, n_bins=p.n_bins, seed=seed)
    keep = {k: t for k, t in res.tables.items() if k in ("facts", "substitutions")}
    return dataclasses.replace(res, tables=keep, provenance={**res.provenance, "params": p.model_dump()})


def write_popularity(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/popularity``, ``recall_vs_popularity.png`` and ``substitutions.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_recall_vs_popularity(result), out / "recall_vs_popularity.png", dpi=120)
    save_figure(plot_substitutions(result), out / "substitutions.png", dpi=120)
    return result.save(out / "popularity")
