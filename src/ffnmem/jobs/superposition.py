"""Toy models of superposition (Elhage et al. 2022): the job behind ``ffnmem toy-superposition`` and
the batch analysis ``toy_superposition``.

:func:`compute` trains one instance per sparsity (importance ``decay**i``) and, when
``phase_grid > 0``, the n=2, m=1 phase diagram; it returns a ``toy_superposition`` Result with the
``sweep`` table (features represented, dimensions per feature, held-out loss per sparsity), the
``phase`` table and the weights. :func:`write` adds WᵀW, dimensionality and phase pictures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from ffnmem.core.errors import BadInput
from ffnmem.jobs.params import Params
from ffnmem.methods import superposition as sp
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_dimensionality, plot_phase, plot_wtw, save_figure

KIND = "toy_superposition"


class ToyParams(Params):
    n_features: int = Field(20, ge=2)
    n_hidden: int = Field(5, ge=1)
    sparsities: list[float] = [0.0, 0.5, 0.7, 0.9, 0.97, 0.99, 0.999]
    decay: float = Field(0.7, gt=0, le=1)
    steps: int = Field(3000, ge=1)
    phase_grid: int = Field(7, ge=0)  # 0: no phase diagram
    phase_steps: int = Field(1500, ge=1)


def compute(p: ToyParams, seed: int = 0) -> Result:
    """Train the sweep (and the phase diagram); see the module docstring."""
    if p.n_hidden >= p.n_features:
        raise BadInput(f"need n_hidden < n_features for superposition, got {p.n_hidden} >= {p.n_features}")
    models = sp.sparsity_sweep(p.sparsities, n_features=p.n_features, n_hidden=p.n_hidden, decay=p.decay,
                               steps=p.steps, seed=seed)
    sweep = [{"sparsity": s, "n_hidden": p.n_hidden, "n_features": p.n_features, "represented": int(r),
              "dims_per_feature": float(d), "loss": float(l)}
             for s, r, d, l in zip(p.sparsities, models.metrics["represented"], models.metrics["dims_per_feature"],
                                   sp.eval_loss(models))]
    tables, tensors = {"sweep": table_from_rows(sweep)}, {"W": models.W, "b": models.b}
    if p.phase_grid > 1:
        grid = np.concatenate([[0.0], 1 - np.logspace(-0.3, -3, p.phase_grid - 1)])
        diagram = sp.phase_diagram(grid, np.logspace(-1, 1, p.phase_grid), steps=p.phase_steps, seed=seed)
        tables["phase"] = table_from_rows(sp.summarize_phase(diagram))
        tensors.update({f"phase/{k}": v for k, v in diagram.items()})
    return Result(kind=KIND, tables=tables, tensors=tensors, meta={"params": p.model_dump()},
                  provenance=make_provenance(None, seed=seed, params=p.model_dump()))


def models_of(result: Result) -> sp.ToyModels:
    """The trained sweep stored in a ``toy_superposition`` Result."""
    p = ToyParams(**result.meta["params"])
    cfg = sp.ToyConfig(n_features=p.n_features, n_hidden=p.n_hidden, sparsity=tuple(p.sparsities), decay=p.decay,
                       steps=p.steps, seed=result.provenance.get("seed") or 0)
    W, b = result.tensors["W"], result.tensors["b"]
    return sp.ToyModels(cfg, W, b, sp.eval_loss(sp.ToyModels(cfg, W, b, W.new_zeros(len(W)))), sp.metrics(W))


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` with ``wtw.png``, ``dimensionality.png`` and (if computed) ``phase.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = models_of(result)
    save_figure(plot_wtw(models), out / "wtw.png")
    save_figure(plot_dimensionality(models), out / "dimensionality.png")
    phase = {k.split("/", 1)[1]: v for k, v in result.tensors.items() if k.startswith("phase/")}
    if phase:
        save_figure(plot_phase(phase), out / "phase.png")
    return result.save(out / "result")
