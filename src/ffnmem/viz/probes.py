"""Linear probe curves (:mod:`ffnmem.methods.probes`)."""

from __future__ import annotations

from ffnmem.viz.figures import finish, new_axes


def plot_curves(curves: dict[str, list[dict]], ax=None, *, title: str = "probe accuracy by layer"):
    """Accuracy (solid), control task (dashed) and majority class (dotted) per layer, one colour per
    task; ``curves`` maps a task to its :func:`~ffnmem.methods.probes.layer_curve` rows (the layer is
    ``layer`` if a row has it, else read from ``hook``)."""
    fig, ax, owned = new_axes(ax, figsize=(6, 3.6))
    for k, (task, rows) in enumerate(curves.items()):
        layers = [int(r["layer"]) if "layer" in r else int(r["hook"].split(".")[1]) if r["hook"].startswith("blocks.")
                  else i for i, r in enumerate(rows)]
        c = f"C{k}"
        ax.plot(layers, [r["accuracy"] for r in rows], "-o", ms=3, color=c, label=task)
        ax.plot(layers, [r["control"] for r in rows], "--", color=c, alpha=0.6, label=f"{task} (control)")
        ax.axhline(rows[0]["majority"], color=c, lw=0.5, ls=":")
    ax.set_xlabel("layer"), ax.set_ylabel("CV accuracy"), ax.set_ylim(0, 1.05), ax.set_title(title)
    ax.legend(fontsize=7)
    return finish(fig, owned)
