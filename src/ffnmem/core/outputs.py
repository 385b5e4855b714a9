"""The output policy: which paths ffnmem may write or replace, and the lock every writer holds.

One rule for every command that writes: ffnmem never deletes what it did not write.

- A path that is a regular file is refused as an output folder (``--force`` does not change that).
- A non-empty folder is written into (or, for a result, replaced) only if ffnmem wrote it; else the
  command refuses before any work, unless ``--force`` is given (which adopts the folder).
- "Written by ffnmem" means: the folder holds the marker file ``.ffnmem`` (written into every
  folder ffnmem creates), or it is a result, run, checkpoint, corpus or shard folder of an older
  ffnmem (recognised by its header file), or it directly holds such a result (older output folders).
- Every writer holds an exclusive ``fcntl.flock`` on ``PARENT/.NAME.lock`` for as long as it
  writes (CLI commands: for the life of the process). The kernel drops the lock when the process
  dies, even by ``kill -9``, so a stale lock is never "taken over": there is nothing to race for.
  The file holds ``pid@host`` for the message only; it is never deleted (deleting a lock file
  while another process waits on it would let two processes hold "the" lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

from ffnmem.core.errors import BadInput

MARKER = ".ffnmem"
MARKER_TEXT = "This folder was written by ffnmem; ffnmem may replace the files and results it wrote here.\n"
WHOLE_TEXT = "This folder was written by ffnmem as a whole; ffnmem may replace it as a whole.\n"
# (file name, JSON keys it must hold, whether that folder is replaced whole) of the header files
# that older ffnmem versions left in their folders
_SIGNATURES = (("header.json", ("kind", "schema_version"), True), ("ffnmem-model.json", ("kind", "config"), True),
               ("source.json", ("gguf_sha256",), True), ("config.json", ("config", "entities"), True),
               ("run.json", ("catalog_schema",), False), ("index.json", ("hooks", "shards"), False),
               ("curves.json", ("losses",), False))
_HELD: dict[str, list] = {}  # lock path -> [fd, count]: re-entrant within one process


class OutputLocked(BadInput):
    """Another live process is writing this output."""


def written_by_ffnmem(folder: Path, *, whole: bool = False) -> bool:
    """Whether ``folder`` carries the marker or the header of something ffnmem writes.

    ``whole``: only folders ffnmem writes as a whole (results, checkpoints, corpora), which it may
    replace as a whole; an output folder ffnmem writes into may also hold a user's files.
    """
    folder = Path(folder)
    with contextlib.suppress(OSError):
        if (folder / MARKER).read_text() == WHOLE_TEXT or not whole:  # read first: raises if there is none
            return True
    if (folder / "state.pt").is_file() and (folder / "model").is_dir():  # a training checkpoint
        return True
    if not whole and (folder / "checkpoints").is_dir() and (folder / "curves.json").is_file():  # a training run
        return True
    for name, keys, replaced_whole in _SIGNATURES:
        with contextlib.suppress(OSError, ValueError):
            head = json.loads((folder / name).read_text())
            if isinstance(head, dict) and all(k in head for k in keys) and (replaced_whole or not whole):
                return True
    return False


def _ffnmem_folder(folder: Path) -> bool:
    """Written by ffnmem, or an older ffnmem output folder (it directly holds an ffnmem result)."""
    if written_by_ffnmem(folder):
        return True
    with contextlib.suppress(OSError):
        return any(p.is_dir() and written_by_ffnmem(p) for p in folder.iterdir())
    return False


def ffnmem_card(path: Path) -> bool:
    """Whether ``path`` is an HTML neuron card written by ffnmem."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        head = f.read(4096)
        return head.startswith(b"<!doctype html><meta charset=utf-8>") and b"<div class=ffnmem-card>" in head
    return False


def check(path: str | Path, *, force: bool = False, whole: bool = False) -> Path:
    """Raise a one-line :class:`BadInput` unless ffnmem may write the folder ``path``.

    ``whole``: the folder is replaced as a whole (a result, a corpus), not written into.
    """
    from ffnmem.core.paths import recover

    path = Path(path)
    recover(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{path} is a file, not a folder; ffnmem will not replace it: choose another --out")
    if force or not path.is_dir() or (written_by_ffnmem(path, whole=True) if whole else _ffnmem_folder(path)):
        return path
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return path
    if whole and _ffnmem_folder(path):
        raise BadInput(f"{path} is an ffnmem output folder, which may hold files of yours, not a result that "
                       "ffnmem replaces as a whole; choose another --out")
    what = "replace it (deleting what it holds)" if whole else "write into it"
    n = f"{len(entries)} entries, e.g." if len(entries) > 1 else "1 entry,"
    raise BadInput(f"{path} is a folder ffnmem did not write (it holds {n} {entries[0]!r}); "
                   f"choose another --out, or pass --force to {what}")


def check_file(path: str | Path, *, force: bool = False) -> Path:
    """Raise a one-line :class:`BadInput` unless ffnmem may write the HTML file ``path``."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path} is a folder; give a file name ending in .html")
    if path.exists() and not force and not ffnmem_card(path):
        raise BadInput(f"{path} exists and is not a neuron card written by ffnmem; choose another --out, "
                       "or pass --force to replace it")
    return path


def claim(path: str | Path, *, force: bool = False, whole: bool = False, file: bool = False) -> Lock:
    """Check ``path`` against the policy, lock it and (for a folder written into) mark it as ffnmem's.

    Call it before any work. The lock is held until :meth:`Lock.release`, the end of a ``with``
    block or the end of the CLI command that called it (a command just calls ``claim(...)``).
    ``file``: ``path`` is one file (a neuron card), not a folder.
    """
    path = Path(path)
    checked = check_file if file else check
    kw = {} if file else {"whole": whole}
    checked(path, force=force, **kw)  # refuse early, before leaving a lock file
    lock = Lock(path)
    try:
        checked(path, force=force, **kw)  # again under the lock: no half-finished swap of another writer
        if file:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif whole and force and path.is_dir() and any(path.iterdir()):
            mark(path, WHOLE_TEXT)  # --force adopts the folder, so the atomic save accepts to replace it
        elif not whole:
            if not path.exists():  # a command that fails before writing anything leaves no folder
                lock.on_release = lambda: _remove_if_unused(path)
            path.mkdir(parents=True, exist_ok=True)
            mark(path)
    except OSError as exc:
        lock.release()
        raise BadInput(f"cannot write to {path}: {exc.strerror or exc}") from None
    except BaseException:
        lock.release()
        raise
    _release_with_command(lock)
    return lock


def _release_with_command(lock: Lock) -> None:
    """Inside a CLI command, release when the command ends (several commands may run in one process);
    elsewhere the lock is held until released or the process ends."""
    import importlib

    for name in ("typer._click.globals", "click.globals"):  # Typer >= 0.20 runs on its own copy of click
        with contextlib.suppress(ImportError):
            ctx = importlib.import_module(name).get_current_context(silent=True)
            if ctx is not None:
                ctx.call_on_close(lock.release)
                return


def _remove_if_unused(folder: Path) -> None:
    with contextlib.suppress(OSError):
        if [p.name for p in folder.iterdir()] == [MARKER]:
            (folder / MARKER).unlink()
            folder.rmdir()


def mark(folder: Path, text: str = MARKER_TEXT) -> None:
    """Write the marker that says ffnmem wrote ``folder`` (``WHOLE_TEXT``: as a whole)."""
    from ffnmem.core.paths import atomic_write_text

    if text == WHOLE_TEXT or not (folder / MARKER).is_file():
        atomic_write_text(folder / MARKER, text)


def lock_path(path: str | Path) -> Path:
    path = Path(path).resolve()
    return path.parent / f".{path.name}.lock"


class Lock:
    """An exclusive, re-entrant (within this process) ``flock`` on ``PARENT/.NAME.lock``."""

    def __init__(self, path: str | Path):
        self.path = lock_path(path)
        self.key = str(self.path)
        self.held = False
        self.on_release = None  # run once, still under the lock, when this holder lets go
        if self.key in _HELD:
            _HELD[self.key][1] += 1
        else:
            _HELD[self.key] = [_acquire(self.path, Path(path)), 1]
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self.on_release is not None:
            self.on_release()
        entry = _HELD[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.key]
            with contextlib.suppress(OSError):
                os.ftruncate(entry[0], 0)
            os.close(entry[0])  # closing the last descriptor drops the flock

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _acquire(lock: Path, target: Path) -> int:
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise BadInput(f"cannot write to {target}: {exc.strerror or exc} ({lock})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise OutputLocked(f"{target} is being written by process {holder} (lock {lock}); "
                           "wait for it to finish or use another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
    return fd
