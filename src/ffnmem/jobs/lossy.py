"""Lossy compression of facts in small models: the job behind ``ffnmem lossy`` and the batch analysis
``lossy_compression``.

A preset pairs a corpus with Zipf-distributed attribute values and skewed exposure (so that some
values are far more common than others and some facts are seen far more often) with a list of
model widths whose fact bits exceed what the models store. :func:`train_models` trains one model per
width (resumably, in ``run_dir/d{width}``); :func:`compute` scores every fact on each model, on its
untrained twin (same shape and seed, 0 steps: the negative control of the substitution test) and on
facts it never saw (:func:`ffnmem.data.synthetic.unseen_queries`: what it answers from its prior
alone) — the substitution test also runs on the trained model's rare and frequent facts apart
(arms ``trained_rare``, ``trained_frequent``) — and returns a ``lossy_compression`` Result (:mod:`ffnmem.methods.lossy` for each table).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

from pydantic import Field
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactConfig, FactCorpus, generate, unseen_queries
from ffnmem.jobs.params import Params
from ffnmem.methods import lossy
from ffnmem.methods.capacity import width_configs
from ffnmem.methods.frequency import capacity_bits, score_queries
from ffnmem.methods.training import TrainConfig, train
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import (
    plot_recall_by_value_rank,
    plot_substitution,
    plot_survival,
    save_figure,
)

KIND = "lossy_compression"
_SIX = ("birth_city", "birth_year", "employer", "field", "university", "hobby")

# name -> (facts, base training config, widths). Steps are set so every fact sees its exposure count
# several times (epochs = steps * batch / documents); both fit a shared 2-core CPU (docs/FINDINGS.md).
PRESETS: dict[str, tuple[FactConfig, TrainConfig, tuple[int, ...]]] = {
    # smoke scale: 60 entities x 6 attributes x |V| = 100 (2.4 kbit of facts), ~2.5 epochs, two
    # widths; 2.5 min on a shared 2-core CPU (7 min at load 8); the models learn little beyond the value law
    "zipf-quick": (FactConfig(n_entities=60, attributes=_SIX, n_values=100, value_law="zipf", value_zipf_a=1.0,
                              bins=(1, 4, 16, 64), value_noise=0.05, seed=0),
                   TrainConfig(n_layers=2, n_heads=4, steps=100, batch_size=32, lr=3e-3, warmup=10,
                               eval_every=100, checkpoint_every=50), (8, 32)),
    # 200 entities x 6 x 100 (8.0 kbit of facts), 600 steps = 5.3 epochs (1 to 340 exposures), widths
    # 16-64 (41k-236k parameters); 40 min on a 2-core CPU shared with other jobs (docs/FINDINGS.md)
    "zipf-full": (FactConfig(n_entities=200, attributes=_SIX, n_values=100, value_law="zipf", value_zipf_a=1.0,
                             bins=(1, 2, 4, 8, 16, 32, 64), value_noise=0.05, seed=0),
                  TrainConfig(n_layers=2, n_heads=4, steps=600, batch_size=32, lr=3e-3, warmup=30,
                              eval_every=600, checkpoint_every=100), (16, 32, 64)),
}


class LossyParams(Params):
    preset: Literal["zipf-quick", "zipf-full"] = "zipf-quick"
    widths: list[int] | None = None  # d_model per model (default: the preset's); d_mlp = 4 d_model
    steps: int | None = Field(None, ge=1)
    weight: Literal["mentions", "facts"] = "mentions"  # how value frequency is counted
    n_boot: int = Field(1000, ge=10)
    n_sim: int = Field(2000, ge=10)  # Monte Carlo draws of the rank null


def preset(name: str) -> tuple[FactConfig, TrainConfig, tuple[int, ...]]:
    if name not in PRESETS:
        raise BadInput(f"unknown lossy preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def train_models(corpus: FactCorpus, base: TrainConfig, widths: list[int], *, run_dir: str | Path | None = None,
                 device: str = "cpu", progress: bool = True) -> list[dict]:
    """One trained model per width and its untrained twin: dicts ``label``, ``width``, ``wb``,
    ``init_wb``, ``steps``, ``seconds`` and ``tokens_per_s`` (of the steps trained in this call)."""
    out = []
    for cfg in tqdm(width_configs(base, widths), desc="widths", unit="model", disable=not progress):
        where = Path(run_dir) / f"d{cfg.d_model}" if run_dir is not None else None
        init = train(corpus, cfg, None, device=device, progress=False, stop_at=0)
        run = train(corpus, cfg, where, device=device, progress=progress)
        out.append({"label": f"d{cfg.d_model}", "width": cfg.d_model, "wb": run.wb, "init_wb": init.wb,
                    "steps": run.step, "seconds": run.seconds,
                    # a run resumed at its last step trains nothing here: no speed to report
                    "tokens_per_s": run.tokens_seen / run.seconds if run.tokens_seen else None})
    return out


def compute(corpus: FactCorpus, models: list[dict], p: LossyParams, seed: int = 0) -> Result:
    """Every table of :mod:`ffnmem.methods.lossy` for the trained ``models`` (:func:`train_models`)."""
    cfg = corpus.config
    freqs = lossy.value_frequencies(corpus.facts, corpus.values, weight=p.weight, value_noise=cfg.value_noise)
    ranks = lossy.frequency_ranks(freqs)
    min_f = min(f for fv in freqs.values() for f in fv.values())
    unseen = unseen_queries(corpus, seed=seed)
    facts, bins, subs, sub_rows, per_attr, kls, sizes, scored = [], [], [], [], [], [], [], []

    def score(wb, queries):
        return score_queries(wb, queries, value_sets=corpus.values, value_noise=cfg.value_noise)

    for m in models:
        arms = {"trained": score(m["wb"], corpus.queries), "init": score(m["init_wb"], corpus.queries),
                "unseen": score(m["wb"], unseen)}
        rows = arms["trained"]
        lo_cut, hi_cut = lossy.exposure_cuts(rows)  # wrong answers of rare and of frequent facts apart
        arms["trained_rare"] = [r for r in rows if r["exposures"] <= lo_cut]
        arms["trained_frequent"] = [r for r in rows if r["exposures"] >= hi_cut]
        scored.append({"label": m["label"], "params": m["wb"].n_params(), "rows": rows})
        cap = capacity_bits(rows, cfg.n_values, m["wb"].n_params())
        sizes.append({"model": m["label"], "d_model": m["width"], "params": cap["n_params"], "steps": m["steps"],
                      "seconds": m["seconds"], "tokens_per_s": m["tokens_per_s"],
                      "recall": float(sum(r["correct"] for r in rows) / len(rows)), "bits": cap["bits"],
                      "bits_unclipped": cap["bits_unclipped"], "fact_bits": cap["max_bits"],
                      "bits_above_prior": lossy.bits_above_prior(rows, freqs) if min_f > 0 else None,
                      "bits_per_param": cap["bits_per_param"]})
        for arm, rs in arms.items():
            if not arm.startswith("trained_"):
                facts += [{"model": m["label"], "arm": arm, **r} for r in rs]
            for key in ("prediction", "value_prediction"):
                wrong = lossy.substitution_rows(rs, freqs, key)  # once, for the test, the rows and per attribute
                test = lossy.substitution_test(rs, freqs, key=key, n_boot=p.n_boot, n_sim=p.n_sim, seed=seed,
                                               subs=wrong)
                subs.append({"model": m["label"], "arm": arm, **test})
                sub_rows += [{"model": m["label"], "arm": arm, "key": key, **r} for r in wrong]
                per_attr += [{"model": m["label"], "arm": arm, "key": key, **r}
                             for r in lossy.substitution_by_attribute(rs, freqs, key=key, subs=wrong)]
        for by in ("exposures", "value_rank"):
            bins += [{"model": m["label"], **b} for b in lossy.recall_by(rows, by, ranks, n_boot=p.n_boot, seed=seed)]
        kls.append({"model": m["label"], **lossy.kl_split(rows, n_boot=p.n_boot, seed=seed)})
    value_rows = [{"attribute": a, "value": v, "frequency": f, "rank": ranks[a][v]}
                  for a, fv in freqs.items() for v, f in fv.items()]
    tables = {"models": table_from_rows(sizes), "facts": table_from_rows(facts), "bins": table_from_rows(bins),
              "substitution": table_from_rows(subs), "substitution_rows": table_from_rows(sub_rows),
              "substitution_by_attribute": table_from_rows(per_attr),
              "kl_split": table_from_rows(kls), "survival": table_from_rows(lossy.survival(scored, n_boot=p.n_boot,
                                                                                             seed=seed)),
              "value_frequencies": table_from_rows(value_rows)}
    if len(scored) > 1:
        tables["forgetting"] = table_from_rows(lossy.forgetting_order(scored, seed=seed))
    meta = {"preset": p.preset, "weight": p.weight, "value_entropy_bits": corpus.value_entropy_bits(),
            "fact_bits": len(corpus.facts) * math.log2(cfg.n_values), "n_facts": len(corpus.facts)}
    return Result(kind=KIND, tables=tables, meta=meta,
                  provenance=make_provenance(None, seed=seed, params=p.model_dump(), facts_config=cfg.to_dict()))


def run(p: LossyParams, seed: int = 0, *, run_dir: str | Path | None = None, device: str = "cpu",
        progress: bool = True) -> Result:
    """Generate the preset's corpus, train its widths (training seed ``seed``), then :func:`compute`."""
    fcfg, tcfg, widths = preset(p.preset)
    tcfg = dataclasses.replace(tcfg, seed=seed, **({"steps": p.steps} if p.steps else {}))
    corpus = generate(fcfg)
    models = train_models(corpus, tcfg, list(p.widths or widths), run_dir=run_dir, device=device, progress=progress)
    return compute(corpus, models, p, seed)


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` with ``survival.png``, ``substitution.png`` and ``recall_by_value_rank.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_survival(result.table("survival").to_dict("records")), out / "survival.png", dpi=120)
    save_figure(plot_substitution(result.table("substitution").to_dict("records")), out / "substitution.png", dpi=120)
    bins = [b for b in result.table("bins").to_dict("records") if b["by"] == "value_rank"]
    save_figure(plot_recall_by_value_rank(bins), out / "recall_by_value_rank.png", dpi=120)
    return result.save(out / "result")
