"""The ``ffnmem`` Typer app, shared options and the entry point. Commands live in sibling modules,
one per part of the workbench; every command loads models offline and errors print one line."""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ffnmem.cli.boundary import INTERRUPTED, run
from ffnmem.core import models
from ffnmem.core.errors import BadInput
from ffnmem.data.corpus import default_corpus, read_texts, windows

app = typer.Typer(
    help="ffnmem: read the feed-forward layers of causal transformers as key-value memories.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
# Markup off: messages, paths, model specs and table cells hold user text such as "[data]" or "[/x]",
# which Rich would strip or fail on; emphasis uses style= instead.
console = Console(stderr=True, markup=False)
out = Console(markup=False)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: smollm2-135m, tiny-2l, a GGUF file, "
                                       "a Hugging Face folder or an ffnmem checkpoint. See `ffnmem models`.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, or auto (CUDA when present).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into (or replace) an existing non-empty folder "
                                         "that ffnmem did not write.")]
TextOpt = Annotated[list[Path] | None, typer.Option(help="Corpus files (.txt, .jsonl, .parquet, saved HF dataset); "
                                                    "default: the built-in stdlib-docstring corpus.")]


SEED_MAX = 2**32 - 1  # numpy's and torch's seeders both accept 0..2**32-1


def check_range(option: str, value: float | None, lo: float | int, hi: float | int, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """A float option inside [lo, hi] (ends open where asked), finite, else one usage line.

    typer's ``min=``/``max=`` cannot express open ends and lets NaN through (NaN < lo is false).
    """
    if value is None:
        return
    inside = math.isfinite(value) and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
    if not inside:
        ends = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise BadInput(f"{option} {value:g} is outside {ends}; give a finite number in that range")


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all``, ``5``, ``0-3,10`` or ``-1`` (from the top) into sorted layer indices.

    Every index is checked against the model before a range is built, so a typo such as
    ``0-99999999999`` is one error line rather than a huge set.
    """
    if spec.strip() == "all":
        return list(range(n_layers))
    layers: set[int] = set()
    for part in spec.split(","):
        m = _LAYER_PART.fullmatch(part.strip())
        if m is None:
            raise BadInput(f"cannot read layers {spec!r}: use 'all', '5', '0-3,10' or '-1'")
        lo = _layer_index(int(m[1]), n_layers)
        hi = lo if m[2] is None else _layer_index(int(m[2]), n_layers)
        if hi < lo:
            raise BadInput(f"layer range {part.strip()!r} is empty: write the lower layer first, e.g. '0-3'")
        layers.update(range(lo, hi + 1))
    return sorted(layers)


_LAYER_PART = re.compile(r"(-?\d+)(?:-(-?\d+))?")


def _layer_index(i: int, n_layers: int) -> int:
    """``i`` as a layer index; negative indices count from the top and must lie in -n_layers..-1."""
    if not -n_layers <= i < n_layers:
        raise BadInput(f"layer {i} is out of range: the model has layers 0..{n_layers - 1} "
                       f"(or -{n_layers}..-1 from the top)")
    return i % n_layers


def _load(model: str, device: str):

    with console.status(Text(f"loading {model} …")):  # Text: the spec is not markup
        return models.load_model(model, device=device)  # looked up at call time (tests patch it)


def _corpus_tokens(wb, text, window: int, max_tokens: int | None):

    if window > wb.n_ctx:
        raise BadInput(f"--window {window} is longer than the context of {wb.model_id} ({wb.n_ctx} tokens)")
    docs = read_texts(text) if text else default_corpus()
    max_windows = None if max_tokens is None else max(1, max_tokens // window)
    return windows(wb, docs, window=window, max_windows=max_windows)


def main() -> None:
    """Entry point: run the app behind the error boundary (one line per failure, see ``boundary``)."""
    logging.basicConfig(level=os.environ.get("FFNMEM_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    run(lambda: app(standalone_mode=False), console)


def console_main() -> None:
    """The ``ffnmem`` command: :func:`main`, ending the process itself after Ctrl-C.

    After the one ``interrupted`` line, exit 130 at once: a KeyboardInterrupt raised while the
    interpreter shuts down (threads, finalizers) would otherwise end the process by SIGINT, a
    different exit status, with the line already printed.
    """
    try:
        main()
    except SystemExit as exc:
        if exc.code != INTERRUPTED:
            raise
        _exit_interrupted()
    except KeyboardInterrupt:  # after the boundary has printed its line
        _exit_interrupted()


def _exit_interrupted() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(INTERRUPTED)


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
