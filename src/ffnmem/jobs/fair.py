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
from ffnmem.methods.fair import Convergence, aggregate, aggregate_analyses, check_arms, init_unit, run_unit
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import save_figure
from ffnmem.viz.architectures import plot_position_probe_seeds

log = logging.getLogger(__name__)


def _settings(cfg: CompareConfig, conv: Convergence) -> dict:
    return json.loads(json.dumps({"facts": cfg.facts.to_dict(), "train": dataclasses.asdict(cfg.train),
                                  "mask_rate": cfg.mask_rate, "convergence": dataclasses.asdict(conv)}))


def unit_path(out: Path, budget: str, arm: str, seed: int) -> Path:
    return out / "units" / budget / arm / f"seed-{seed}" / "unit.json"


def run_units(cfg: CompareConfig, arms: tuple[str, ...], budgets: tuple[str, ...], seeds: tuple[int, ...],
              conv: Convergence, out_dir: str | Path, *, progress: bool = True, analyses: bool = False) -> list[dict]:
    """Every unit, budget by budget (so a run cut short has whole budgets), reusing finished ones;
    ``analyses``: with :func:`ffnmem.methods.variant_analysis.analyse` (a finished unit without them is refused)."""
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
            if analyses and "analyses" not in unit:
                raise BadInput(f"{path} was made without the per-arm analyses; use a new --out folder or --no-analyses")
            units.append(unit)
            continue
        unit = {**run_unit(arm, budget, seed, cfg, conv, analyses=analyses), "settings": settings}
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
               *, progress: bool = True, analyses: bool = False) -> list[dict]:
    """Run (or resume) every unit and write ``result/`` and ``fair.md`` (with ``analyses``, also the
    per-arm tables ``position_probe``, ``attention_rank``, ``dla_by_layer`` and ``position_probe.png``);
    ``capacity`` always. The aggregated rows."""
    out = Path(out_dir)
    units = run_units(cfg, tuple(arms), tuple(budgets), tuple(seeds), conv, out, progress=progress, analyses=analyses)
    rows = aggregate(units)
    per_arm = aggregate_analyses(units)
    facts = [{"budget": u["budget"], "arm": u["arm"], "row": name, "seed": u["seed"], **f}
             for u in units for name, r in u["rows"].items() for f in r["facts"]]
    per_seed = [{"budget": u["budget"], "row": name, "seed": u["seed"], "steps": u["steps"], "cap_hit": u["cap_hit"],
                 "recall": r["summary"]["accuracy"], "loss_bits": r["summary"]["loss_bits"],
                 "supervised_tokens": u["supervised_tokens"], "train_flops": u["train_flops"], "seconds": u["seconds"]}
                for u in units for name, r in u["rows"].items()]
    prov = make_provenance(None, seed=seeds[0], source="ffnmem.methods.fair", facts_config=cfg.facts.to_dict())
    flat = [{k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    tables = {"rows": table_from_rows(flat), "seeds": table_from_rows(per_seed), "facts": table_from_rows(facts)}
    tables.update({name: table_from_rows(t) for name, t in per_arm.items() if t})
    Result(kind="architectures-fair", tables=tables,
           meta={"settings": _settings(cfg, conv), "arms": list(arms), "budgets": list(budgets), "seeds": list(seeds)},
           provenance=prov).save(out / "result")
    text = markdown(rows, cfg, conv, sum(u["seconds"] for u in units)) + analyses_markdown(per_arm)
    if per_arm["position_probe"]:
        save_figure(plot_position_probe_seeds(per_arm["position_probe"]), out / "position_probe.png")
        text += "\n![position probe](position_probe.png)\n"
    atomic_write_text(out / "fair.md", text)
    return rows


def _ci(r: dict, col: str, digits: int = 2) -> str:
    return f"{_fmt(r[col], digits)} ({_fmt(r[col + '_lo'], digits)}–{_fmt(r[col + '_hi'], digits)})"


def analyses_markdown(per_arm: dict[str, list[dict]]) -> str:
    """The per-arm sections of ``fair.md``: capacity, position probe, direct effect by layer, attention rank."""
    lines = ["", "## Bits stored (`methods.capacity.knowledge_bits`: unclipped, noise-aware ceiling)", "",
             "| budget | row | seeds | bits (95% t CI) | of ceiling | bits / non-embedding param | bits / param (all) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['budget']} | {r['row']} | {r['n_seeds']} | {_ci(r, 'bits', 0)} | {_fmt(r['fraction_of_ceiling'])} | "
              f"{_ci(r, 'bits_per_param', 4)} | {_fmt(r['bits_per_param_all'], 4)} |" for r in per_arm["capacity"]]
    probe = per_arm["position_probe"]
    if not probe:
        return "\n".join(lines) + "\n"
    lines += ["", "## Position probe (linear; positions after BOS; mean over seeds, 95% t CI)", "",
              "Accuracy of a least-squares classifier over positions and R² of a ridge regression onto the "
              "index, held out by sequence; `init`: the same arm at its initial weights; `null`: labels permuted. "
              "`random`: tokens drawn uniformly after BOS, so token identity carries no position.", "",
              "| budget | arm | inputs | depth | accuracy (CI) | init | null | chance | R² (CI) | R² init | R² null |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["budget"], r["arm"], r["inputs"], r["depth"], r["model"]): r for r in probe}
    for (b, a, i, d, m), r in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
        if m != "trained":
            continue
        init = by.get((b, a, i, d, "init"), {})
        lines.append(f"| {b} | {a} | {i} | {d} | {_ci(r, 'accuracy')} | {_fmt(init.get('accuracy'))} | "
                     f"{_fmt(r['null_accuracy'])} | {_fmt(r['chance'])} | {_ci(r, 'r2')} | {_fmt(init.get('r2'))} | "
                     f"{_fmt(r['null_r2'])} |")
    lines += ["", "## Direct effect of the answer by layer (share of Σ|effect|, mean over seeds)", "",
              "| budget | arm | shares (stack L layer: attention / FFN) | FFN total |", "|---|---|---|---|"]
    dla: dict[tuple, dict] = {}
    for r in per_arm["dla_by_layer"]:
        dla.setdefault((r["budget"], r["arm"]), {})[(r["stack"], r["layer"], r["component"])] = r["share"]
    for (b, a), sh in sorted(dla.items()):
        cells = [f"{s[:3]} L{l}: {sh[(s, l, 'attention')]:.2f} / {sh[(s, l, 'ffn')]:.2f}"
                 for s, l in sorted({(s, l) for s, l, _ in sh}, key=lambda x: (x[0] != "encoder", x[1]))]
        lines.append(f"| {b} | {a} | {'; '.join(cells)} | {sum(v for k, v in sh.items() if k[2] == 'ffn'):.2f} |")
    lines += ["", "## Attention effective rank (Roy & Vetterli 2007) per layer, heads in order; trained (init)", "",
              "| budget | arm | per layer: heads | max |", "|---|---|---|---|"]
    er: dict[tuple, dict] = {}
    for r in per_arm["attention_rank"]:
        er.setdefault((r["budget"], r["arm"]), {}).setdefault((r["layer"], r["model"]), []).append((r["head"], r["erank"], r["max_rank"]))
    for (b, a), d in sorted(er.items()):
        cells = []
        for layer in sorted({k[0] for k in d}):
            tr, ini = (["/".join(f"{e:.1f}" for _, e, _ in sorted(d.get((layer, m), []))) for m in ("trained", "init")])
            cells.append(f"L{layer}: {tr} ({ini})")
        lines.append(f"| {b} | {a} | {'; '.join(cells)} | {max(x[2] for v in d.values() for x in v):.0f} |")
    return "\n".join(lines) + "\n"


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
    # the per-arm position probe, attention rank and direct effect by layer (off by default: the claims reuse
    # units made without them, which run_units refuses to reuse when they are asked for)
    analyses: bool = False


def compute(p: FairParams, seed: int, *, progress: bool = False) -> Result:
    """Table ``facts``: one row per fact, budget and row (``arm_row``: the arm, or ``mlm-open``), with
    ``correct`` and ``loss_bits``; budget ``init`` scores every arm at its initial weights (the control).
    Table ``capacity`` per trained unit and row; with ``analyses`` the tables ``position_probe``,
    ``attention_rank`` and ``dla_by_layer`` of :func:`ffnmem.methods.variant_analysis.analyse` per
    trained unit (``model`` = trained / init in the first two)."""
    cfg = preset(p.preset)
    if p.steps is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=p.steps))
    conv = Convergence(cap=p.cap, every=p.every, tol=p.tol, patience=p.patience)
    with tempfile.TemporaryDirectory() as tmp:
        units = run_units(cfg, tuple(p.arms), tuple(p.budgets), (seed,), conv, p.units_dir or tmp, progress=progress,
                          analyses=p.analyses)
    caps = [{"budget": u["budget"], "arm": u["arm"], "arm_row": name, **r["capacity"]}
            for u in units for name, r in u["rows"].items() if "capacity" in r]  # units older than it lack it
    tables = {"capacity": table_from_rows(caps)} if caps else {}
    for name in ("position_probe", "attention_rank", "dla_by_layer") if p.analyses else ():
        tables[name] = table_from_rows([{"budget": u["budget"], "arm": u["arm"], **r} for u in units
                                        for r in u["analyses"][name]])
    units += [init_unit(arm, seed, cfg) for arm in p.arms]
    facts = [{"budget": u["budget"], "arm": u["arm"], "arm_row": name, "steps": u["steps"], **f}
             for u in units for name, r in u["rows"].items() for f in r["facts"]]
    prov = make_provenance(None, seed=seed, source="ffnmem.methods.fair", facts_config=cfg.facts.to_dict())
    return Result(kind="architectures_fair", tables={"facts": table_from_rows(facts), **tables},
                  meta={"settings": _settings(cfg, conv)}, provenance=prov)
