"""Executors of a batch's units: this process (``local``) or Ray tasks (``ray``), with one failure rule.

The rule, the same for both: any exception while a unit runs or is saved — an
:class:`~ffnmem.core.errors.FfnmemError`, but also an unexpected ``RuntimeError`` or ``MemoryError`` —
is recorded as that unit's one-line error in the catalogue and the batch goes on;
``KeyboardInterrupt`` (not an ``Exception``) stops everything. ``run_batch`` then exits non-zero
with a one-line summary when any unit failed. The traceback goes to the debug log only.

Ray: workers keep loaded models in a per-process cache (:func:`ffnmem.batch.runner.get_model`), so a model
loads once per worker. Results travel back to the driver, which writes them: the run folder needs no
shared filesystem and the catalogue has a single writer. Tasks are not retried (``max_retries=0``):
a worker that dies mid-unit is reported as that unit's failure, and a rerun redoes it.
"""

from __future__ import annotations

import logging
import socket

from tqdm.auto import tqdm

from ffnmem.batch.registry import ANALYSES
from ffnmem.core.errors import BadInput, FfnmemError, MissingPackage

log = logging.getLogger(__name__)


def failure_line(exc: BaseException) -> str:
    """A unit's error as one line: an FfnmemError's own message, else the type and first line."""
    if isinstance(exc, FfnmemError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _attempt(unit, compute, save, fail) -> None:
    try:
        save(unit, compute())
    except Exception as exc:  # noqa: BLE001 - the failure rule: record it, go on (Ctrl-C is no Exception)
        log.debug("unit %s failed", unit.unit_id, exc_info=True)
        fail(unit, failure_line(exc))


class LocalExecutor:
    """Run the units one after the other in this process."""

    def __call__(self, todo, run, save, fail, *, desc: str = "units", progress: bool = True) -> None:
        for unit in tqdm(todo, desc=desc, unit="unit", disable=not progress):
            _attempt(unit, lambda u=unit: run(u), save, fail)


def _remote_unit(run, unit, analysis):
    ANALYSES.setdefault(analysis.name, analysis)  # entries registered at run time by the driver
    return run(unit)


def _check_reachable(address: str | None) -> None:
    """Fail in seconds, with one line, on an address nothing listens at (Ray itself retries for minutes)."""
    if address in (None, "", "auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    if ":" not in hostport:  # Ray's default ports: client server 10001, GCS 6379
        hostport += ":10001" if address.startswith("ray://") else ":6379"
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise BadInput(f"cannot reach a Ray cluster at {address} ({exc.strerror or type(exc).__name__}); "
                       "check --address, or leave it out to start a local Ray") from None


def _init_ray(ray, address: str | None) -> None:
    if ray.is_initialized():
        return
    _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RuntimeError...
        raise BadInput(f"cannot start or join Ray at {address or 'a local instance'}: {failure_line(exc)}") from None


class RayExecutor:
    """Run the units as Ray tasks, connecting to ``address`` (or starting/joining a local instance)."""

    def __init__(self, address: str | None = None):
        self.address = address

    def __call__(self, todo, run, save, fail, *, desc: str = "units", progress: bool = True) -> None:
        try:
            import ray  # optional and slow to import: only when Ray runs the batch
        except ImportError:
            raise MissingPackage("the Ray executor needs ray: pip install 'ray>=2'") from None
        _init_ray(ray, self.address)
        task = ray.remote(max_retries=0)(_remote_unit)
        pending = {task.remote(run, u, ANALYSES[u.analysis]): u for u in todo}
        bar = tqdm(total=len(pending), desc=f"{desc} (ray)", unit="unit", disable=not progress)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            unit = pending.pop(ref)
            _attempt(unit, lambda r=ref: _result(ray, r), save, fail)
            bar.update(1)
        bar.close()


def executor_for(name: str, address: str | None = None):
    """The executor called ``name`` (local or ray)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise BadInput(f"unknown executor {name!r}; choose from local, ray")


def _result(ray, ref):
    """The unit's Result; a task's exception re-raised as itself, a dead worker as one clear error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, Exception) else RuntimeError(failure_line(exc))) from None
    except ray.exceptions.RayError as exc:  # worker died, node lost, object lost
        raise FfnmemError(f"the Ray worker died mid-unit ({type(exc).__name__})") from None
