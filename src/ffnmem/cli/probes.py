"""Probes and superposition: linear probes, toy models, sparse dictionaries."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ffnmem.cli.app import (
    SEED_MAX,
    DeviceOpt,
    ForceOpt,
    ModelOpt,
    TextOpt,
    _corpus_tokens,
    _load,
    app,
    check_range,
    out,
    parse_layers,
)
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.jobs import superposition as superposition_job
from ffnmem.jobs.probe import builtin_task, read_task, run_probe, run_sae


@app.command()
def probe(
    model: ModelOpt = "smollm2-135m",
    task: Annotated[list[str] | None, typer.Option(help="Built-in task(s): city_continent, word_category.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="TSV with columns prompt, label (optional type).")] = None,
    layers: Annotated[str, typer.Option(help="Layers: all, 5, 0-3,10, -1.")] = "all",
    kind: Annotated[str, typer.Option(help="Activation: resid_post, resid_mid, post (FFN coefficients), out.")] = "resid_post",
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    C: Annotated[float, typer.Option("--C", help="Inverse L2 strength of the logistic probe.")] = 0.1,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of folds and control labels.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("ffnmem-out/probe"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Linear probes per layer at the last (subject) token, with Hewitt-Liang control tasks and
    selectivity; writes curves.png, the cached representation datasets and a result table."""
    check_range("--C", C, 0, math.inf, lo_open=True)

    claim(out_dir, force=force)
    tasks = {t: builtin_task(t) for t in (task or ([] if prompts else ["city_continent", "word_category"]))}
    if prompts:
        tasks[prompts.stem] = read_task(prompts)
    wb = _load(model, device)
    folder = run_probe(wb, tasks, parse_layers(layers, wb.n_layers), out_dir, kind=kind, folds=folds, seed=seed, C=C)
    out.print(f"probe curves written to {folder / 'curves.png'} (table: {folder / 'result'})")


@app.command("toy-superposition")
def toy_superposition(
    n_features: Annotated[int, typer.Option(min=2, help="Features n.")] = 20,
    n_hidden: Annotated[int, typer.Option(min=1, help="Hidden dimensions m < n.")] = 5,
    steps: Annotated[int, typer.Option(min=1, help="Adam steps of the sparsity sweep.")] = 3000,
    grid: Annotated[int, typer.Option(min=2, help="Phase diagram grid size (sparsity × importance).")] = 7,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("ffnmem-out/toy"),
    force: ForceOpt = False,
) -> None:
    """Toy models of superposition (Elhage et al. 2022): sparsity sweep with WᵀW pictures and
    dimensionality, and the n=2, m=1 phase diagram; all instances trained at once on CPU."""
    if n_hidden >= n_features or n_hidden < 1 or steps < 1 or grid < 2:
        raise BadInput("need 1 <= --n-hidden < --n-features, --steps >= 1 and --grid >= 2")
    claim(out_dir, force=force)
    params = superposition_job.ToyParams(n_features=n_features, n_hidden=n_hidden, steps=steps, phase_grid=grid,
                           phase_steps=min(1500, steps))
    folder = superposition_job.write(superposition_job.compute(params, seed), out_dir).parent
    out.print(f"toy models written to {folder} (wtw.png, dimensionality.png, phase.png, result)")


@app.command()
def sae(
    model: ModelOpt = "smollm2-135m",
    layer: Annotated[int, typer.Option(help="FFN layer.")] = 15,
    text: TextOpt = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="About this many tokens.")] = 8192,
    window: Annotated[int, typer.Option(min=2, help="Tokens per window.")] = 64,
    expansion: Annotated[int, typer.Option(min=1, help="Latents per input dimension.")] = 4,
    k: Annotated[int, typer.Option(min=1, help="Active latents per token (TopK).")] = 16,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training tokens.")] = 4,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("ffnmem-out/sae"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Transcoder and SAE (on FFN coefficients) trained with eai-sparsify on one FFN layer:
    held-out FVU, L0, dead latents, top examples per latent, and a latents-vs-neurons
    monosemanticity proxy (entropy of top-example tokens)."""
    if expansion < 1 or k < 1 or epochs < 1:
        raise BadInput("--expansion, --k and --epochs must be at least 1")
    claim(out_dir, force=force)
    wb = _load(model, device)
    tokens = _corpus_tokens(wb, text, window, max_tokens)
    folder, rows = run_sae(wb, tokens, wb.check_layer(layer), out_dir, expansion=expansion, k=k, epochs=epochs, seed=seed)
    for r in rows:
        out.print(f"{r['target']}: FVU {r['fvu']:.3f} at L0 {r['l0']:.1f}, dead {r['dead']}/{r['n_latents']}; "
                  f"top-token entropy latents {r['latents_median_entropy_bits']:.2f} vs neurons "
                  f"{r['neurons_median_entropy_bits']:.2f} bits")
    out.print(f"results written to {folder / 'result'}")
