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
from ffnmem.methods.architectures import compare
from ffnmem.methods.architectures import preset as get_preset


@app.command("compare-architectures")
def compare_architectures(
    preset: Annotated[str, typer.Option(help="Preset: tiny (CPU, a few minutes) or paper.")] = "tiny",
    variants: Annotated[str | None, typer.Option(help="Comma list, e.g. causal,prefix-nopos,mlm-rope,encdec (default: preset's).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Override the number of training steps.")] = None,
    mask_rate: Annotated[float | None, typer.Option(help="Masking rate of the masked LM, in (0, 1).")] = None,
    match: Annotated[bool, typer.Option(help="Require equal (non-positional) parameter counts.")] = True,
    seed: Annotated[int | None, typer.Option(min=0, max=SEED_MAX, help="Seed of the corpus and of every variant's training.")] = None,
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
    cfg.objectives()  # validate before training anything
    claim(out_dir, force=force)
    rows = write_report(compare(cfg, device=device), cfg, out_dir)
    table = Table("variant", "recall", "bits/param", "probe MAE (last)", "FFN share", title="architectures")
    for r in rows:
        table.add_row(r["variant"], f"{r['accuracy']:.3f}", f"{r['bits_per_param']:.4f}",
                      f"{r['probe_mae_last']:.2f}", f"{r['ffn_share']:.2f}")
    out.print(table)
    out.print(f"report → {out_dir / 'report.md'}")


