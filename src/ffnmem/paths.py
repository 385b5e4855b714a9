"""Where ffnmem keeps converted weights and other cached files, and atomic file writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from ffnmem.errors import CacheNotWritable


def cache_dir() -> Path:
    """The cache folder: ``$FFNMEM_CACHE`` if set, else the user's cache dir; created and checked."""
    root = Path(os.environ.get("FFNMEM_CACHE") or platformdirs.user_cache_dir("ffnmem"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CacheNotWritable(
            f"cache folder {root} is not writable ({exc.strerror or exc}); "
            "set FFNMEM_CACHE to a writable folder"
        ) from None
    return root


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, memoised in the cache by (path, size, mtime) so big files hash once."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = None
    with contextlib.suppress(CacheNotWritable):
        memo = cache_dir() / "hashes" / f"{key}.txt"
        if memo.exists():
            return memo.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo, digest)
    return digest


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to ``path`` via a temp file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename.

    An interrupted write leaves only a hidden temp folder (removed here when possible) and any
    earlier ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
