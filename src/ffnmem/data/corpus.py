"""Text into token windows: the stream that capture and key mining read."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench


def windows(wb: Workbench, texts: Iterable[str], *, window: int = 128, max_windows: int | None = None,
            prepend_bos: bool = True) -> Int[Tensor, "n window"]:
    """Tokenise documents into one stream (EOS between documents) cut into windows of ``window``.

    Each window starts with BOS (when ``prepend_bos`` and the tokenizer has one) followed by the
    next ``window - 1`` stream tokens, so every window is a valid prompt. The last partial window
    is dropped.
    """
    if window < 2:
        raise BadInput(f"window must be at least 2 tokens, got {window}")
    wb.check_length(window, what=f"a window of {window}")
    bos = wb.tokenizer.bos_token_id if prepend_bos else None
    sep = wb.tokenizer.eos_token_id
    body = window - (1 if bos is not None else 0)
    rows: list[list[int]] = []
    buf: list[int] = []
    for text in texts:
        if not text or not text.strip():
            continue
        buf.extend(wb.tokenizer(text, add_special_tokens=False)["input_ids"])
        if sep is not None:
            buf.append(sep)
        while len(buf) >= body:
            rows.append(([bos] if bos is not None else []) + buf[:body])
            buf = buf[body:]
            if max_windows is not None and len(rows) >= max_windows:
                return torch.tensor(rows, dtype=torch.long)
    if not rows:
        raise BadInput(f"the text gives no window of {window} tokens: give more text or a shorter --window")
    return torch.tensor(rows, dtype=torch.long)


def read_texts(paths: Iterable[str | Path], *, field: str = "text") -> list[str]:
    """Documents from local files: ``.txt`` (one document per file), ``.jsonl`` and ``.parquet``
    (the ``field`` column), or a folder written by Hugging Face ``datasets.save_to_disk``."""
    docs: list[str] = []
    for p in map(Path, paths):
        if not p.exists():
            raise BadInput(f"corpus file {p} does not exist")
        docs.extend(_read_one(p, field))
    docs = [d for d in docs if d and d.strip()]
    if not docs:
        raise BadInput("the corpus is empty: the files hold no text")
    return docs


def _read_one(p: Path, field: str) -> list[str]:
    if p.is_dir() or p.suffix == ".parquet":
        return _read_arrow(p, field)
    if p.suffix == ".jsonl":
        out = []
        for n, line in enumerate(read_utf8_lines(p), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line)[field])
            except (ValueError, KeyError, TypeError):
                raise BadInput(f"{p}:{n}: expected a JSON object with a {field!r} string") from None
        return out
    try:
        return [p.read_text(encoding="utf-8")]
    except UnicodeDecodeError:
        raise BadInput(f"{p} is not UTF-8 text; give .txt, .jsonl or .parquet files") from None


def read_utf8_lines(p: Path) -> list[str]:
    """The lines of a UTF-8 text file; one that is not UTF-8 is one error naming the file and line."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadInput(f"{p}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None


def _read_arrow(p: Path, field: str) -> list[str]:
    """A Parquet file or a saved Hugging Face dataset; a damaged one is one error line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if p.is_dir() and not (p / "dataset_info.json").exists() and not (p / "state.json").exists():
        raise BadInput(f"{p} is a folder but not a saved Hugging Face dataset")
    try:
        if not p.is_dir():
            return _column(pq.read_table(p), field, p)
        return [t for f in sorted(p.glob("*.arrow")) for t in _column(pa.ipc.open_stream(f).read_all(), field, f)]
    except pa.ArrowException as exc:
        raise BadInput(f"{p} cannot be read as {'a saved dataset' if p.is_dir() else 'Parquet'}: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _column(table, field: str, source: Path) -> list[str]:
    if field not in table.column_names:
        raise BadInput(f"{source} has no {field!r} column (columns: {', '.join(table.column_names)})")
    return [str(x) for x in table.column(field).to_pylist() if x]


# Standard-library modules whose docstrings make the default corpus: English prose that exists on
# every machine with Python, with no download. Fixed list and order, so the corpus is reproducible.
_STDLIB_MODULES = (
    "argparse", "ast", "asyncio.base_events", "asyncio.events", "asyncio.tasks", "bisect", "calendar",
    "collections", "concurrent.futures._base", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "ftplib", "functools",
    "gettext", "glob", "gzip", "heapq", "hmac", "html.parser", "http.client", "http.cookiejar",
    "http.server", "imaplib", "inspect", "ipaddress", "json.decoder", "json.encoder", "logging",
    "logging.handlers", "mailbox", "mimetypes", "multiprocessing.pool", "numbers", "optparse",
    "os", "pathlib", "pdb", "pickle", "pickletools", "platform", "plistlib", "poplib", "pprint",
    "queue", "random", "re", "sched", "selectors", "shlex", "shutil", "smtplib", "socket",
    "socketserver", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "turtle", "typing", "unittest.case",
    "unittest.mock", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref", "wave",
    "xml.dom.minidom", "xml.etree.ElementTree", "zipfile", "zoneinfo._zoneinfo",
)


def default_corpus(*, min_chars: int = 200) -> list[str]:
    """Prose harvested from docstrings of the installed standard library, deduplicated.

    Each docstring of at least ``min_chars`` characters is one document. Deterministic for a given
    Python version (the version is part of the corpus hash recorded in provenance).
    """
    import ast
    import importlib.util

    seen: set[str] = set()
    docs: list[str] = []
    for name in _STDLIB_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= min_chars and doc not in seen:
                    seen.add(doc)
                    docs.append(doc)
    return docs
