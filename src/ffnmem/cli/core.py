"""Commands of the foundation: models, the main job (demo), streaming capture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import (
    DeviceOpt,
    ForceOpt,
    ModelOpt,
    TextOpt,
    _corpus_tokens,
    _load,
    app,
    console,
    out,
    parse_layers,
)
from ffnmem.core.errors import BadInput
from ffnmem.core.models import list_models
from ffnmem.core.outputs import claim
from ffnmem.jobs import capture as capture_job
from ffnmem.jobs.demo import run_demo
from ffnmem.methods import capture as cap


@app.command()
def models() -> None:
    """List the models this machine can load offline."""
    table = Table("spec", "source", "available", "detail", title="models available offline")
    for e in list_models():
        table.add_row(e.spec, e.source, "yes" if e.available else "no", e.detail)
    out.print(table)


@app.command()
def demo(
    model: ModelOpt = "smollm2-135m",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, plots and result/.")] = Path("ffnmem-out/demo"),
    top: Annotated[int, typer.Option(min=1, help="FFN memories shown per fact.")] = 8,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """The main job: recall of shipped capital-city facts, the FFN memories that write each answer
    (direct logit attribution per neuron) and their value vectors in vocabulary space."""
    claim(out_dir, force=force)
    wb = _load(model, device)
    with console.status("attributing facts to FFN memories …"):
        report = run_demo(wb, out_dir, top_neurons=top)
    out.print(f"report written to {report}")


@app.command()
def capture(
    model: ModelOpt = "smollm2-135m",
    text: TextOpt = None,
    layers: Annotated[str, typer.Option(help="Layers: all, 5, 0-3,10, -1.")] = "all",
    kind: Annotated[list[str], typer.Option(help="Activation kinds: post (coefficients), pre, out, mlp_in, "
                                            "resid_pre, resid_mid, resid_post.")] = ["post"],  # noqa: B006
    window: Annotated[int, typer.Option(min=2, help="Tokens per window.")] = 128,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Stop after about this many tokens.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 8,
    k: Annotated[int, typer.Option(min=1, help="Top-k examples kept per unit.")] = 20,
    shards: Annotated[bool, typer.Option(help="Also write every activation to disk in shards (float16).")] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/capture"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Stream FFN activations over a corpus: per-unit statistics and top-k examples, with bounded memory."""
    claim(out_dir, force=force, whole=True)
    if shards:
        claim(out_dir.with_name(out_dir.name + "-shards"), force=force)
    wb = _load(model, device)
    names = cap.hook_names(wb, kind, parse_layers(layers, wb.n_layers))  # checked before the corpus is read
    tokens = _corpus_tokens(wb, text, window, max_tokens)
    if k > tokens.numel():
        raise BadInput(f"--k {k} is larger than the corpus ({tokens.numel()} tokens)")
    corpus = [str(t) for t in text] if text else "stdlib-docstrings"
    capture_job.write(capture_job.compute(wb, tokens, names, k, batch_size=batch_size, corpus=corpus), out_dir)
    if shards:
        cap.write_shards(wb, tokens, names, out_dir.with_name(out_dir.name + "-shards"), batch_size=batch_size)
    out.print(f"captured {len(names)} hooks over {tokens.numel():,} tokens → {out_dir}")
