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
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ffnmem.core.errors import BadInput
from ffnmem.core.paths import atomic_write_text, normal_modes

log = logging.getLogger(__name__)

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


# --- replacing a result as a whole ------------------------------------------------------------

@contextlib.contextmanager
def atomic_dir(path: Path, *, owned: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; when the block ends it replaces ``path`` as a whole.

    ``path`` may be missing, an empty folder or a folder ffnmem wrote (see :mod:`ffnmem.core.outputs`);
    anything else is refused before the block runs, so nothing a user made is ever deleted. An
    exception in the block leaves the old ``path`` as it was. The new folder is swapped in with one
    ``renameat2(RENAME_EXCHANGE)`` where the kernel and file system offer it, so ``path`` is always
    complete; elsewhere the old folder is renamed to ``.NAME.old-PID`` and the new one renamed in,
    and a kill between those two renames leaves only the backup, which the next write, check or
    :meth:`Result.load` of ``path`` renames back. ``owned``: ``path`` lies in ffnmem's own cache,
    replace whatever is there (a damaged earlier copy).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check(path, force=owned, whole=True)  # also recovers a backup and removes leftovers of killed writers
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{os.getpid()}.tmp"))
    try:
        yield tmp
        (tmp / MARKER).write_text(WHOLE_TEXT)
        normal_modes(tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, path: Path) -> None:
    if not os.path.lexists(path):
        os.rename(tmp, path)
    elif _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
    else:
        backup = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.rename(path, backup)
        os.rename(tmp, path)
        shutil.rmtree(backup, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    import ctypes
    import errno

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover(path: Path) -> None:
    """Undo what a killed :func:`atomic_dir` left beside ``path``: restore a backup if ``path`` is
    missing, and delete temp folders and backups of writers that are gone."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    tmp_re = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}\.(\d+)\.tmp")
    old_re = re.compile(rf"\.{re.escape(path.name)}\.old-(\d+)")
    leftovers = []
    for p in path.parent.iterdir():
        m = tmp_re.fullmatch(p.name) or old_re.fullmatch(p.name)
        if m and not _alive(int(m.group(1))):
            leftovers.append((m.re is old_re, p))
    for is_backup, p in sorted(leftovers, key=lambda t: not t[0]):
        if is_backup and not os.path.lexists(path):
            os.rename(p, path)
            log.warning("restored %s from %s, left by an interrupted write", path, p.name)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
