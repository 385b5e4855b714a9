"""Where ffnmem keeps converted weights and other cached files, and atomic file writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from ffnmem.core.errors import CacheNotWritable

log = logging.getLogger(__name__)


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
    """Write text to ``path`` via a temp file in the same folder and a rename (mode from the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask())  # mkstemp makes 0600; a result should read like any file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_modes(root: Path) -> None:
    """Give ``root`` and everything under it the modes of ordinary files and folders (0666/0777 less the umask)."""
    mask = umask()
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o666 & ~mask)


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
    from ffnmem.core.outputs import MARKER, WHOLE_TEXT, check

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
