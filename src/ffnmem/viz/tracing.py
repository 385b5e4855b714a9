"""Causal tracing heatmaps (:mod:`ffnmem.methods.tracing`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ffnmem.methods.tracing import ALIGNED_POSITIONS
from ffnmem.viz.figures import finish, new_grid

CMAPS = {"resid": "Purples", "mlp": "Greens", "attn": "Reds", "mlp_w1": "Greens", "attn_w1": "Reds"}


def plot_trace(t, axes=None, *, title: str = ""):
    """One heatmap per kind of a :class:`~ffnmem.methods.tracing.Trace`: indirect effect by layer (x) and
    token (y), subject tokens starred. ``axes``: one Axes per kind, or None for a new figure (whose
    title gives p clean / corrupted unless ``title``)."""
    kinds = list(t.effects)
    fig, grid, owned = new_grid(axes, 1, len(kinds), figsize=(4.2 * len(kinds), 0.32 * len(t.tokens) + 1.6))
    labels = [tok + ("*" if t.subject[0] <= i < t.subject[1] else "") for i, tok in enumerate(t.tokens)]
    for ax, kind in zip(grid[0], kinds):
        im = ax.imshow(torch.nan_to_num(t.effects[kind]).T.numpy(), cmap=CMAPS[kind], aspect="auto", vmin=0)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(f"{kind}" + (f" (window {t.window})" if kind in ("mlp", "attn") else ""), fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return finish(fig, owned, suptitle=title or f"causal trace: p clean {t.p_clean:.3f}, corrupted {t.p_corrupt:.3f}",
                  fontsize=10)


def plot_average(avg: dict[str, Tensor], axes=None, *, n_facts: int):
    """Average indirect effect aligned on subject / last tokens (:func:`~ffnmem.methods.tracing.average_aligned`),
    one panel per kind; ``axes``: one Axes per kind, or None for a new figure."""

    fig, grid, owned = new_grid(axes, 1, len(avg), figsize=(4.2 * len(avg), 3.0))
    for ax, (kind, a) in zip(grid[0], avg.items()):
        im = ax.imshow(torch.nan_to_num(a).T.numpy(), aspect="auto", vmin=0, cmap=CMAPS[kind])
        ax.set_yticks(range(len(ALIGNED_POSITIONS)), ALIGNED_POSITIONS, fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(f"mean indirect effect: {kind}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return finish(fig, owned, suptitle=f"causal tracing averaged over {n_facts} facts", fontsize=10)
