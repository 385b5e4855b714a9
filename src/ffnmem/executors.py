"""The Ray executor: each unit becomes a Ray task; the driver saves results into the run folder.

Workers keep loaded models in a per-process cache (:func:`ffnmem.batch.get_model`), so a model loads
once per worker. Results travel back to the driver, which writes them: the run folder needs no
shared filesystem and the catalogue has a single writer. Tasks are not retried (``max_retries=0``):
a worker that dies mid-unit is reported as that unit's failure, and a rerun redoes it.
"""

from __future__ import annotations

import logging

from ffnmem.errors import FfnmemError, MissingPackage

log = logging.getLogger(__name__)


def _remote_unit(batch, unit, analysis):
    from ffnmem import analyses, batch as B

    analyses.ANALYSES.setdefault(analysis.name, analysis)  # entries registered at run time by the driver
    return B.run_unit(batch, unit)


def run_ray(batch, todo, save, fail, progress: bool, *, address: str | None = None) -> None:
    """Run ``todo`` as Ray tasks (connecting to ``address``, or starting/joining a local instance)."""
    try:
        import ray
    except ImportError:
        raise MissingPackage("the Ray executor needs ray: pip install 'ray>=2'") from None
    from tqdm.auto import tqdm

    from ffnmem.analyses import ANALYSES

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(max_retries=0)(_remote_unit)
    pending = {task.remote(batch, u, ANALYSES[u.analysis]): u for u in todo}
    bar = tqdm(total=len(pending), desc=f"{batch.spec.name} (ray)", unit="unit", disable=not progress)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        unit = pending.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), FfnmemError) else None
            fail(unit, str(cause) if cause else f"{type(exc.cause).__name__}: {str(exc.cause).splitlines()[0]}")
        except ray.exceptions.RayError as exc:  # worker died, node lost, object lost
            fail(unit, f"the Ray worker died mid-unit ({type(exc).__name__})")
        else:
            save(unit, result)
        bar.update(1)
    bar.close()
