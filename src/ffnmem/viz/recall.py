"""Recall of fact sets (:mod:`ffnmem.methods.recall`)."""

from __future__ import annotations

from ffnmem.viz.figures import finish, new_axes


def plot_recall(result, ax=None):
    """Bar chart of top-1 / top-k accuracy per relation of a ``recall`` :class:`~ffnmem.store.results.Result`."""
    rel = result.table("relations")
    k = result.meta["k"]
    fig, ax, owned = new_axes(ax, figsize=(max(6, 0.7 * len(rel)), 3.5))
    x = range(len(rel))
    ax.bar([i - 0.2 for i in x], rel["top1"], width=0.4, label="top-1")
    ax.bar([i + 0.2 for i in x], rel[f"top{k}"], width=0.4, label=f"top-{k}")
    ax.set_xticks(list(x), rel["relation"], rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"recall per relation ({result.meta['scoring']} scoring)")
    ax.legend()
    return finish(fig, owned)
