"""Knowledge capacity against model size: the job behind ``ffnmem capacity``.

Two forms. :func:`compute_sweep` runs a capacity-limited preset's sweep (sizes × seeds, resumably in
``run_dir/SIZE/seedN``; :func:`ffnmem.methods.capacity.sweep`) and returns a ``capacity_sweep`` Result
with the tables ``sizes`` (per size × seed: parameters all / non-embedding, bits unclipped, the old
clipped figure, ceiling, bits/param, recall, loss, steps, seconds), ``fit`` (c in bits = c·params
with its t CI over seeds, for both parameter counts and for the unclipped and clipped bits),
``check`` (more steps: ratio of bits with its CI), ``scaling`` / ``scaling_exposures`` (cross-entropy
at the values against size and exposures) and ``scaling_fit`` (L = H + A·x^−α). :func:`compute`
keeps the older width sweep (``--widths``) on any preset; :func:`write` / :func:`write_sweep` add
the figures.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import Field

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactCorpus, generate
from ffnmem.jobs.params import Params
from ffnmem.methods import capacity_fit as cf
from ffnmem.methods.capacity import RECORD, select_sizes, sweep, sweep_spec, sweep_widths
from ffnmem.methods.training import TrainConfig
from ffnmem.methods.training import preset as get_preset
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_capacity, plot_capacity_sweep, plot_scaling, plot_steps_curve, save_figure

SWEEP_KIND = "capacity_sweep"
_DROP = ("per_fact_bits", "evals", "fingerprint")


class CapacityParams(Params):
    preset: Literal["capacity-100x", "capacity-1000x", "capacity-quick"] = "capacity-quick"
    check: bool = True  # retrain the sweep's check sizes with more steps
    passes: int = Field(1, ge=1)  # k× the preset's steps for every model (k passes: k × the exposures)
    sizes: list[str] | None = None  # a subset of the preset's sizes, e.g. ["L1-d6"] (None: all)
    run_dir: str | None = None  # resumable run folders (None: train in memory)
    n_boot: int = Field(1000, ge=10)


def compute_sweep(preset: str, seeds: list[int], *, run_dir: str | Path | None = None, check: bool = True,
                  passes: int = 1, sizes: list[str] | None = None, n_boot: int = 1000, device: str = "auto",
                  progress: bool = True, corpus: FactCorpus | None = None, base: TrainConfig | None = None) -> Result:
    """The preset's sweep over its sizes (or the ``sizes`` named) and ``seeds``, every model trained
    ``passes``× the preset's steps; tables as in the module docstring."""
    spec = select_sizes(sweep_spec(preset), sizes)
    fcfg, tcfg = get_preset(preset)
    corpus = corpus if corpus is not None else generate(fcfg)
    base = base if base is not None else tcfg
    rows, checks = sweep(corpus, base, spec, seeds, run_dir=run_dir, check=check, passes=passes, device=device,
                         progress=progress)
    fits = [cf.fit_capacity(rows, params=p, bits=b) for p in ("params_non_embedding", "params_all")
            for b in ("bits", "bits_clipped")]
    by_size, by_exp = cf.scaling_points(rows)
    h = corpus.value_entropy_bits()
    scaling_fits = []
    for x, pts in (("params_non_embedding", by_size),
                   ("exposures", [p for p in by_exp if p["size"] == by_size[-1]["size"] and p["exposures"] > 0])):
        for fixed in (None, h):
            try:
                f = cf.scaling_fit([p[x] for p in pts], [p["ce_bits"] for p in pts], h=fixed)
            except BadInput as exc:  # too few points or no convergence: recorded, not fatal
                f = {"error": str(exc)}
            scaling_fits.append({"x": x, "size": None if x != "exposures" else by_size[-1]["size"],
                                 "data_entropy_bits": h, **f})
    tables = {"sizes": table_from_rows([{k: v for k, v in r.items() if k not in _DROP} for r in rows]),
              "fit": table_from_rows([{k: v for k, v in f.items() if k != "per_seed"} for f in fits]),
              "fit_per_seed": table_from_rows([{"params": f["params"], "bits": f["bits"], "seed": s, "c": c}
                                               for f in fits for s, c in f["per_seed"].items()]),
              "scaling": table_from_rows(by_size), "scaling_exposures": table_from_rows(by_exp),
              "scaling_fit": table_from_rows(_same_keys(scaling_fits))}
    if checks:
        tables["check"] = table_from_rows(cf.steps_check(rows, checks, n_boot=n_boot))
        tables["check_runs"] = table_from_rows([{k: v for k, v in r.items() if k not in _DROP} for r in checks])
    if run_dir is not None:
        curve = steps_curve(run_dir, corpus)
        if len({r["steps_factor"] for r in curve}) > 1:
            tables["steps_curve"] = table_from_rows([{k: v for k, v in r.items() if k not in _DROP} for r in curve])
            tables["steps_curve_checks"] = table_from_rows(curve_checks(curve, n_boot=n_boot))
    return Result(kind=SWEEP_KIND, tables=tables,
                  meta={"preset": preset, "seeds": list(seeds), "passes": passes, "train": dataclasses.asdict(base),
                        "sizes": [dataclasses.asdict(s) | {"name": s.name} for s in spec.sizes],
                        "value_entropy_bits": h, "ceiling_bits": rows[0]["ceiling"], "table_bits": rows[0]["max_bits"],
                        "estimator": "bits = Σ_facts (log2|V| − CE bits at the value), unclipped; "
                                     "bits_clipped = Σ max(0, log2|V| − loss bits) (the old figure)"},
                  provenance=make_provenance(None, seed=seeds[0], facts_config=corpus.config.to_dict()))


def steps_curve(run_dir: str | Path, corpus: FactCorpus) -> list[dict]:
    """Every finished run under ``run_dir`` (``SIZE[-steps×k]/seedN/capacity.json``) on this corpus,
    whichever invocation trained it: bits against k× the preset's steps (k passes: exposures × k),
    one row per size, k and seed, sorted. Runs of another table are skipped."""
    facts = json.loads(json.dumps(corpus.config.to_dict()))
    out = []
    for f in sorted(Path(run_dir).glob(f"*/seed*/{RECORD}")):
        try:
            rec = json.loads(f.read_text())
        except ValueError:
            continue  # a damaged record: the sweep itself rescores it
        if rec.get("fingerprint", {}).get("facts") != facts:
            continue
        size, _, k = f.parent.parent.name.partition("-steps×")
        out.append({**rec, "size": size, "steps_factor": int(k or 1),
                    "exposures_total": rec["exposures"] * int(k or 1)})
    return sorted(out, key=lambda r: (r["params_non_embedding"], r["steps_factor"], r["seed"]))


def curve_checks(curve: list[dict], n_boot: int = 1000) -> list[dict]:
    """Each size and seed's consecutive points of :func:`steps_curve` (k → next k) through
    :func:`ffnmem.methods.capacity_fit.steps_check`: the gain and ratio of bits with paired
    bootstrap CIs over facts; the curve has reached its plateau where ``still_rising`` turns false."""
    out = []
    for size, seed in dict.fromkeys((r["size"], r["seed"]) for r in curve):
        pts = [r for r in curve if (r["size"], r["seed"]) == (size, seed)]
        for a, b in zip(pts, pts[1:]):
            row = cf.steps_check([a], [b], n_boot=n_boot)[0]
            out.append({**row, "factor_base": a["steps_factor"], "factor_long": b["steps_factor"]})
    return out


def _same_keys(rows: list[dict]) -> list[dict]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in keys} for r in rows]


def write_sweep(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result``, ``capacity_sweep.png`` (non-embedding params), ``capacity_sweep_all_params.png``
    and ``scaling.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.table("sizes").to_dict("records")
    fits = {(f["params"], f["bits"]): f for f in result.table("fit").to_dict("records")}
    for params, name in (("params_non_embedding", "capacity_sweep.png"), ("params_all", "capacity_sweep_all_params.png")):
        save_figure(plot_capacity_sweep(rows, _ci(fits[params, "bits"]), params=params), out / name, dpi=120)
    sf = [f for f in result.table("scaling_fit").to_dict("records")
          if f["x"] == "params_non_embedding" and not f["h_fixed"] and f.get("error") is None]
    if "steps_curve" in result.tables:
        save_figure(plot_steps_curve(result.table("steps_curve").to_dict("records")), out / "steps_curve.png", dpi=120)
    save_figure(plot_scaling(result.table("scaling").to_dict("records"),
                             result.table("scaling_exposures").to_dict("records"), sf[0] if sf else None),
                out / "scaling.png", dpi=120)
    return result.save(out / "result")


def _ci(fit: dict) -> dict:
    """A fit row for plotting: an undefined CI (one seed) drawn as the point estimate."""
    lo, hi = fit.get("c_lo"), fit.get("c_hi")
    bad = lo is None or hi is None or math.isnan(lo)
    return {**fit, "c_lo": fit["c"] if bad else lo, "c_hi": fit["c"] if bad else hi}


def compute(corpus: FactCorpus, base: TrainConfig, widths: list[int], *, run_dir: str | Path | None = None,
            mlp_ratio: int = 4, device: str = "auto", progress: bool = True) -> Result:
    """Sweep the widths; one row per width (params, bits stored, bits per parameter, accuracy)."""
    rows = sweep_widths(corpus, base, widths, mlp_ratio=mlp_ratio, run_dir=run_dir, device=device,
                        progress=progress)
    return Result(kind="capacity", tables={"widths": table_from_rows(rows)},
                  meta={"mlp_ratio": mlp_ratio, "train": dataclasses.asdict(base),
                        "corpus_bits": rows[0]["max_bits"], "value_entropy_bits": corpus.value_entropy_bits()},
                  provenance=make_provenance(None, seed=base.seed, facts_config=corpus.config.to_dict()))


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` and ``capacity_vs_size.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_capacity(result.table("widths").to_dict("records")), out / "capacity_vs_size.png", dpi=120)
    return result.save(out / "result")
