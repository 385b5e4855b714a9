"""Key-value memories: trigger/value agreement (:mod:`ffnmem.methods.triggers`) and neuron cards' histograms
(:mod:`ffnmem.viz.cards`)."""

from __future__ import annotations

from ffnmem.viz.figures import finish, new_axes


def plot_agreement(ag, ax=None, *, title: str = "key-value agreement by layer"):
    """Agreement of an :class:`~ffnmem.methods.triggers.Agreement` and its shuffled baseline, by layer."""
    fig, ax, owned = new_axes(ax, figsize=(7, 3.5))
    ax.plot(ag.layers, [100 * x for x in ag.observed], "o-", label="keys paired with their own values")
    ax.errorbar(ag.layers, [100 * x for x in ag.baseline], yerr=[100 * x for x in ag.baseline_std],
                fmt="s--", color="grey", label="shuffled pairing (baseline)")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"% keys: trigger next token\nin value top-{ag.value_k}")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return finish(fig, owned)


def plot_coefficient_histogram(acts, ax=None, *, title: str = ""):
    """Histogram (log counts) of one neuron's coefficients ``m`` over tokens (1-D tensor or array)."""
    fig, ax, owned = new_axes(ax, figsize=(5, 2.4))
    ax.hist(acts.numpy() if hasattr(acts, "numpy") else acts, bins=60, color="#4477aa")
    ax.set_yscale("log")
    ax.set_xlabel("coefficient m")
    ax.set_ylabel("tokens")
    ax.set_title(title, fontsize=9)
    return finish(fig, owned)
