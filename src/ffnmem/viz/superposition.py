"""Toy models of superposition (:mod:`ffnmem.methods.superposition`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ffnmem.viz.figures import finish, new_axes, new_grid


def plot_wtw(models, axes=None, *, titles: list[str] | None = None):
    """WᵀW (blue/red) and ‖W_i‖ bars per instance of :class:`~ffnmem.methods.superposition.ToyModels`, as in
    the paper's figure 2. ``axes``: a 2 × instances grid of Axes, or None for a new figure."""
    import matplotlib.pyplot as plt

    inst = models.W.shape[0]
    fig, grid, owned = new_grid(axes, 2, inst, figsize=(2.2 * inst, 4.6))
    for k in range(inst):
        W = models.W[k]
        grid[0, k].imshow((W.T @ W).numpy(), cmap="RdBu", vmin=-1, vmax=1)
        grid[0, k].set_xticks([]), grid[0, k].set_yticks([])
        grid[0, k].set_title(titles[k] if titles else f"S={models.config.sparsity[k]:g}", fontsize=8)
        norms = models.metrics["norms"][k].numpy()
        colour = models.metrics["interference"][k].clamp(0, 1).numpy()
        grid[1, k].barh(range(len(norms)), norms, color=plt.cm.viridis(colour))
        grid[1, k].invert_yaxis(), grid[1, k].set_xlim(0, 1.2), grid[1, k].set_yticks([])
    grid[1, 0].set_ylabel("‖W_i‖ (colour: interference)")
    return finish(fig, owned)


def plot_phase(diagram: dict[str, Tensor], ax=None):
    """Phase of :func:`~ffnmem.methods.superposition.phase_diagram` over (relative importance, 1 − sparsity),
    log axes as in the paper."""
    fig, ax, owned = new_axes(ax, figsize=(4.4, 3.6))
    S, R = diagram["sparsity"], diagram["rel_importance"]
    im = ax.pcolormesh(R.numpy(), (1 - S).numpy(), diagram["phase"].numpy(), cmap="viridis", vmin=0, vmax=2,
                       shading="nearest")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("relative importance of feature 2"), ax.set_ylabel("feature density 1 − S")
    cb = fig.colorbar(im, ax=ax, ticks=[0, 1, 2])
    cb.ax.set_yticklabels(["f2 not stored", "f2 stored alone", "superposed"])
    return finish(fig, owned)


def plot_dimensionality(models, ax=None):
    """Dimensions per feature vs 1/(1 − S), with each feature's D_i scattered (paper figure 'geometry')."""
    S = torch.tensor(models.config.sparsity)
    x = 1.0 / (1.0 - S)
    fig, ax, owned = new_axes(ax, figsize=(5, 3.4))
    ax.plot(x.numpy(), models.metrics["dims_per_feature"].numpy(), "k-", label="m / ‖W‖_F²")
    for k in range(len(S)):
        d = models.metrics["dimensionality"][k]
        ax.scatter([x[k].item()] * len(d), d.numpy(), s=6, alpha=0.5, c="tab:blue")
    ax.set_xscale("log"), ax.set_xlabel("1 / (1 − S)"), ax.set_ylabel("dimensions per feature")
    ax.legend(fontsize=8)
    return finish(fig, owned)
