"""Popularity vs recall on real fact sets, and what a model writes when it is wrong.

The real-model counterpart of :mod:`ffnmem.methods.frequency`: there the exposure count of each fact is
known; here it is proxied by how common the entity's name is in English text.

* **Popularity** of a name: its Zipf frequency from ``wordfreq`` (``log10`` of occurrences per
  billion words; ~7 for "the", ~4.5 for "Sydney", ~3.6 for "Canberra", 0 for unknown words).
  Known limits of the proxy: a multi-word name gets a *combined* frequency, lower than that of each
  of its words (``1/f = Σ 1/f_i``), so "New Delhi" or "Bill Gates" look rarer than they are; the
  lookup is case-insensitive and counts every sense of a word (Turkey, Jordan, Apple, Amazon).
* **Recall vs popularity**: facts in quantile bins of subject (or target) popularity, top-1
  accuracy and loss in bits per bin with percentile-bootstrap CIs, the Spearman correlation of
  popularity and loss over facts, and a logistic fit of correctness against Zipf frequency.
* **Substitutions**: for each fact answered wrong (top-1), the greedy continuation after the
  prompt is matched to the candidate entities of the answer's type: every target, distractor and
  typed subject of that type over all relations given (:data:`ENTITY_TYPES`; so Barcelona, a
  city_country subject, is a candidate capital). A *same-type substitution* names another candidate. The
  substitution rate is the share of those whose entity is strictly more popular than the right
  answer; the chance rate is that share if the substitute were drawn uniformly from the other
  candidates, ``mean_i #{c ≠ t_i : z(c) > z(t_i)} / #{c ≠ t_i}``, and the p-value is the exact
  Poisson-binomial tail ``P(X ≥ observed)`` with ``X = Σ Bernoulli(chance_i)``. Two stricter nulls
  per row: ``chance_weighted`` (the substitute drawn in proportion to frequency, ``10**zipf``) and
  ``chance_repaired`` (the substitutes the model wrote for the relation's other subjects).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from scipy.stats import spearmanr

from ffnmem.core.errors import BadInput
from ffnmem.data.facts import Fact, load_facts
from ffnmem.methods.recall import group_by_length
from ffnmem.stats import logistic_fit, mean_ci, poisson_binomial_tail
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows

ANSWER_KINDS = ("more_frequent", "not_more_frequent", "right_answer", "not_listed")


@cache
def popularity(text: str) -> float:
    """Zipf frequency of ``text`` in English (a target's leading space is ignored); 0 if unknown."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(text.strip(), "en"))


# --- substitutions (pure) ----------------------------------------------------------------------
#: Entity types of the shipped relations: relation -> (subject type, target type). Entities of one
#: type are pooled over every relation that names them, so "Barcelona" (a city_country subject) is
#: a candidate answer for capital_of. A relation not listed here is its own target type.
ENTITY_TYPES: dict[str, tuple[str | None, str]] = {
    "capital_of": ("country", "city"), "city_country": ("city", "country"), "company_hq": ("company", "city"),
    "company_founder": ("company", "person"), "continent": ("country", "continent"),
    "currency": ("country", "currency"), "landmark_country": ("landmark", "country"),
    "official_language": ("country", "language"), "person_nationality": ("person", "nationality"),
    "person_profession": ("person", "profession"),
}


def _fold(text: str) -> str:
    """Case-, accent- and leading-"the"-insensitive form of a name (what two spellings share).

    Only spaces and tabs are stripped: a continuation that starts with a new line names nothing.
    """
    text = "".join(c for c in unicodedata.normalize("NFKD", text.strip(" \t")) if not unicodedata.combining(c))
    return text.casefold().removeprefix("the ")


def relation_types(relation: str, types: dict | None = None) -> tuple[str | None, str]:
    """(subject type, target type) of ``relation``; unknown relations: ``(None, relation)``."""
    return {**ENTITY_TYPES, **(types or {})}.get(relation, (None, relation))


def entity_pools(facts: list[Fact], types: dict | None = None) -> dict[str, list[str]]:
    """Per entity type, the distinct names (targets, distractors and typed subjects), first-seen spelling."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for f in facts:
        subject_type, target_type = relation_types(f.relation, types)
        for name in (f.target, *f.distractors):
            out[target_type].setdefault(_fold(name), name.strip())
        if subject_type is not None:
            out[subject_type].setdefault(_fold(f.subject), f.subject.strip())
    return {t: list(names.values()) for t, names in out.items()}


def match_entity(continuation: str, candidates: list[str]) -> str | None:
    """The longest candidate that starts ``continuation`` and ends at a word boundary.

    Case, accents and a leading "the" are ignored ("the Netherlands" matches "Netherlands"); the
    name must come first, on the prompt's line.
    """
    text = _fold(continuation)
    hits = [c for c in candidates if text.startswith(_fold(c)) and not re.match(r"\w", text[len(_fold(c)):][:1])]
    return max(hits, key=lambda c: len(_fold(c))) if hits else None


def _popularity_of(z: dict[str, float] | None):
    return (lambda name: z[name.strip()]) if z is not None else popularity


def classify(target: str, substitute: str | None, z: dict[str, float] | None = None) -> str:
    """One of :data:`ANSWER_KINDS` for a wrong answer (``z`` maps names to popularity; default wordfreq)."""
    pop = _popularity_of(z)
    if substitute is None:
        return "not_listed"
    if _fold(substitute) == _fold(target):
        return "right_answer"
    return "more_frequent" if pop(substitute) > pop(target) else "not_more_frequent"


def chance_more_frequent(target: str, candidates: list[str], z: dict[str, float] | None = None) -> float:
    """Share of the other candidates that are strictly more popular than ``target`` (nan if none)."""
    pop = _popularity_of(z)
    others = [c for c in candidates if _fold(c) != _fold(target)]
    return sum(pop(c) > pop(target) for c in others) / len(others) if others else math.nan


def weighted_more_frequent(target: str, candidates: list[str], z: dict[str, float] | None = None) -> float | None:
    """Chance that a frequency-weighted draw from the other candidates (weight ``10**zipf``, the
    name's occurrences per billion words) is strictly more popular than ``target`` (None if no others).

    The null of a model that names entities in proportion to how often they occur in text.
    """
    pop = _popularity_of(z)
    others = [c for c in candidates if _fold(c) != _fold(target)]
    if not others:
        return None
    w = np.array([10.0 ** pop(c) for c in others])
    more = np.array([pop(c) > pop(target) for c in others])
    return float(w[more].sum() / w.sum())


def repaired_more_frequent(subs: list[dict]) -> list[float | None]:
    """Per substitution row, the re-pairing null: the share of the *other* same-type substitutes of
    its relation (what the model wrote for other subjects) that are more popular than this row's
    target; None for rows that are no same-type substitution or are their relation's only one.

    A model that writes one default entity per relation whatever the subject scores the same as
    observed under this null.
    """
    same = [i for i, r in enumerate(subs) if r["kind"] in ("more_frequent", "not_more_frequent")]
    out: list[float | None] = [None] * len(subs)
    for i in same:
        others = [subs[j]["substitute_zipf"] for j in same if j != i and subs[j]["relation"] == subs[i]["relation"]]
        if others:
            out[i] = float(np.mean([z > subs[i]["target_zipf"] for z in others]))
    return out


def substitution_summary(rows: list[dict], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Rates over wrong answers; ``rows`` carry ``kind`` (see :data:`ANSWER_KINDS`) and ``chance``.

    ``substitution_rate``: more-frequent share of same-type substitutions, with a bootstrap CI;
    ``chance_rate``: mean chance over those; ``p_value``: Poisson-binomial tail.
    """
    subs = [r for r in rows if r["kind"] in ("more_frequent", "not_more_frequent")]
    more = np.array([r["kind"] == "more_frequent" for r in subs], dtype=float)
    chance = [r["chance"] for r in subs]
    lo, hi = mean_ci(more, np.random.default_rng(seed), n_boot, level)
    return {"n_wrong": len(rows), "n_same_type": len(subs), "n_more_frequent": int(more.sum()),
            "same_type_share": len(subs) / len(rows) if rows else math.nan,
            "substitution_rate": float(more.mean()) if subs else math.nan, "substitution_rate_lo": lo,
            "substitution_rate_hi": hi, "chance_rate": float(np.mean(chance)) if subs else math.nan,
            "p_value": poisson_binomial_tail(chance, int(more.sum())) if subs else math.nan}


# --- recall vs popularity (pure) ---------------------------------------------------------------
def popularity_bins(rows: list[dict], key: str = "subject_zipf", *, n_bins: int = 5, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> list[dict]:
    """Quantile bins of ``key``: n, Zipf range, accuracy and loss bits with bootstrap CIs.

    Equal popularity values always share a bin, so bins may be unequal in size (or fewer).
    """
    if n_bins < 1:
        raise BadInput(f"n_bins must be at least 1, got {n_bins}")
    if not rows:
        raise BadInput("no facts to bin by popularity")
    x = np.array([r[key] for r in rows], dtype=float)
    acc = np.array([r["top1"] for r in rows], dtype=float)
    loss = np.array([r["loss_bits"] for r in rows], dtype=float)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1))[1:-1])
    which = np.searchsorted(edges, x, side="right")
    rng = np.random.default_rng(seed)
    out = []
    for b in np.unique(which):
        m = which == b
        (a_lo, a_hi), (l_lo, l_hi) = mean_ci(acc[m], rng, n_boot, level), mean_ci(loss[m], rng, n_boot, level)
        out.append({"by": key, "bin": int(b), "n": int(m.sum()), "zipf_lo": float(x[m].min()),
                    "zipf_hi": float(x[m].max()), "zipf_mean": float(x[m].mean()), "accuracy": float(acc[m].mean()),
                    "accuracy_lo": a_lo, "accuracy_hi": a_hi, "loss_bits": float(loss[m].mean()),
                    "loss_lo": l_lo, "loss_hi": l_hi})
    return out


def popularity_fit(rows: list[dict], key: str = "subject_zipf", *, n_boot: int = 500, seed: int = 0,
                   level: float = 0.95) -> dict:
    """Spearman ρ(popularity, loss bits) over facts, and P(top-1) = σ(a + b·zipf) with a bootstrap CI on b."""
    x = np.array([r[key] for r in rows], dtype=float)
    y = np.array([r["top1"] for r in rows], dtype=float)
    loss = np.array([r["loss_bits"] for r in rows], dtype=float)
    rho = spearmanr(x, loss) if len(set(x)) > 1 else None
    a, b = logistic_fit(x, y)
    rng = np.random.default_rng(seed)
    slopes = np.array([logistic_fit(x[i], y[i])[1] for i in rng.integers(0, len(x), size=(n_boot, len(x)))])
    return {"by": key, "spearman_loss": float(rho.statistic) if rho else math.nan,
            "spearman_p": float(rho.pvalue) if rho else math.nan, "intercept": float(a), "slope": float(b),
            "slope_lo": float(np.percentile(slopes, 50 * (1 - level))),
            "slope_hi": float(np.percentile(slopes, 50 * (1 + level)))}


# --- adapters ----------------------------------------------------------------------------------
@torch.inference_mode()
def greedy_continuations(wb, prompts: list[list[int]], n_tokens: int, *, batch_size: int = 16) -> list[str]:
    """Greedy text after each prompt (token ids with BOS), ``n_tokens`` tokens.

    Batched by equal prompt length (no padding) with a key-value cache; equals a loop of argmax
    forward passes.
    """
    out: list[str] = [""] * len(prompts)
    for idx in group_by_length([len(p) for p in prompts], batch_size):
        tokens = torch.tensor([prompts[i] for i in idx], device=wb.device)
        wb.check_length(tokens.shape[1] + n_tokens, what="a prompt plus its continuation")
        full = wb.bridge.generate(tokens, max_new_tokens=n_tokens, do_sample=False, stop_at_eos=False,
                                  use_past_kv_cache=True, return_type="tokens", verbose=False)
        for row, i in enumerate(idx):
            out[i] = wb.tokenizer.decode(full[row, len(prompts[i]):].tolist())
    return out


def fact_rows(recall_result) -> list[dict]:
    """The recall ``facts`` table as rows, with ``subject_zipf`` and ``target_zipf`` added."""
    rows = recall_result.table("facts").to_dict("records")
    for r in rows:
        r["subject_zipf"], r["target_zipf"] = popularity(r["subject"]), popularity(r["target"])
    return rows


def substitutions(wb, facts: list[Fact], rows: list[dict], *, types: dict | None = None,
                  pool_facts: Sequence[Fact] = (), n_tokens: int | None = None, batch_size: int = 64) -> list[dict]:
    """One row per wrong fact: greedy continuation, matched same-type entity, its kind and chance rate.

    Candidates are the pool of the relation's target type over ``facts`` and ``pool_facts`` (say,
    every shipped fact set, so the pools do not shrink when only one relation is scored).
    ``n_tokens`` defaults, per type, to its longest name in tokens plus one (to see the word boundary).
    """
    pools = entity_pools([*facts, *pool_facts], types)
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if not r["top1"]:
            by_type[relation_types(facts[i].relation, types)[1]].append(i)
    out = {}
    for entity_type, idx in by_type.items():
        pool = pools[entity_type]
        n = n_tokens or 1 + max(len(wb.encode(" " + c, prepend_bos=False)) for c in pool)
        conts = greedy_continuations(wb, [wb.encode(facts[i].prompt) for i in idx], n, batch_size=batch_size)
        for i, cont in zip(idx, conts):
            f, sub = facts[i], match_entity(cont, pool)
            out[i] = {"relation": f.relation, "subject": f.subject, "target": f.target.strip(),
                      "target_zipf": popularity(f.target), "continuation": cont, "substitute": sub,
                      "substitute_zipf": popularity(sub) if sub else None, "kind": classify(f.target, sub),
                      "chance": _or_none(chance_more_frequent(f.target, pool)),
                      "chance_weighted": weighted_more_frequent(f.target, pool), "entity_type": entity_type,
                      "n_candidates": len(pool)}
    rows_out = [out[i] for i in sorted(out)]
    for r, c in zip(rows_out, repaired_more_frequent(rows_out)):
        r["chance_repaired"] = c
    return rows_out


def _or_none(x: float) -> float | None:
    """Undefined values are stored as NULL, not NaN (see ffnmem.store.results.check_finite)."""
    return None if math.isnan(x) else x


def by_relation(subs: list[dict], *, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """:func:`substitution_summary` per relation (plus ``ALL``), as table rows."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in subs:
        groups[r["relation"]].append(r)
    groups["ALL"] = subs
    return [{"relation": rel, **substitution_summary(rs, n_boot=n_boot, seed=seed)} for rel, rs in groups.items()]


def popularity_analysis(wb, facts: list[Fact], recall_result, *, n_bins: int = 5, n_boot: int = 1000, seed: int = 0,
                        types: dict | None = None, pool_facts: Sequence[Fact] = (), n_tokens: int | None = None,
                        batch_size: int = 64):
    """Recall vs popularity and the substitution analysis for a :func:`ffnmem.methods.recall.recall` result.

    ``facts`` must be the list that produced ``recall_result`` (same order); ``pool_facts`` only add
    candidate entities (see :func:`substitutions`). Returns a Result of
    kind ``popularity`` with tables ``facts``, ``popularity_bins``, ``substitutions`` (one row
    per wrong fact) and ``substitution_relations``; ``meta["substitution"]`` holds the rates.
    """

    rows = fact_rows(recall_result)
    if len(rows) != len(facts) or any(r["prompt"] != f.prompt for r, f in zip(rows, facts)):
        raise BadInput("the recall result does not match the fact list; pass the facts it was computed on")
    subs = substitutions(wb, facts, rows, types=types, pool_facts=pool_facts, n_tokens=n_tokens,
                         batch_size=batch_size)
    keys = ("subject_zipf", "target_zipf")
    bins = [b for key in keys for b in popularity_bins(rows, key, n_bins=n_bins, n_boot=n_boot, seed=seed)]
    fits = {key: popularity_fit(rows, key, n_boot=min(n_boot, 500), seed=seed) for key in keys}
    meta = {"scoring": recall_result.meta["scoring"], "n_facts": len(rows),
            "accuracy": float(np.mean([r["top1"] for r in rows])), "substitution": substitution_summary(subs, n_boot=n_boot, seed=seed), "fits": fits,
            "popularity_proxy": "wordfreq zipf_frequency(name, 'en')", "n_bins": n_bins,
            "n_candidates": {t: len(c) for t, c in entity_pools([*facts, *pool_facts], types).items()}}
    tables = {"facts": table_from_rows(rows), "popularity_bins": table_from_rows(bins)}
    if subs:
        tables["substitutions"] = table_from_rows(subs)
        tables["substitution_relations"] = table_from_rows(by_relation(subs, n_boot=n_boot, seed=seed))
    return Result(kind="popularity", tables=tables, meta=meta,
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed,
                                             pool_hash=facts_hash(list(pool_facts)) if pool_facts else None))


def shipped_facts() -> list[Fact]:
    """Every shipped fact set (``data/facts``), or ``[]`` outside the repository: extra candidate entities."""

    try:
        return load_facts("all")
    except BadInput:
        return []
