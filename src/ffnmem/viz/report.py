"""Figures of ``ffnmem report``: one chart per analysis, drawn from a SQL result over a run's
catalogue (a pandas DataFrame). :func:`bars` and :func:`lines` make the ``draw(df, ax)`` functions
that :data:`ffnmem.jobs.report.PLOTS` pairs with its queries."""

from __future__ import annotations

from ffnmem.viz.figures import finish, new_axes


def bars(x: str, ys: list[str]):
    """``draw(df, ax)``: grouped bars of columns ``ys`` over the categories in column ``x``."""
    def draw(df, ax):
        width = 0.8 / len(ys)
        for i, y in enumerate(ys):
            ax.bar([j + i * width for j in range(len(df))], df[y], width=width, label=y)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(df))], df[x].astype(str), rotation=30, fontsize=7)
        ax.legend(fontsize=7)
    return draw


def lines(x: str, ys: list[str], by: str | None = None):
    """``draw(df, ax)``: columns ``ys`` against ``x``, one line per value of column ``by`` if given."""
    def draw(df, ax):
        groups = df.groupby(by) if by else [("", df)]
        for key, g in groups:
            for y in ys:
                ax.plot(g[x], g[y], "o-", label=f"{key} {y}".strip())
        ax.set_xlabel(x)
        ax.legend(fontsize=7)
    return draw


def plot_query(df, draw, ax=None, *, title: str = ""):
    """One analysis' chart: ``draw(df, ax)`` (from :func:`bars` or :func:`lines`) under ``title``."""
    fig, ax, owned = new_axes(ax, figsize=(7, 3))
    draw(df, ax)
    ax.set_title(title, fontsize=10)
    return finish(fig, owned)
