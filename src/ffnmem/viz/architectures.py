"""Causal vs prefix vs masked LM comparison (:mod:`ffnmem.methods.architectures`): each function takes the
list of per-variant result dicts of :func:`~ffnmem.methods.architectures.compare`."""

from __future__ import annotations

import math

import numpy as np

from ffnmem.viz.figures import finish, new_axes, new_grid


def plot_variant_recall(results: list[dict], ax=None):
    """Top-1 recall by exposure, one line per variant."""
    fig, ax, owned = new_axes(ax, figsize=(6, 4))
    for r in results:
        ax.plot([b["exposures"] for b in r["bins"]], [b["accuracy"] for b in r["bins"]], "o-", label=r["variant"])
    ax.set(xscale="log", xlabel="exposures", ylabel="top-1 recall", ylim=(-0.02, 1.02), title="recall vs exposure")
    ax.legend(fontsize=7)
    return finish(fig, owned)


def plot_capacity_entropy_signal(results: list[dict], axes=None):
    """Bits per trainable parameter, cross-entropy at attributes split into entropy + KL, and the
    share of positions with a loss term, per variant. ``axes``: three Axes, or None for a new figure."""
    names = [r["variant"] for r in results]
    fig, grid, owned = new_grid(axes, 1, 3, figsize=(11, 3.6))
    axes = grid[0]
    axes[0].bar(names, [r["capacity"]["bits_per_param"] for r in results])
    axes[0].set(title="bits / trainable param")
    axes[1].bar(names, [r["summary"]["h_bits"] for r in results], label="data entropy H")
    axes[1].bar(names, [r["summary"]["kl_bits"] for r in results], bottom=[r["summary"]["h_bits"] for r in results],
                label="KL gap")
    axes[1].set(title="CE at attribute (bits)")
    axes[1].legend(fontsize=7)
    axes[2].bar(names, [r["signal_fraction"] for r in results])
    axes[2].set(title="share of positions with a loss term")
    for a in axes:
        a.tick_params(axis="x", rotation=60, labelsize=7)
    return finish(fig, owned)


def plot_position_probe(results: list[dict], ax=None):
    """A linear probe's error at predicting the token index from the residual stream, by layer."""
    fig, ax, owned = new_axes(ax, figsize=(6, 4))
    for r in results:
        ax.plot([p["layer"] for p in r["probe"]], [p["mae"] for p in r["probe"]], "o-", label=r["variant"])
    ax.axhline(results[0]["probe"][0]["baseline_mae"], color="k", ls=":", label="predict the mean")
    ax.set(xlabel="layer (0 = embeddings)", ylabel="probe MAE (positions)", title="linear position probe",
           xticks=[p["layer"] for p in results[0]["probe"]])
    ax.legend(fontsize=7)
    return finish(fig, owned)


def plot_ffn_share(results: list[dict], ax=None):
    """Each FFN layer's share of the answer's |direct attribution|, grouped bars per variant."""
    fig, ax, owned = new_axes(ax, figsize=(6, 4))
    L = len(results[0]["ffn_share"])
    for i, r in enumerate(results):
        ax.bar(np.arange(L) + i / (len(results) + 1), r["ffn_share"], width=1 / (len(results) + 1), label=r["variant"])
    ax.set(xlabel="layer", ylabel="share of |DLA|", title="FFN share of the answer's direct attribution")
    ax.legend(fontsize=7)
    return finish(fig, owned)


def plot_attention_erank(results: list[dict], axes=None):
    """Effective rank of the attention pattern per layer and head, one annotated heatmap per variant
    (up to three per row). ``axes``: a grid of at least one Axes per variant, three wide (spare panels
    are hidden), or None for a new figure (constrained layout, shared colorbar, title)."""
    ncols = min(3, len(results))
    nrows = math.ceil(len(results) / ncols)
    fig, grid, owned = new_grid(axes, nrows, ncols, figsize=(3.2 * ncols, 1.2 + 1.6 * nrows), layout="constrained")
    vmax = max(float(np.max(r["attention_erank"])) for r in results)
    for i, a in enumerate(grid.flat):
        if i >= len(results):
            a.axis("off")
            continue
        er = np.array(results[i]["attention_erank"])
        im = a.imshow(er, vmin=1, vmax=vmax, cmap="viridis", aspect="auto")
        for (l, h), v in np.ndenumerate(er):
            a.text(h, l, f"{v:.1f}", ha="center", va="center", fontsize=7, color="w")
        a.set_title(results[i]["variant"], fontsize=9)
        a.set(xticks=range(er.shape[1]), yticks=range(er.shape[0]))
        a.set_xlabel("head" if i // ncols == nrows - 1 else "", fontsize=8)
        a.set_ylabel("layer" if i % ncols == 0 else "", fontsize=8)
    fig.colorbar(im, ax=list(grid.flat), shrink=0.8, label="effective rank")
    # constrained layout places the colorbar; tight_layout would fight it
    return finish(fig, owned, suptitle="attention pattern effective rank (same documents)", fontsize=10, layout=False)


def plot_position_probe_seeds(rows: list[dict], axes=None):
    """The fair comparison's position probe (:func:`ffnmem.methods.fair.aggregate_analyses`): held-out
    accuracy by depth, one panel per input set, one line per budget and arm (trained: solid with its
    95% t band over seeds; init: dashed), the permuted-label null dotted. ``axes``: one Axes per input
    set (``documents``, ``random``: two), or None for a new figure."""
    inputs = sorted({r["inputs"] for r in rows})
    fig, grid, owned = new_grid(axes, 1, len(inputs), figsize=(5.5 * len(inputs), 4))
    colors = {}
    for a, name in zip(grid[0], inputs):
        for key in sorted({(r["budget"], r["arm"]) for r in rows if r["inputs"] == name}):
            color = colors.setdefault(key, f"C{len(colors) % 10}")
            for model, style in (("trained", "o-"), ("init", "--")):
                sel = sorted((r for r in rows if (r["budget"], r["arm"], r["inputs"], r["model"]) == (*key, name, model)),
                             key=lambda r: r["depth"])
                if not sel:
                    continue
                d = [r["depth"] for r in sel]
                a.plot(d, [r["accuracy"] for r in sel], style, color=color,
                       label=f"{key[1]} ({key[0]})" if model == "trained" else None)
                if model == "trained":
                    lo, hi = [r["accuracy_lo"] for r in sel], [r["accuracy_hi"] for r in sel]
                    if not any(math.isnan(x) for x in lo + hi):
                        a.fill_between(d, lo, hi, color=color, alpha=0.15)
                    a.plot(d, [r["null_accuracy"] for r in sel], ":", color=color, lw=0.8)
        a.set(xlabel="depth (0 = embeddings)", ylabel="held-out accuracy", ylim=(-0.02, 1.02),
              xticks=sorted({r["depth"] for r in rows if r["inputs"] == name}),
              title=f"position probe, {name} tokens (dashed: init, dotted: null)")
        a.legend(fontsize=6, ncol=2)
    return finish(fig, owned)


FIGURES = {  # the file name the architectures job writes each figure to
    "recall_vs_exposure.png": plot_variant_recall,
    "capacity_entropy_signal.png": plot_capacity_entropy_signal,
    "position_probe.png": plot_position_probe,
    "ffn_share.png": plot_ffn_share,
    "attention_erank.png": plot_attention_erank,
}
