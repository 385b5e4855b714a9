"""The ``ffnmem`` Typer app, shared options and the entry point. Commands live in sibling modules,
one per part of the workbench; every command loads models offline and errors print one line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ffnmem.errors import BadInput, FfnmemError

app = typer.Typer(
    help="ffnmem: read the feed-forward layers of causal transformers as key-value memories.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: smollm2-135m, tiny-2l, a GGUF file, "
                                       "a Hugging Face folder or an ffnmem checkpoint. See `ffnmem models`.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, or auto (CUDA when present).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into (or replace) an existing non-empty folder "
                                         "that ffnmem did not write.")]
TextOpt = Annotated[list[Path] | None, typer.Option(help="Corpus files (.txt, .jsonl, .parquet, saved HF dataset); "
                                                    "default: the built-in stdlib-docstring corpus.")]


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all``, ``5``, ``0-3,10`` or ``-1`` (from the top) into sorted layer indices."""
    if spec == "all":
        return list(range(n_layers))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.strip().split("-", 1) if not part.strip().startswith("-") else (part, part)
                layers.update(range(int(lo), int(hi) + 1))
            else:
                layers.add(int(part) % n_layers if int(part) < 0 else int(part))
    except ValueError:
        raise BadInput(f"cannot read layers {spec!r}: use 'all', '5', '0-3,10' or '-1'") from None
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise BadInput(f"layer {bad[0]} is out of range: the model has layers 0..{n_layers - 1}")
    return sorted(layers)


def _load(model: str, device: str):
    from ffnmem.models import load_model

    with console.status(f"loading {model} …"):
        return load_model(model, device=device)


def _corpus_tokens(wb, text, window: int, max_tokens: int | None):
    from ffnmem.corpus import default_corpus, read_texts, windows

    if window > wb.n_ctx:
        raise BadInput(f"--window {window} is longer than the context of {wb.model_id} ({wb.n_ctx} tokens)")
    docs = read_texts(text) if text else default_corpus()
    max_windows = None if max_tokens is None else max(1, max_tokens // window)
    return windows(wb, docs, window=window, max_windows=max_windows)


def main() -> None:
    """Entry point: run the app; user errors become one line on stderr and a non-zero exit."""
    logging.basicConfig(level=os.environ.get("FFNMEM_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        app(standalone_mode=False)
    except FfnmemError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: results already written are intact")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore", module="transformer_lens")
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
