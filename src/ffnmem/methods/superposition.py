"""Toy models of superposition (Elhage et al. 2022), many instances trained at once.

Each instance ``k`` has ``n`` features and ``m < n`` hidden dimensions::

    h = W x,   x' = ReLU(Wᵀ h + b),   loss = Σ_k Σ_i I_{k,i} (x_i − x'_i)²

with importance ``I_{k,i}`` and sparsity ``S_k``: each ``x_i`` is 0 with probability ``S_k``,
else uniform on [0, 1]. All instances share one optimiser step: the batch dimension over
instances is the leading axis of every tensor (``W: [inst, m, n]``), so a sweep of hundreds of
instances trains in seconds on CPU.

Metrics (per instance, per feature): ``‖W_i‖`` (a feature counts as *represented* when > 0.5),
dimensionality ``D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²`` and dimensions per feature ``m / ‖W‖_F²``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.errors import BadInput


@dataclass(frozen=True, kw_only=True)
class ToyConfig:
    """One sweep: ``importance [inst, n]`` and ``sparsity [inst]`` set each instance's data."""

    n_features: int = 20
    n_hidden: int = 5
    sparsity: tuple[float, ...] = (0.0,)
    importance: tuple[tuple[float, ...], ...] | None = None  # per instance; None: r**i with decay
    decay: float = 0.7
    steps: int = 3000
    batch: int = 1024
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_hidden < 1 or self.n_features < 1:
            raise BadInput(f"toy model needs n_features, n_hidden >= 1, got {self.n_features}, {self.n_hidden}")
        if any(not 0.0 <= s < 1.0 for s in self.sparsity):
            raise BadInput(f"sparsity must lie in [0, 1), got {self.sparsity}")
        if self.importance is not None and len(self.importance) != len(self.sparsity):
            raise BadInput(f"{len(self.importance)} importance rows for {len(self.sparsity)} sparsities; give one each")
        if self.steps < 1 or self.batch < 1:
            raise BadInput("steps and batch must be >= 1")

    @property
    def n_instances(self) -> int:
        return len(self.sparsity)

    def importance_tensor(self) -> Float[Tensor, "inst n"]:
        if self.importance is not None:
            imp = torch.tensor(self.importance, dtype=torch.float32)
            if imp.shape != (self.n_instances, self.n_features):
                raise BadInput(f"importance has shape {tuple(imp.shape)}, need ({self.n_instances}, {self.n_features})")
            return imp
        row = self.decay ** torch.arange(self.n_features, dtype=torch.float32)
        return row.expand(self.n_instances, -1).clone()


@dataclass(frozen=True)
class ToyModels:
    """Trained instances: ``W [inst, m, n]``, ``b [inst, n]`` and the final per-instance loss."""

    config: ToyConfig
    W: Float[Tensor, "inst m n"]
    b: Float[Tensor, "inst n"]
    loss: Float[Tensor, " inst"]
    metrics: dict[str, Tensor] = field(default_factory=dict)


def sample_features(sparsity: Float[Tensor, " inst"], n: int, batch: int, gen: torch.Generator) -> Tensor:
    """``[batch, inst, n]``: zero w.p. ``S`` per instance, else U[0, 1]."""
    inst = sparsity.shape[0]
    x = torch.rand(batch, inst, n, generator=gen)
    keep = torch.rand(batch, inst, n, generator=gen) >= sparsity[None, :, None]
    return x * keep


def forward(W: Float[Tensor, "inst m n"], b: Float[Tensor, "inst n"], x: Float[Tensor, "batch inst n"]) -> Tensor:
    h = torch.einsum("imn,bin->bim", W, x)
    return torch.relu(torch.einsum("imn,bim->bin", W, h) + b)


def train(cfg: ToyConfig) -> ToyModels:
    """Train every instance of ``cfg`` jointly (Adam, one seeded generator). Deterministic."""
    threads = torch.get_num_threads()
    # ops of [batch, inst, 20] floats: a second thread only adds synchronisation, and on a shared
    # machine its spin-waits made a 10,000-step run over 10x slower
    torch.set_num_threads(1)
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: ToyConfig) -> ToyModels:
    gen = torch.Generator().manual_seed(cfg.seed)
    inst, n, m = cfg.n_instances, cfg.n_features, cfg.n_hidden
    W = (torch.randn(inst, m, n, generator=gen) * (2.0 / (m + n)) ** 0.5).requires_grad_()
    b = torch.zeros(inst, n, requires_grad=True)
    imp = cfg.importance_tensor()
    sp = torch.tensor(cfg.sparsity, dtype=torch.float32)
    opt = torch.optim.Adam([W, b], lr=cfg.lr)
    for _ in range(cfg.steps):
        x = sample_features(sp, n, cfg.batch, gen)
        per = (imp * (x - forward(W, b, x)) ** 2).mean(0).sum(-1)  # [inst]
        opt.zero_grad(set_to_none=True)
        per.sum().backward()
        opt.step()
    W, b = W.detach(), b.detach()
    return ToyModels(cfg, W, b, per.detach(), metrics(W))


def metrics(W: Float[Tensor, "inst m n"], threshold: float = 0.5) -> dict[str, Tensor]:
    """``norms [inst n]``, ``represented [inst]``, ``dimensionality [inst n]``, ``dims_per_feature [inst]``."""
    norms = W.norm(dim=1)  # [inst n]
    unit = W / norms.clamp_min(1e-8)[:, None, :]
    overlap = torch.einsum("imn,imk->ink", unit, W) ** 2  # (Ŵ_i·W_j)²
    dim = norms**2 / overlap.sum(-1).clamp_min(1e-12)
    m = W.shape[1]
    return {
        "norms": norms,
        "represented": (norms > threshold).sum(-1),
        "dimensionality": dim,
        "dims_per_feature": m / (W**2).sum((1, 2)).clamp_min(1e-12),
        "interference": _interference(unit, W),
    }


def _interference(unit: Tensor, W: Tensor) -> Tensor:
    """Per feature, Σ_{j≠i} (Ŵ_i·W_j)²: how much other features leak into feature i's direction."""
    ov = torch.einsum("imn,imk->ink", unit, W) ** 2
    return ov.sum(-1) - torch.diagonal(ov, dim1=1, dim2=2)


def sparsity_sweep(sparsities, *, n_features=20, n_hidden=5, decay=0.7, steps=3000, batch=1024, seed=0) -> ToyModels:
    """One instance per sparsity, importance ``decay**i`` (the paper's Figure 'superposition vs sparsity')."""
    return train(ToyConfig(n_features=n_features, n_hidden=n_hidden, sparsity=tuple(float(s) for s in sparsities),
                           decay=decay, steps=steps, batch=batch, seed=seed))


def eval_loss(models: ToyModels, n_samples: int = 20000, seed: int = 1) -> Float[Tensor, " inst"]:
    """Importance-weighted reconstruction loss per instance on a fresh, large seeded sample."""
    cfg = models.config
    gen = torch.Generator().manual_seed(seed)
    x = sample_features(torch.tensor(cfg.sparsity, dtype=torch.float32), cfg.n_features, n_samples, gen)
    with torch.no_grad():
        return (cfg.importance_tensor() * (x - forward(models.W, models.b, x)) ** 2).mean(0).sum(-1)


def phase_diagram(sparsities, rel_importance, *, restarts=3, steps=1500, batch=1024, lr=1e-2,
                  seed=0) -> dict[str, Tensor]:
    """The n=2, m=1 phase diagram: feature 1 has importance 1, feature 2 ``rel_importance``.

    Each cell trains ``restarts`` instances and keeps the one with the lowest evaluation loss
    (small toy models have local minima). ``phase [len(S), len(r)]``: 0 = feature 2 not stored
    (``|W_2| < 0.5``), 1 = feature 2 stored without superposition, 2 = superposition (both
    ``|W_i| ≥ 0.5`` with opposite signs: the antipodal pair).
    """
    S = [float(s) for s in sparsities]
    R = [float(r) for r in rel_importance]
    grid = [(s, r) for s in S for r in R for _ in range(restarts)]
    cfg = ToyConfig(n_features=2, n_hidden=1, sparsity=tuple(s for s, _ in grid),
                    importance=tuple((1.0, r) for _, r in grid), steps=steps, batch=batch, lr=lr, seed=seed)
    models = train(cfg)
    loss = eval_loss(models, seed=seed + 1).reshape(-1, restarts)
    best = loss.argmin(-1) + torch.arange(loss.shape[0]) * restarts
    w = models.W[best, 0, :]  # [cells 2]
    big = w.abs() >= 0.5
    superposed = big.all(-1) & (w[:, 0] * w[:, 1] < 0)
    phase = torch.where(superposed, 2, torch.where(big[:, 1], 1, 0))
    return {"phase": phase.reshape(len(S), len(R)), "W": w.reshape(len(S), len(R), 2),
            "sparsity": torch.tensor(S), "rel_importance": torch.tensor(R)}


def summarize_phase(diagram: dict[str, Tensor]) -> list[dict]:
    """Rows ``{sparsity, rel_importance, phase, w1, w2}`` for a results table."""
    names = ["f2 not stored", "f2 stored alone", "superposed"]
    rows = []
    for i, s in enumerate(diagram["sparsity"].tolist()):
        for j, r in enumerate(diagram["rel_importance"].tolist()):
            w = diagram["W"][i, j]
            rows.append({"sparsity": s, "rel_importance": r, "phase": names[int(diagram["phase"][i, j])],
                         "w1": float(w[0]), "w2": float(w[1])})
    return rows
