"""The output lock: one writer at a time, no stale-lock race, released by the kernel on kill -9."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffnmem.core.outputs import Lock, OutputLocked, claim

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def _contend(path: str, log: str, barrier, result) -> None:
    barrier.wait()
    try:
        lock = Lock(path)
    except OutputLocked:
        result.put("refused")
        return
    except BaseException as exc:  # noqa: BLE001 - a crash is what the test looks for
        result.put(f"crash {type(exc).__name__}: {exc}")
        return
    with open(log, "a") as f:  # the critical section: enter, linger, leave
        f.write(f"in {os.getpid()}\n")
        f.flush()
        time.sleep(0.02)
        f.write(f"out {os.getpid()}\n")
    lock.release()
    result.put("held")


def test_four_racing_processes_never_hold_the_lock_together(tmp_path):
    ctx = mp.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for trial in range(20):
        path, log = tmp_path / f"out{trial}", tmp_path / f"log{trial}"
        # what a kill -9 of the old check-then-unlink lock left: a lock file naming a dead process
        (tmp_path / f".out{trial}.lock").write_text(f"{dead.pid}@{socket.gethostname()}")
        barrier, result = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_contend, args=(str(path), str(log), barrier, result)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        outcomes = sorted(result.get(timeout=5) for _ in procs)
        assert all(o in ("held", "refused") for o in outcomes), outcomes
        assert all(p.exitcode == 0 for p in procs)
        lines = log.read_text().split()[::2] if log.exists() else []
        assert lines == ["in", "out"] * (len(lines) // 2), f"trial {trial}: two holders at once"
        assert outcomes.count("held") >= 1


HOLDER = """
import sys, time
from ffnmem.core.outputs import Lock
Lock(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""


def test_kill_9_releases_the_lock(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=rf"being written by process {holder.pid}@{socket.gethostname()}"):
            Lock(out)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        with Lock(out):  # the kernel dropped the dead holder's flock: nothing stale to take over
            with Lock(out):  # re-entrant within one process
                pass
            assert (tmp_path / ".out.lock").read_text().startswith(f"{os.getpid()}@")
    finally:
        holder.kill()


def test_a_second_capture_into_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "cap"
    with claim(out, whole=True):
        res = subprocess.run([sys.executable, "-m", "ffnmem", "capture", "-m", "tiny-2l", "--device", "cpu",
                              "--max-tokens", "64", "--window", "32", "-o", str(out)],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"cap is being written by process {os.getpid()}@" in res.stderr
    assert not out.exists()
