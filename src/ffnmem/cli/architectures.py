"""Architectures and objectives compared on the same synthetic facts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import SEED_MAX, DeviceOpt, ForceOpt, app, check_range, out
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.jobs.architectures import write_report
from ffnmem.jobs.fair import write_fair
from ffnmem.methods.architectures import compare
from ffnmem.methods.architectures import preset as get_preset
from ffnmem.methods.budgets import parse_budgets, parse_seeds
from ffnmem.methods.fair import DEFAULT_ARMS, Convergence, check_arms


@app.command("compare-architectures")
def compare_architectures(
    preset: Annotated[str, typer.Option(help="Preset: tiny (CPU, a few minutes) or paper.")] = "tiny",
    variants: Annotated[str | None, typer.Option(help="Comma list, e.g. causal,prefix-nopos,mlm-rope,encdec (default: preset's).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Override the number of training steps.")] = None,
    mask_rate: Annotated[float | None, typer.Option(help="Masking rate of the masked LM, in (0, 1).")] = None,
    match: Annotated[bool, typer.Option(help="Require equal (non-positional) parameter counts.")] = True,
    seed: Annotated[int | None, typer.Option(min=0, max=SEED_MAX, help="Seed of the corpus and of every variant's training.")] = None,
    budget: Annotated[str | None, typer.Option(help="Fair comparison: comma list of flops, supervised, steps, convergence (one folder per variant × budget × seed, resumable).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Fair comparison: comma list of seeds, e.g. 0,1,2 (default 0,1,2).")] = None,
    cap: Annotated[int, typer.Option(min=1, help="Convergence budget: step cap.")] = 4000,
    patience: Annotated[int, typer.Option(min=1, help="Convergence budget: checks without improvement before stopping.")] = 3,
    tol: Annotated[float, typer.Option(help="Convergence budget: relative improvement that counts, in [0, 1).")] = 0.01,
    check_every: Annotated[int, typer.Option(min=1, help="Convergence budget: steps between held-out loss checks.")] = 100,
    analyses: Annotated[bool, typer.Option(help="Fair comparison: per arm also the position probe, attention rank and direct effect by layer (each against the arm at init).")] = True,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, PNGs and result/.")] = Path("ffnmem-out/architectures"),
    device: DeviceOpt = "cpu",
    force: ForceOpt = False,
) -> None:
    """Causal vs prefix vs masked LM vs encoder-decoder (encdec, encdec-nopos), with and without
    positions, trained on the same synthetic facts: recall by exposure, bits/param, CE = H + KL, signal fraction, position probe, FFN share
    of attribution and attention effective rank; a Markdown report with one PNG per comparison."""
    import dataclasses


    check_range("--mask-rate", mask_rate, 0, 1, lo_open=True, hi_open=True)
    cfg = get_preset(preset)
    tr = dataclasses.replace(cfg.train, **{k: v for k, v in dict(steps=steps, seed=seed).items() if v is not None})
    fc = dataclasses.replace(cfg.facts, seed=seed) if seed is not None else cfg.facts
    changes = {"train": tr, "facts": fc, "match_params": match}
    if variants is not None:  # an empty --variants "" is an error, not the preset's list
        changes["variants"] = tuple(v.strip() for v in variants.split(",") if v.strip())
        if not changes["variants"]:
            raise BadInput(f"--variants {variants!r} names no variant; e.g. causal,prefix-nopos,mlm-rope")
    if mask_rate is not None:
        changes["mask_rate"] = mask_rate
    cfg = dataclasses.replace(cfg, **changes)
    if budget is not None or seeds is not None:
        fair(cfg, variants, budget, seeds, Convergence(cap=cap, every=check_every, tol=tol, patience=patience), out_dir,
             analyses=analyses)
        return
    cfg.objectives()  # validate before training anything
    claim(out_dir, force=force)
    rows = write_report(compare(cfg, device=device), cfg, out_dir)
    table = Table("variant", "recall", "bits/param", "probe MAE (last)", "FFN share", title="architectures")
    for r in rows:
        table.add_row(r["variant"], f"{r['accuracy']:.3f}", f"{r['bits_per_param']:.4f}",
                      f"{r['probe_mae_last']:.2f}", f"{r['ffn_share']:.2f}")
    out.print(table)
    out.print(f"report → {out_dir / 'report.md'}")


def fair(cfg, variants: str | None, budget: str | None, seeds: str | None, conv, out_dir: Path, *,
         analyses: bool = True) -> None:
    """--budget / --seeds: arms × budgets × seeds; resumes an existing --out folder (no --force needed)."""
    check_range("--tol", conv.tol, 0, 1, hi_open=True)
    budgets = parse_budgets(budget if budget is not None else "supervised")
    seed_list = parse_seeds(seeds if seeds is not None else "0,1,2", SEED_MAX)
    arms = tuple(v.strip() for v in variants.split(",") if v.strip()) if variants is not None else DEFAULT_ARMS
    check_arms(arms, cfg.mask_rate)
    rows = write_fair(cfg, arms, budgets, seed_list, conv, out_dir, analyses=analyses)
    table = Table("budget", "row", "recall (95% CI)", "steps", "supervised tokens", title="architectures, fair")
    for r in rows:
        table.add_row(r["budget"], r["row"], f"{r['recall']:.3f} ({r['recall_lo']:.3f}–{r['recall_hi']:.3f})",
                      f"{r['steps']:.0f}", f"{r['supervised_tokens']:,.0f}")
    out.print(table)
    out.print(f"report → {out_dir / 'fair.md'}")


