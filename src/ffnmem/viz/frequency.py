"""Recall against exposure and capacity on synthetic facts (:mod:`ffnmem.methods.frequency`, :mod:`ffnmem.methods.capacity`)."""

from __future__ import annotations

import numpy as np

from ffnmem.viz.figures import finish, new_axes, new_grid


def plot_recall_vs_exposure(bins: list[dict], curve: dict, ax=None, *, title: str = "recall vs exposure"):
    """Accuracy per exposure bin (:func:`~ffnmem.methods.frequency.by_exposure`, bootstrap CI bars) with the
    logistic fit and its band (:func:`~ffnmem.methods.frequency.recall_curve`)."""
    fig, ax, owned = new_axes(ax, figsize=(5.5, 3.8))
    x = [b["exposures"] for b in bins]
    acc = np.array([b["accuracy"] for b in bins])
    err = [acc - [b["accuracy_lo"] for b in bins], np.array([b["accuracy_hi"] for b in bins]) - acc]
    ax.fill_between(curve["x"], curve["lo"], curve["hi"], alpha=0.25, label="logistic fit, 95% band")
    ax.plot(curve["x"], curve["y"])
    ax.errorbar(x, acc, yerr=err, fmt="o", capsize=3, color="k", label="accuracy per bin (95% CI)")
    ax.set(xscale="log", xlabel="exposures per epoch", ylabel="top-1 recall", ylim=(-0.02, 1.02), title=title)
    ax.legend(loc="lower right", fontsize=8)
    return finish(fig, owned)


def plot_dla_by_exposure(bins: list[dict], axes=None, *, contrast: bool = True):
    """Where facts live, per exposure bin (:func:`~ffnmem.methods.frequency.dla_by_exposure`): |DLA| share by
    layer (FFN vs attention), and the signed direct effects that make up the target. ``contrast``:
    the bins came from :func:`~ffnmem.methods.frequency.dla_rows` with ``contrast`` (the answer's margin
    over the other values) or without. ``axes``: two Axes, or None for a new figure."""
    import matplotlib.pyplot as plt

    n_layers = sum(1 for k in bins[0] if k.startswith("ffn_share_L"))
    x = np.arange(len(bins))
    target = "margin" if contrast else "answer logit"
    fig, grid, owned = new_grid(axes, 1, 2, figsize=(10, 4.4))
    a, b = grid[0]
    bottom = np.zeros(len(bins))
    for kind, cmap in (("ffn", plt.cm.Blues), ("attn", plt.cm.Oranges)):
        for layer in range(n_layers):
            h = np.array([r[f"{kind}_share_L{layer}"] for r in bins])
            a.bar(x, h, bottom=bottom, color=cmap(0.35 + 0.55 * layer / max(1, n_layers - 1)),
                  label=f"{'FFN' if kind == 'ffn' else 'attention'} L{layer}")
            bottom += h
    a.set_xticks(x, [str(r["exposures"]) for r in bins])
    a.set(xlabel="exposures per epoch", ylabel="share of |direct effect|", ylim=(0, 1),
          title=f"where the {target} is written")
    a.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for key, style in (("ffn", "o-"), ("attn", "s-"), ("rest", "^-")):
        b.plot(x, [r[key] for r in bins], style, label={"ffn": "FFN layers", "attn": "attention",
                                                          "rest": "embeddings + bias"}[key])
    b.errorbar(x, [r["logit"] for r in bins], yerr=[[r["logit"] - r["logit_lo"] for r in bins],
                                                    [r["logit_hi"] - r["logit"] for r in bins]],
               fmt="k-", capsize=3, label=f"{target} (sum)")
    b.axhline(0, color="grey", lw=0.5)
    b.set_xticks(x, [str(r["exposures"]) for r in bins])
    b.set(xlabel="exposures per epoch", ylabel=f"direct effect on the {target} (logits)",
          title="answer logit − mean logit of the other values" if contrast else "answer logit")
    b.legend(fontsize=7)
    return finish(fig, owned)


def plot_loss_decomposition(evals: list[dict], ax=None):
    """Cross-entropy at attribute positions = data entropy + KL gap, over training steps (the
    evaluation rows of :func:`ffnmem.methods.training.train`)."""
    steps = [e["step"] for e in evals]
    fig, ax, owned = new_axes(ax, figsize=(5.5, 3.8))
    ax.stackplot(steps, [e["h_bits"] for e in evals], [e["kl_bits"] for e in evals],
                 labels=["data entropy H(p)", "KL gap KL(p‖q)"], alpha=0.6)
    ax.plot(steps, [e["ce_bits"] for e in evals], "k-", label="cross-entropy")
    ax.set(xlabel="training step", ylabel="bits per attribute value", title="loss at attribute positions")
    ax.legend(fontsize=8)
    return finish(fig, owned)


def plot_capacity(rows: list[dict], axes=None):
    """Bits stored and bits per parameter against parameter count (log x), one row per model width
    (:func:`~ffnmem.methods.capacity.sweep_widths`). ``axes``: two Axes, or None for a new figure."""
    params = [r["params"] for r in rows]
    fig, grid, owned = new_grid(axes, 1, 2, figsize=(10, 3.8))
    a, b = grid[0]
    a.plot(params, [r["bits"] for r in rows], "o-", label="bits stored")
    a.axhline(rows[0]["max_bits"], color="grey", ls="--", label="bits in the fact table (ceiling)")
    a.set(xscale="log", xlabel="parameters", ylabel="bits", title="knowledge stored")
    b.plot(params, [r["bits_per_param"] for r in rows], "o-")
    for r in rows:
        b.annotate(f"d={r['d_model']}", (r["params"], r["bits_per_param"]), fontsize=7,
                   textcoords="offset points", xytext=(4, 4))
    b.set(xscale="log", xlabel="parameters", ylabel="bits per parameter", ylim=(0, None),
          title="capacity (Allen-Zhu & Li report ~2 when saturated)")
    a.legend(fontsize=8)
    return finish(fig, owned)


def plot_capacity_sweep(rows: list[dict], fit: dict, axes=None, *, params: str = "params_non_embedding"):
    """A capacity sweep (:func:`~ffnmem.methods.capacity.sweep`): bits stored per size and seed
    against parameters with the fitted bits = c·params line (:func:`~ffnmem.methods.capacity_fit.fit_capacity`),
    the 1 and 2 bits/param lines and the table's noise-aware ceiling; and bits/param per size.
    ``axes``: two Axes, or None for a new figure."""
    fig, grid, owned = new_grid(axes, 1, 2, figsize=(10, 3.8))
    a, b = grid[0]
    p = np.array([r[params] for r in rows], dtype=float)
    bits = np.array([r["bits"] for r in rows], dtype=float)
    xs = np.geomspace(p.min(), p.max(), 50)
    a.scatter(p, bits, s=14, color="k", label="bits stored (size × seed)")
    a.plot(xs, fit["c"] * xs, label=f"fit c = {fit['c']:.3f} [{fit['c_lo']:.3f}, {fit['c_hi']:.3f}]")
    for c, ls in ((1, ":"), (2, "--")):
        a.plot(xs, c * xs, color="grey", ls=ls, lw=0.8, label=f"{c} bit/param")
    a.axhline(rows[0]["ceiling"], color="tab:red", lw=0.8, label="table ceiling n(log2|V| − H)")
    a.set(xscale="log", yscale="log", xlabel=params.replace("_", " "), ylabel="bits", title="knowledge stored")
    a.legend(fontsize=7)
    b.scatter(p, bits / p, s=14, color="k")
    b.axhline(fit["c"], color="tab:blue", lw=0.8)
    b.set(xscale="log", xlabel=params.replace("_", " "), ylabel="bits per parameter", ylim=(0, None),
          title="bits per parameter\n(Allen-Zhu & Li: ~1 at 100, ~2 at 1,000 exposures)")
    return finish(fig, owned)


def plot_scaling(by_size: list[dict], by_exposure: list[dict], fit: dict | None = None, axes=None):
    """Cross-entropy at the value positions against non-embedding parameters (mean over seeds, with
    the fitted L = H + A·N^−α when given) and against exposures during training, one line per size
    and seed; the data entropy H as a floor. ``axes``: two Axes, or None for a new figure."""
    fig, grid, owned = new_grid(axes, 1, 2, figsize=(10, 3.8))
    a, b = grid[0]
    n = np.array([r["params_non_embedding"] for r in by_size], dtype=float)
    a.errorbar(n, [r["ce_bits"] for r in by_size], yerr=[r["ce_bits_sd"] for r in by_size], fmt="o", color="k",
               capsize=3, label="CE at values (mean ± sd over seeds)")
    if fit is not None:
        xs = np.geomspace(n.min(), n.max(), 50)
        a.plot(xs, fit["H"] + fit["A"] * xs ** -fit["alpha"],
               label=f"H + A·N^−α: H = {fit['H']:.2f}, α = {fit['alpha']:.2f}")
    for ax in (a, b):
        ax.axhline(by_size[0]["h_bits"], color="grey", ls="--", lw=0.8, label="data entropy H")
    a.set(xscale="log", xlabel="non-embedding parameters", ylabel="bits", title="cross-entropy vs size")
    a.legend(fontsize=7)
    for size in dict.fromkeys(r["size"] for r in by_exposure):
        for seed in sorted({r["seed"] for r in by_exposure if r["size"] == size}):
            pts = [r for r in by_exposure if r["size"] == size and r["seed"] == seed]
            b.plot([r["exposures"] for r in pts], [r["ce_bits"] for r in pts], lw=0.8,
                   label=size if seed == min(r["seed"] for r in by_exposure) else None)
    b.set(xscale="log", xlabel="exposures per fact", ylabel="bits", title="cross-entropy vs exposures")
    b.legend(fontsize=7)
    return finish(fig, owned)


def plot_steps_curve(rows: list[dict], ax=None, *, params: str = "params_non_embedding",
                     title: str = "bits per parameter as training lengthens"):
    """Bits per parameter against exposures per fact (k× the preset's steps) for each size
    (:func:`ffnmem.jobs.capacity.steps_curve`): a line through each seed trained at several k, a
    point for a seed trained at one k only, and the 1 and 2 bits/param lines. A curve that flattens
    over several doublings is capacity-limited; one flat step is not enough (docs/FINDINGS.md)."""
    fig, ax, owned = new_axes(ax, figsize=(6, 3.9))
    for size in dict.fromkeys(r["size"] for r in rows):
        pts = [r for r in rows if r["size"] == size]
        color, label = None, f"{size} ({pts[0][params]:,} params)"
        for seed in sorted({r["seed"] for r in pts}):
            run = sorted((r for r in pts if r["seed"] == seed), key=lambda r: r["exposures_total"])
            xs, ys = [r["exposures_total"] for r in run], [r["bits"] / r[params] for r in run]
            if len(run) > 1:
                line, = ax.plot(xs, ys, "o-", color=color, label=label)
            else:
                line = ax.scatter(xs, ys, s=14, color=color, alpha=0.6, label=label)
            color = line.get_color() if len(run) > 1 else line.get_facecolor()[0]
            label = None
    for c, ls in ((1, ":"), (2, "--")):
        ax.axhline(c, color="grey", ls=ls, lw=0.8)
    ax.set(xscale="log", xlabel="exposures per fact", ylabel=f"bits / {params.replace('_', ' ')}", ylim=(0, None),
           title=title)
    ax.legend(fontsize=7)
    return finish(fig, owned)
