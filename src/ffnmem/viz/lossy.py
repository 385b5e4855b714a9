"""What a small model loses and what it answers instead (:mod:`ffnmem.methods.lossy`)."""

from __future__ import annotations

import numpy as np

from ffnmem.viz.figures import finish, new_axes


def _label(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}–{hi}"


def plot_survival(rows: list[dict], ax=None, *, title: str = "which facts survive as the model shrinks"):
    """Recall per exposure bin, one line per model (:func:`~ffnmem.methods.lossy.survival`), 95% CI bars."""
    fig, ax, owned = new_axes(ax, figsize=(5.8, 3.9))
    for model in sorted({r["model"] for r in rows}, key=lambda m: min(r["params"] for r in rows if r["model"] == m)):
        rs = sorted((r for r in rows if r["model"] == model), key=lambda r: r["bin_lo"])
        x = np.array([np.sqrt(r["bin_lo"] * r["bin_hi"]) for r in rs])
        y = np.array([r["recall"] for r in rs])
        err = [y - [r["recall_lo"] for r in rs], np.array([r["recall_hi"] for r in rs]) - y]
        ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=f"{model} ({rs[0]['params']:,} params)")
    ax.set(xscale="log", xlabel="exposures per epoch (log2 bins)", ylabel="top-1 recall", ylim=(-0.02, 1.02),
           title=title)
    ax.legend(fontsize=8, loc="upper left")
    return finish(fig, owned)


def plot_substitution(rows: list[dict], ax=None, *, key: str = "prediction",
                      title: str = "wrong answers: the most frequent other value?"):
    """Observed top-value share among substitutions per model and arm
    (:func:`~ffnmem.methods.lossy.substitution_test`, 95% CI) beside its value-frequency and uniform nulls."""
    rs = [r for r in rows if r["key"] == key and r["n_substitutions"] > 0]
    fig, ax, owned = new_axes(ax, figsize=(max(6.5, 0.62 * len(rs)), 3.9))
    x = np.arange(len(rs))
    obs = np.array([r["top_rate"] for r in rs])
    ax.bar(x - 0.27, obs, 0.27, yerr=[obs - [r["top_rate_lo"] for r in rs], np.array([r["top_rate_hi"] for r in rs]) - obs],
           capsize=3, label="observed")
    ax.bar(x, [r["null_frequency"] for r in rs], 0.27, label="value-frequency null")
    ax.bar(x + 0.27, [r["null_uniform"] for r in rs], 0.27, label="uniform null")
    ax.set_xticks(x, [f"{r['model']}\n{r['arm'].replace('_', chr(10))}\nn={r['n_substitutions']}" for r in rs], fontsize=7)
    ax.set(ylabel="share: most frequent other value", title=title)
    ax.legend(fontsize=8)
    return finish(fig, owned)


def plot_recall_by_value_rank(bins: list[dict], ax=None, *, title: str = "recall by how common the true value is"):
    """Recall per log2 bin of the true value's corpus-frequency rank, one line per model."""
    fig, ax, owned = new_axes(ax, figsize=(5.8, 3.9))
    for model in dict.fromkeys(b["model"] for b in bins):
        bs = sorted((b for b in bins if b["model"] == model), key=lambda b: b["bin_lo"])
        y = np.array([b["accuracy"] for b in bs])
        ax.errorbar([np.sqrt(b["bin_lo"] * b["bin_hi"]) for b in bs], y, capsize=3, fmt="o-", label=model,
                    yerr=[y - [b["accuracy_lo"] for b in bs], np.array([b["accuracy_hi"] for b in bs]) - y])
    ax.set(xscale="log", xlabel="frequency rank of the true value (1 = most common; log2 bins)",
           ylabel="top-1 recall", ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=8)
    return finish(fig, owned)
