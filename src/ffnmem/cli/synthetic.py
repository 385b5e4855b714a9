"""Frequency and recall: synthetic fact corpora, training, recall vs exposure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import DeviceOpt, app, out
from ffnmem.errors import BadInput


facts_app = typer.Typer(help="Synthetic fact corpora with controlled exposure.", no_args_is_help=True)
app.add_typer(facts_app, name="facts")
PresetOpt = Annotated[str, typer.Option(help="Training preset: tiny (CPU, ~1 min) or paper (GPU).")]


@facts_app.command("make")
def facts_make(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for corpus.txt, facts.jsonl, queries.jsonl.")] = Path("ffnmem-out/facts"),
    preset: PresetOpt = "tiny",
    entities: Annotated[int | None, typer.Option(help="Number of invented entities (default: the preset's).")] = None,
    law: Annotated[str | None, typer.Option(help="Exposure law: bins, zipf or loguniform.")] = None,
    bins: Annotated[str | None, typer.Option(help="Exposure bins, comma-separated, e.g. 1,2,4,8.")] = None,
    zipf_a: Annotated[float | None, typer.Option(help="Zipf exponent a (law=zipf).")] = None,
    max_exposure: Annotated[int | None, typer.Option(help="Largest exposure count (zipf, loguniform).")] = None,
    values: Annotated[int | None, typer.Option(help="Values per attribute.")] = None,
    noise: Annotated[float | None, typer.Option(help="Share of mentions with a random value (sets the data entropy).")] = None,
    junk: Annotated[float | None, typer.Option(help="Share of junk documents.")] = None,
    seed: Annotated[int | None, typer.Option(help="Generator seed.")] = None,
) -> None:
    """Generate a synthetic biography corpus: invented entities, attributes, exposure per entity."""
    import dataclasses

    from ffnmem.synthetic import generate
    from ffnmem.training import preset as get_preset

    cfg, _ = get_preset(preset)
    try:
        bin_tuple = tuple(int(b) for b in bins.split(",")) if bins else None
    except ValueError:
        raise BadInput(f"cannot read --bins {bins!r}: give integers like 1,2,4,8") from None
    changes = {k: v for k, v in dict(n_entities=entities, law=law, bins=bin_tuple, zipf_a=zipf_a,
                                     max_exposure=max_exposure, n_values=values, value_noise=noise,
                                     junk_share=junk, seed=seed).items() if v is not None}
    corpus = generate(dataclasses.replace(cfg, **changes))
    corpus.save(out_dir)
    out.print(f"{len(corpus.entities)} entities, {len(corpus.facts)} facts, {len(corpus.documents)} documents, "
              f"data entropy {corpus.value_entropy_bits():.3f} bits/value → [bold]{out_dir}[/bold]")


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints/, curves.json, config.json.")] = Path("ffnmem-out/train"),
    facts: Annotated[Path | None, typer.Option(help="Corpus folder from `ffnmem facts make` (default: the preset's).")] = None,
    preset: PresetOpt = "tiny",
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default: the preset's).")] = None,
    d_model: Annotated[int | None, typer.Option(help="Residual width.")] = None,
    d_mlp: Annotated[int | None, typer.Option(help="FFN width.")] = None,
    layers: Annotated[int | None, typer.Option(help="Number of layers.")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (init and data order).")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint in --out.")] = True,
    device: DeviceOpt = "auto",
) -> None:
    """Train a small TransformerLens-native model on a synthetic fact corpus (resumable)."""
    import dataclasses

    from ffnmem.synthetic import FactCorpus, generate
    from ffnmem.training import preset as get_preset
    from ffnmem.training import train as run_train

    fcfg, tcfg = get_preset(preset)
    corpus = FactCorpus.load(facts) if facts else generate(fcfg)
    changes = {k: v for k, v in dict(steps=steps, d_model=d_model, d_mlp=d_mlp, n_layers=layers, seed=seed).items()
               if v is not None}
    run = run_train(corpus, dataclasses.replace(tcfg, **changes), out_dir, device=device, resume=resume)
    last = run.evals[-1] if run.evals else {}
    out.print(f"step {run.step}: recall {last.get('accuracy', float('nan')):.3f}, KL gap "
              f"{last.get('kl_bits', float('nan')):.3f} bits, {run.tokens_seen / max(run.seconds, 1e-9):,.0f} tokens/s "
              f"→ [bold]{out_dir}[/bold]")


@app.command("exposure")
def exposure(
    run_dir: Annotated[Path, typer.Option("--run", help="Run folder written by `ffnmem train`.")] = Path("ffnmem-out/train"),
    facts: Annotated[Path | None, typer.Option(help="Corpus folder (default: regenerate from the run's config).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for result/ and the PNG plots.")] = Path("ffnmem-out/exposure"),
    heldout: Annotated[bool, typer.Option(help="Query with held-out paraphrase templates.")] = False,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Recall vs exposure of a trained run: per-bin accuracy and loss bits with CIs, logistic fit,
    bits per parameter, cross-entropy = data entropy + KL gap over training."""
    import json

    from ffnmem.frequency import exposure_report
    from ffnmem.synthetic import FactConfig, FactCorpus, generate
    from ffnmem.training import load_run

    wb, curves = load_run(run_dir, device=device)
    if facts:
        corpus = FactCorpus.load(facts)
    else:
        try:
            corpus = generate(FactConfig.from_dict(json.loads((run_dir / "config.json").read_text())["facts"]))
        except (OSError, KeyError, ValueError):
            raise BadInput(f"{run_dir}/config.json is missing or damaged; pass --facts") from None
    res = exposure_report(wb, corpus, curves.get("evals", []), out_dir, n_boot=n_boot, seed=seed, heldout=heldout)
    table = Table("exposures", "n", "recall", "95% CI", "loss bits", title="recall vs exposure")
    for b in res.table("bins").to_dict("records"):
        table.add_row(str(b["exposures"]), str(b["n"]), f"{b['accuracy']:.3f}",
                      f"[{b['accuracy_lo']:.3f}, {b['accuracy_hi']:.3f}]", f"{b['loss_bits']:.2f}")
    out.print(table)
    cap = res.meta["capacity"]
    out.print(f"Spearman over bins {res.meta['spearman_accuracy']:.3f}; capacity {cap['bits']:.0f} bits "
              f"= {cap['bits_per_param']:.4f} bits/param; → [bold]{out_dir}[/bold]")
