"""Lossy compression of facts: ``ffnmem lossy`` (the job in :mod:`ffnmem.jobs.lossy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import SEED_MAX, DeviceOpt, ForceOpt, app, out
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.jobs import lossy as lossy_job


@app.command()
def lossy(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for runs/ (resumable checkpoints), result/ "
                                                                "and the PNG plots.")] = Path("ffnmem-out/lossy"),
    preset: Annotated[str, typer.Option(help="zipf-quick (60 entities, widths 8,32: a few minutes on a shared "
                                             "2-core CPU, smoke scale) or zipf-full (200 entities, widths "
                                             "16,32,64: ~40 min). Both: 6 attributes x 100 values with Zipf "
                                             "frequencies, skewed exposure, 5% value noise.")] = "zipf-quick",
    widths: Annotated[str | None, typer.Option(help="Residual widths d_model, comma-separated, smallest to "
                                                    "largest (default: the preset's); d_mlp = 4 x d_model.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps per model (default: the preset's).")] = None,
    weight: Annotated[str, typer.Option(help="Value frequency counted over corpus mentions (what a next-token "
                                             "predictor sees) or over facts.")] = "mentions",
    n_boot: Annotated[int, typer.Option(min=10, help="Bootstrap resamples for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Training seed (init and data order), the same "
                                                                "for every width; also seeds the statistics.")] = 0,
    device: DeviceOpt = "cpu",
    force: ForceOpt = False,
) -> None:
    """What a small model loses and what it answers instead. Trains one model per width on a corpus
    with Zipf-distributed values and skewed exposure (resumable, in OUT/runs/d{width}), then reports
    recall by exposure and by value frequency; the substitution test (are wrong answers the
    attribute's most frequent other value more often than if drawn in proportion to value frequency,
    or uniformly?) on the trained models, their untrained twins (negative control) and facts they
    never saw (answers from the prior alone); the KL gap above the data entropy in rare vs frequent
    facts; and which facts are forgotten first as the model shrinks (survival by exposure)."""
    if weight not in ("mentions", "facts"):
        raise BadInput(f"--weight {weight!r}: use mentions or facts")
    lossy_job.preset(preset)
    ws = None
    if widths is not None:
        try:
            ws = [int(x) for x in widths.split(",")]
        except ValueError:
            raise BadInput(f"cannot read --widths {widths!r}: give integers like 16,32,64") from None
    claim(out_dir, force=force)
    p = lossy_job.LossyParams(preset=preset, widths=ws, steps=steps, weight=weight, n_boot=n_boot)
    res = lossy_job.run(p, seed, run_dir=out_dir / "runs", device=device)
    lossy_job.write(res, out_dir)
    _print(res)
    out.print(f"→ {out_dir} (result/, survival.png, substitution.png, recall_by_value_rank.png)")


def _print(res) -> None:
    t = Table("model", "params", "recall", "bits stored", "bits/param", "s", title="models")
    for r in res.table("models").to_dict("records"):
        t.add_row(r["model"], f"{r['params']:,}", f"{r['recall']:.3f}", f"{r['bits']:.0f} / {r['fact_bits']:.0f}",
                  f"{r['bits_per_param']:.4f}", f"{r['seconds']:.0f}")
    out.print(t)
    t = Table("model", "arm", "n subst.", "top share [95% CI]", "freq. null", "p", "uniform null", "p",
              title="wrong answers (top-1) that are the most frequent other value")
    for r in res.table("substitution").to_dict("records"):
        if r["key"] == "prediction" and r["n_substitutions"] > 0:
            t.add_row(r["model"], r["arm"], str(r["n_substitutions"]),
                      f"{r['top_rate']:.3f} [{r['top_rate_lo']:.3f}, {r['top_rate_hi']:.3f}]",
                      f"{r['null_frequency']:.3f}", f"{r['p_frequency']:.2g}", f"{r['null_uniform']:.3f}",
                      f"{r['p_uniform']:.2g}")
    out.print(t)
    t = Table("model", "KL rare [95% CI]", "KL frequent [95% CI]", "rare − frequent", "p", title="KL gap (bits)")
    for r in res.table("kl_split").to_dict("records"):
        t.add_row(r["model"], f"{r['kl_rare']:.2f} [{r['kl_rare_lo']:.2f}, {r['kl_rare_hi']:.2f}]",
                  f"{r['kl_frequent']:.2f} [{r['kl_frequent_lo']:.2f}, {r['kl_frequent_hi']:.2f}]",
                  f"{r['kl_diff']:.2f} [{r['kl_diff_lo']:.2f}, {r['kl_diff_hi']:.2f}]", f"{r['p_value']:.2g}")
    out.print(t)
    surv = res.table("survival").to_dict("records")
    models = list(dict.fromkeys(r["model"] for r in surv))
    t = Table("exposures", *models, title="recall by exposure (survival as the model shrinks)")
    for lo in sorted({r["bin_lo"] for r in surv}):
        cells = {r["model"]: f"{r['recall']:.2f}" for r in surv if r["bin_lo"] == lo}
        hi = next(r["bin_hi"] for r in surv if r["bin_lo"] == lo)
        t.add_row(str(lo) if lo == hi else f"{lo}-{hi}", *(cells.get(m, "") for m in models))
    out.print(t)
