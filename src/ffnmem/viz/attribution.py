"""Direct logit attribution: the demo's per-layer heatmap and top memories, ``ffnmem attribute``'s
per-layer bars and attention heads (:mod:`ffnmem.methods.attribution`)."""

from __future__ import annotations

import torch

from ffnmem.viz.figures import finish, new_axes, new_grid


def plot_layer_dla(mlp: torch.Tensor, attn: torch.Tensor, subjects: list[str], axes=None):
    """Heatmaps of each fact's direct effect on the answer logit per FFN layer (``mlp``) and per
    attention layer (``attn``), both ``[facts, layers]`` as in :class:`~ffnmem.methods.attribution.DirectEffects`
    or the demo's ``mlp_dla`` / ``attn_dla`` tensors, one row per subject. ``axes``: two Axes sharing
    y, or None for a new figure."""
    fig, grid, _ = new_grid(axes, 1, 2, figsize=(12, 0.35 * len(subjects) + 1.8), sharey=True)
    vmax = float(torch.cat([mlp, attn]).abs().max())
    for ax, data, title in ((grid[0, 0], mlp, "FFN layers"), (grid[0, 1], attn, "attention layers")):
        im = ax.imshow(data.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(f"direct effect on the answer logit: {title}")
        ax.set_xlabel("layer")
    grid[0, 0].set_yticks(range(len(subjects)), subjects)
    fig.colorbar(im, ax=list(grid[0]), shrink=0.8, label="logit")
    return fig  # no tight_layout: the shared colorbar is placed by colorbar(ax=...); save with bbox_inches="tight"


def plot_top_neurons(rows: list[dict], axes=None, *, cols: int = 4):
    """The FFN memories with the largest direct effect, one bar panel per subject (rows with
    ``subject``, ``layer``, ``neuron``, ``direct_effect``). ``axes``: a grid of at least one Axes
    per subject (``cols`` wide), or None for a new figure; spare panels are hidden. Rows with
    ``fact_specific`` False (memories other facts share) are drawn grey."""
    subjects = list(dict.fromkeys(r["subject"] for r in rows))
    nrows = (len(subjects) + cols - 1) // cols
    fig, grid, owned = new_grid(axes, nrows, cols, figsize=(4 * cols, 2.4 * nrows))
    for ax, subject in zip(grid.flat, subjects):
        mine = [r for r in rows if r["subject"] == subject]
        labels = [f"L{r['layer']}.{r['neuron']}" for r in mine][::-1]
        colors = ["#3b75af" if r.get("fact_specific", True) else "#b0b0b0" for r in mine][::-1]
        ax.barh(labels, [r["direct_effect"] for r in mine][::-1], color=colors)
        ax.set_title(subject, fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in list(grid.flat)[len(subjects):]:
        ax.axis("off")
    return finish(fig, owned, suptitle="FFN memories with the largest direct effect on the answer "
                  "(logit units; grey: shared with other facts)")


def plot_attribution(mlp: torch.Tensor, attn: torch.Tensor, rows: list[dict], axes=None, *, prompt: str = "",
                     answer: str = ""):
    """One prompt: FFN vs attention direct effect per layer (bars) and its top FFN neurons (rows with
    ``layer``, ``neuron``, ``direct_effect``). ``axes``: two Axes, or None for a new figure titled
    with the prompt and answer."""
    fig, grid, owned = new_grid(axes, 1, 2, figsize=(12, 4))
    a1, a2 = grid[0]
    x = range(len(mlp))
    a1.bar([i - 0.2 for i in x], mlp.numpy(), width=0.4, label="FFN", color="#3a8f3a")
    a1.bar([i + 0.2 for i in x], attn.numpy(), width=0.4, label="attention", color="#c0392b")
    a1.set_xlabel("layer")
    a1.set_ylabel("direct effect (logit)")
    a1.legend()
    a1.set_title("direct effect per layer")
    labels = [f"L{r['layer']}.{r['neuron']}" for r in rows][::-1]
    a2.barh(labels, [r["direct_effect"] for r in rows][::-1], color="#3b75af")
    a2.tick_params(labelsize=7)
    a2.set_title("top FFN neurons")
    return finish(fig, owned, suptitle=f"{prompt!r} → {answer!r}")


def plot_heads(heads: torch.Tensor, ax=None, *, prompt: str = "", answer: str = ""):
    """Heatmap of each attention head's direct effect on the answer logit (layers × heads)."""
    vmax = float(heads.abs().max()) or 1.0
    fig, ax, owned = new_axes(ax, figsize=(max(4, 0.5 * heads.shape[1] + 2), max(3, 0.22 * heads.shape[0] + 1)))
    im = ax.imshow(heads.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"attention heads' direct effect: {prompt!r} → {answer!r}", fontsize=9)
    fig.colorbar(im, ax=ax, label="logit")
    return finish(fig, owned)
