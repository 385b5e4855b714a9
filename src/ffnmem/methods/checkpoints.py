"""Training checkpoints: write and read them atomically, without pickle.

``run/checkpoints/step-NNNNNN/{model/, optimizer.safetensors, state.json}``: ``model/`` is an ffnmem
checkpoint (weights, config, word-level tokenizer), ``optimizer.safetensors`` the AdamW moments and
``state.json`` the step, optimizer hyperparameters, scheduler, logged curves and the run's fingerprint
(its training and corpus settings), so a run resumes only with the settings it was started with.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ffnmem.core.errors import BadInput, CorruptWeights
from ffnmem.core.models import load_checkpoint, save_checkpoint
from ffnmem.core.outputs import atomic_dir
from ffnmem.core.paths import atomic_write_json
from ffnmem.core.workbench import Workbench
from ffnmem.data.synthetic import FactCorpus

STATE_FILE, OPTIMIZER_FILE, STATE_FORMAT = "state.json", "optimizer.safetensors", "ffnmem-train-state-v1"
_MOMENT = re.compile(r"^state\.(\d+)\.([A-Za-z_]+)$")


def save_state(run_dir: Path, wb, opt, sched, step, losses, evals, corpus, cfg, objective=None) -> Path:
    from safetensors.torch import save_file


    target = run_dir / "checkpoints" / f"step-{step:06d}"
    sd = opt.state_dict()
    moments = {f"state.{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items() for k, v in st.items()}
    with atomic_dir(target) as tmp:
        save_checkpoint(wb, tmp / "model", extra={"step": step})
        save_file(moments, str(tmp / OPTIMIZER_FILE))
        atomic_write_json(tmp / STATE_FILE, {
            "format": STATE_FORMAT, "step": step, "losses": losses, "evals": evals,
            "param_groups": sd["param_groups"], "scheduler": sched.state_dict(),
            "fingerprint": fingerprint(corpus, cfg, objective)})
    atomic_write_json(run_dir / "curves.json", {"losses": losses, "evals": evals})
    return target


def load_optimizer(opt, sched, state: dict) -> None:
    """Restore AdamW and the scheduler from a checkpoint's JSON and safetensors (no pickle)."""
    from safetensors.torch import load_file

    where = state["dir"]
    try:
        tensors = load_file(str(where / OPTIMIZER_FILE))
        moments: dict[int, dict] = {}
        for key, value in tensors.items():
            m = _MOMENT.match(key)
            if m is None:
                raise ValueError(f"unexpected tensor {key!r}")
            moments.setdefault(int(m.group(1)), {})[m.group(2)] = value
        groups = [{**g, "betas": tuple(g["betas"])} for g in state["param_groups"]]  # JSON made it a list
        opt.load_state_dict({"state": moments, "param_groups": groups})
        sched.load_state_dict(state["scheduler"])
    except Exception as exc:  # noqa: BLE001 - truncated file, wrong shapes, missing keys
        raise CorruptWeights(f"cannot resume from {where}: {type(exc).__name__}: {str(exc)[:200]}; "
                             "delete that checkpoint folder") from None


def fingerprint(corpus: FactCorpus, cfg, objective=None) -> dict:
    extra = {} if objective is None else {"objective": objective.to_dict()}
    # through JSON, as saved: tuples become lists, so a fresh fingerprint compares equal
    return json.loads(json.dumps({"train": dataclasses.asdict(cfg), "facts": corpus.config.to_dict(), **extra}))


def checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders of interrupted writes skipped)."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists()) if root.is_dir() else []


def _refuse_pickled(run_dir: Path, found: list[Path]) -> None:
    """An old-format checkpoint (``state.pt``, a pickle) newer than any readable one: refuse it."""
    root = run_dir / "checkpoints"
    old = sorted(p for p in root.glob("step-*") if (p / "state.pt").exists() and not (p / STATE_FILE).exists())
    if old and (not found or old[-1].name > found[-1].name):
        raise BadInput(f"{old[-1]} holds a pickled state.pt, which ffnmem never loads (unpickling can run code); "
                       f"delete {root} to train from scratch, or use a new --out folder")


def latest_state(run_dir: Path, corpus: FactCorpus, cfg, objective=None) -> dict | None:
    found = checkpoints(run_dir)
    _refuse_pickled(run_dir, found)
    if not found:
        return None
    try:
        state = json.loads((found[-1] / STATE_FILE).read_text())
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"format {state.get('format')!r}")
    except (OSError, ValueError, AttributeError) as exc:
        raise CorruptWeights(f"cannot read {found[-1]}/{STATE_FILE} ({type(exc).__name__}); "
                             "delete that checkpoint folder") from None
    if state.get("fingerprint") != fingerprint(corpus, cfg, objective):
        raise BadInput(f"{run_dir} holds checkpoints of another config; use a new --out folder or the same settings")
    state["model_dir"], state["dir"] = found[-1] / "model", found[-1]
    return state


def load_run(run_dir: str | Path, *, device: str = "auto") -> tuple[Workbench, dict]:
    """The latest checkpoint's model and the run's logged curves."""

    found = checkpoints(run_dir)
    if not found:
        raise BadInput(f"{run_dir} holds no finished checkpoint; run `ffnmem train --out {run_dir}` first")
    curves = json.loads((Path(run_dir) / "curves.json").read_text()) if (Path(run_dir) / "curves.json").exists() else {}
    return load_checkpoint(found[-1] / "model", device=device), curves
