"""Recall against entity popularity (:mod:`ffnmem.methods.popularity`)."""

from __future__ import annotations

from ffnmem.viz.figures import finish, new_axes


def plot_recall_vs_popularity(result, ax=None):
    """Top-1 recall per popularity bin (subject and target), 95% bootstrap CI bars, from a
    :func:`~ffnmem.methods.popularity.popularity_analysis` Result."""
    bins = result.table("popularity_bins")
    fig, ax, owned = new_axes(ax, figsize=(5.5, 3.8))
    for key, label in (("subject_zipf", "subject"), ("target_zipf", "target (answer)")):
        b = bins[bins["by"] == key]
        err = [b["accuracy"] - b["accuracy_lo"], b["accuracy_hi"] - b["accuracy"]]
        ax.errorbar(b["zipf_mean"], b["accuracy"], yerr=err, fmt="o-", capsize=3, label=f"by {label} popularity")
    ax.set(xlabel="mean Zipf frequency in bin (wordfreq)", ylabel="top-1 recall", ylim=(-0.02, 1.02),
           title=f"recall vs popularity ({result.meta['n_facts']} facts)")
    ax.legend(fontsize=8)
    return finish(fig, owned)


def plot_substitutions(result, ax=None):
    """Zipf of the substitute vs the right answer for same-type substitutions."""
    s = result.table("substitutions") if "substitutions" in result.tables else None
    fig, ax, owned = new_axes(ax, figsize=(4.8, 4.5))
    lim = [0.0, 7.0]
    if s is not None:
        s = s[s["kind"].isin(["more_frequent", "not_more_frequent"])]
        ax.scatter(s["target_zipf"], s["substitute_zipf"], s=14, alpha=0.6)
        for r in s.drop_duplicates(["target", "substitute"]).groupby("relation").head(2).itertuples():
            ax.annotate(f"{r.target}→{r.substitute}", (r.target_zipf, r.substitute_zipf), fontsize=6)
        if len(s):
            zs = [*s["target_zipf"], *s["substitute_zipf"]]
            lim = [min(zs) - 0.3, max(zs) + 0.3]
    ax.plot(lim, lim, "k--", lw=0.8)
    m = result.meta["substitution"]
    ax.set(xlim=lim, ylim=lim, xlabel="Zipf of the right answer", ylabel="Zipf of the model's answer",
           title=f"substitutions: {m['substitution_rate']:.0%} more frequent (chance {m['chance_rate']:.0%})")
    return finish(fig, owned)
