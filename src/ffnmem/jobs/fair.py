"""The fair comparison (``ffnmem compare-architectures --budget ... --seeds ...``): one folder per
arm × budget × seed (``units/{budget}/{arm}/seed-{s}/unit.json``), so an interrupted run resumes
where it stopped; a Result with the per-seed, per-fact and aggregated tables; ``fair.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.paths import atomic_write_json, atomic_write_text
from ffnmem.jobs.params import Params
from ffnmem.methods.architectures import CompareConfig, preset
from ffnmem.methods.fair import Convergence, aggregate, check_arms, init_unit, run_unit
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows

log = logging.getLogger(__name__)


def _settings(cfg: CompareConfig, conv: Convergence) -> dict:
    return json.loads(json.dumps({"facts": cfg.facts.to_dict(), "train": dataclasses.asdict(cfg.train),
                                  "mask_rate": cfg.mask_rate, "convergence": dataclasses.asdict(conv)}))


def unit_path(out: Path, budget: str, arm: str, seed: int) -> Path:
    return out / "units" / budget / arm / f"seed-{seed}" / "unit.json"


def run_units(cfg: CompareConfig, arms: tuple[str, ...], budgets: tuple[str, ...], seeds: tuple[int, ...],
              conv: Convergence, out_dir: str | Path, *, progress: bool = True) -> list[dict]:
    """Every unit, budget by budget (so a run cut short has whole budgets), reusing finished ones."""
    check_arms(arms, cfg.mask_rate)
    out = Path(out_dir)
    settings = _settings(cfg, conv)
    units = []
    todo = [(b, s, a) for b in budgets for s in seeds for a in arms]
    for budget, seed, arm in tqdm(todo, desc="units", disable=not progress):
        path = unit_path(out, budget, arm, seed)
        if path.exists():
            unit = json.loads(path.read_text())
            if unit.get("settings") != settings:
                raise BadInput(f"{path} was made with other settings; use a new --out folder or the same settings")
            units.append(unit)
            continue
        unit = {**run_unit(arm, budget, seed, cfg, conv), "settings": settings}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, unit)
        log.info("%s %s seed %d: %d steps, %.0f s", budget, arm, seed, unit["steps"], unit["seconds"])
        units.append(unit)
    return units


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(rows: list[dict], cfg: CompareConfig, conv: Convergence, wall_s: float | None = None) -> str:
    bins = sorted(int(k.split("@")[1]) for k in rows[0] if k.startswith("recall@"))
    head = ["budget", "row", "seeds", "recall (95% t CI)", *[f"recall@{e}" for e in bins],
            *[f"loss bits@{e}" for e in bins], "steps (per seed)", "supervised tokens", "TFLOPs", "params", "caps hit"]
    lines = ["# Architectures compared fairly (issue 17)", "",
             (f"Facts: {cfg.facts.n_entities} entities × {len(cfg.facts.attributes)} attributes, |V| = "
              f"{cfg.facts.n_values}, value noise {cfg.facts.value_noise}, exposures {'/'.join(map(str, bins))}; a fresh corpus "
              f"and model per seed. Model {cfg.train.n_layers}L d{cfg.train.d_model} d_mlp {cfg.train.d_mlp}, batch "
              f"{cfg.train.batch_size} documents (encdec and causal-sentences: their sentences); reference budget: the causal "
              f"LM at {cfg.train.steps} steps. Convergence: held-out loss checked every {conv.every} steps, stop when "
              f"no relative improvement > {conv.tol} for {conv.patience} checks, cap {conv.cap} steps (cosine to the cap). "
              "Recall: one corpus-template query per fact; mean over seeds with a Student-t 95% interval across seeds. "
              "`mlm` is read with the closed query `prompt <mask> .`, `mlm-open` with `prompt <mask>`."
              + (f" Compute: {wall_s / 60:.1f} min summed over units (one torch thread each) on {platform.node()}"
                 " (2-core VM, shared)." if wall_s else "")), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["budget"], r["row"], ",".join(map(str, r["seeds"])),
                 f"{r['recall']:.3f} ({_fmt(r['recall_lo'], 3)}–{_fmt(r['recall_hi'], 3)})",
                 *[_fmt(r[f"recall@{e}"]) for e in bins], *[_fmt(r[f"loss_bits@{e}"]) for e in bins],
                 "/".join(str(s) for s in r["steps_all"]), f"{r['supervised_tokens']:,.0f}",
                 f"{r['train_flops'] / 1e12:.1f}", f"{r['trainable_params']:,}",
                 "–" if r["caps_hit"] is None else f"{r['caps_hit']}/{len(r['seeds'])}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_fair(cfg: CompareConfig, arms, budgets, seeds, conv: Convergence, out_dir: str | Path,
               *, progress: bool = True) -> list[dict]:
    """Run (or resume) every unit and write ``result/`` and ``fair.md``; the aggregated rows."""
    out = Path(out_dir)
    units = run_units(cfg, tuple(arms), tuple(budgets), tuple(seeds), conv, out, progress=progress)
    rows = aggregate(units)
    facts = [{"budget": u["budget"], "arm": u["arm"], "row": name, "seed": u["seed"], **f}
             for u in units for name, r in u["rows"].items() for f in r["facts"]]
    per_seed = [{"budget": u["budget"], "row": name, "seed": u["seed"], "steps": u["steps"], "cap_hit": u["cap_hit"],
                 "recall": r["summary"]["accuracy"], "loss_bits": r["summary"]["loss_bits"],
                 "supervised_tokens": u["supervised_tokens"], "train_flops": u["train_flops"], "seconds": u["seconds"]}
                for u in units for name, r in u["rows"].items()]
    prov = make_provenance(None, seed=seeds[0], source="ffnmem.methods.fair", facts_config=cfg.facts.to_dict())
    flat = [{k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    Result(kind="architectures-fair", tables={"rows": table_from_rows(flat), "seeds": table_from_rows(per_seed),
                                              "facts": table_from_rows(facts)},
           meta={"settings": _settings(cfg, conv), "arms": list(arms), "budgets": list(budgets), "seeds": list(seeds)},
           provenance=prov).save(out / "result")
    atomic_write_text(out / "fair.md", markdown(rows, cfg, conv, sum(u["seconds"] for u in units)))
    return rows


class FairParams(Params):
    """The batch analysis ``architectures_fair`` (one seed a unit): the fair comparison's per-fact rows."""

    preset: Literal["tiny", "paper"] = "tiny"
    arms: list[str] = Field(default_factory=lambda: ["causal", "mlm"], min_length=1)
    budgets: list[Literal["steps", "flops", "supervised", "convergence"]] = Field(
        default_factory=lambda: ["supervised"], min_length=1)
    steps: int | None = Field(None, ge=1)  # the causal reference's steps (default: the preset's)
    cap: int = Field(4000, ge=1)
    every: int = Field(100, ge=1)
    tol: float = Field(0.01, ge=0, lt=1)
    patience: int = Field(3, ge=1)
    units_dir: str = ""  # reuse (and write) the units of `compare-architectures --out DIR`; "" = a temporary folder


def compute(p: FairParams, seed: int, *, progress: bool = False) -> Result:
    """Table ``facts``: one row per fact, budget and row (``arm_row``: the arm, or ``mlm-open``), with
    ``correct`` and ``loss_bits``; budget ``init`` scores every arm at its initial weights (the control)."""
    cfg = preset(p.preset)
    if p.steps is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=p.steps))
    conv = Convergence(cap=p.cap, every=p.every, tol=p.tol, patience=p.patience)
    with tempfile.TemporaryDirectory() as tmp:
        units = run_units(cfg, tuple(p.arms), tuple(p.budgets), (seed,), conv, p.units_dir or tmp, progress=progress)
    units += [init_unit(arm, seed, cfg) for arm in p.arms]
    facts = [{"budget": u["budget"], "arm": u["arm"], "arm_row": name, "steps": u["steps"], **f}
             for u in units for name, r in u["rows"].items() for f in r["facts"]]
    prov = make_provenance(None, seed=seed, source="ffnmem.methods.fair", facts_config=cfg.facts.to_dict())
    return Result(kind="architectures_fair", tables={"facts": table_from_rows(facts)},
                  meta={"settings": _settings(cfg, conv)}, provenance=prov)
