"""Figure plumbing shared by every ``plot_*``: where to draw, and how a job writes a figure out.

Plot functions never pick a backend (no ``matplotlib.use``): in a notebook the figure shows inline,
on a headless machine matplotlib falls back to Agg by itself. pyplot is imported inside the
functions so that importing :mod:`ffnmem.viz` costs nothing and touches no backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ffnmem.core.errors import BadInput


def new_axes(ax=None, *, figsize: tuple[float | int, float | int]):
    """``(figure, ax, owned)``: the given ``ax`` and its figure, or a new figure of ``figsize``.
    ``owned`` says whether the figure is ours to lay out (a caller's figure is left as it is)."""
    if ax is not None:
        return ax.figure, ax, False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax, True


def new_grid(axes=None, nrows: int = 1, ncols: int = 1, *, figsize: tuple[float | int, float | int], **kw):
    """``(figure, axes [nrows, ncols], owned)`` for multi-panel plots: the caller's ``axes`` (any
    sequence or array of ``nrows * ncols`` Axes) or a new figure (``kw`` go to ``plt.subplots``)."""
    if axes is not None:
        grid = np.asarray(axes, dtype=object)
        if grid.size != nrows * ncols:
            raise BadInput(f"this plot draws {nrows * ncols} panels ({nrows}×{ncols}) but got {grid.size} axes: "
                           "pass that many or none")
        grid = grid.reshape(nrows, ncols)
        return grid.flat[0].figure, grid, False
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kw)
    return fig, grid, True


def finish(fig, owned: bool, *, suptitle: str | None = None, fontsize: float | int | None = None, layout: bool = True):
    """Title and tight layout for a figure the plot created; a caller's figure is returned untouched."""
    if owned:
        if suptitle is not None:
            fig.suptitle(suptitle, **({} if fontsize is None else {"fontsize": fontsize}))
        if layout:
            fig.tight_layout()
    return fig


def close(fig) -> None:
    """Release a pyplot figure (jobs draw many; pyplot keeps every open one alive)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


def save_figure(fig, path: str | Path, *, dpi: int = 110, **savefig_kw) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) and close it; returns the path."""
    path = Path(path)
    try:
        fig.savefig(path, dpi=dpi, **savefig_kw)
    finally:
        close(fig)
    return path


def png_bytes(fig, *, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (for HTML pages that embed the image), then closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        close(fig)
    return buf.getvalue()
