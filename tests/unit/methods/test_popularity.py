"""Popularity vs recall: matching, chance rate, Poisson-binomial tail, bins; tiny-model parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from ffnmem.core.errors import BadInput
from ffnmem.data.facts import Fact, load_facts
from ffnmem.methods.popularity import (
    chance_more_frequent,
    classify,
    entity_pools,
    greedy_continuations,
    match_entity,
    popularity,
    popularity_analysis,
    popularity_bins,
    popularity_fit,
    substitution_summary,
)
from ffnmem.methods.recall import recall
from ffnmem.viz import plot_recall_vs_popularity, plot_substitutions, save_figure


def _fact(relation, subject, target, distractors=()):
    return Fact(subject=subject, relation=relation, prompt=f"Q {subject}", target=" " + target,
                distractors=tuple(" " + d for d in distractors))


def test_popularity_is_wordfreq_zipf_and_ignores_the_leading_space():
    assert popularity(" Sydney") == popularity("Sydney") > popularity("Canberra") > 0
    assert popularity("Xqzzyvv") == 0.0


def test_pools_merge_relations_of_one_type_and_spellings():
    facts = [_fact("capital_of", "Spain", "Madrid", ["Rome"]), _fact("city_country", "Barcelona", "Spain", ["the United States"]),
             _fact("continent", "United States", "North America"), _fact("my_rel", "x", "A", ["B"])]
    pools = entity_pools(facts)
    assert pools["city"] == ["Madrid", "Rome", "Barcelona"]  # city_country subjects are cities
    assert pools["country"] == ["Spain", "the United States"]  # "United States" is the same entity
    assert pools["my_rel"] == ["A", "B"]  # an unknown relation is its own type
    assert entity_pools(facts, {"my_rel": (None, "city")})["city"][-2:] == ["A", "B"]


@pytest.mark.parametrize("text,expected", [
    (" Barcelona.\n\nThe Spanish", "Barcelona"),
    (" New Zealand, known for", "New Zealand"),  # longest name wins over "New"
    (" the Netherlands and", "Netherlands"),  # leading "the" ignored
    (" Bogota. The", "Bogotá"),  # accents ignored
    (" EUROPE", "Europe"),
    (" Newark is", None),  # "New" must end at a word boundary
    ("\n\nThe British Empire", None),  # a new line first: no answer
    (" a group of entrepreneurs", None),
])
def test_match_entity(text, expected):
    assert match_entity(text, ["Madrid", "Barcelona", "New", "New Zealand", "Netherlands", "Bogotá", "Europe",
                               "British"]) == expected


def test_classify_and_chance():
    z = {"Canberra": 3.6, "Sydney": 4.5, "Perth": 3.5, "Hobart": 2.0, "Darwin": 3.6}
    assert classify(" Canberra", "Sydney", z) == "more_frequent"
    assert classify(" Canberra", "Darwin", z) == "not_more_frequent"  # a tie is not "more frequent"
    assert classify(" Canberra", "canberra", z) == "right_answer"
    assert classify(" Canberra", None, z) == "not_listed"
    assert chance_more_frequent(" Canberra", list(z), z) == 0.25  # only Sydney of 4 others
    assert math.isnan(chance_more_frequent(" Canberra", ["Canberra"], z))


def test_substitution_summary_counts_rates_and_p():
    rows = ([{"kind": "more_frequent", "chance": 0.5}] * 6 + [{"kind": "not_more_frequent", "chance": 0.5}] * 2
            + [{"kind": "not_listed", "chance": 0.1}] * 2)
    s = substitution_summary(rows, n_boot=200, seed=1)
    assert (s["n_wrong"], s["n_same_type"], s["n_more_frequent"]) == (10, 8, 6)
    assert s["same_type_share"] == 0.8 and s["substitution_rate"] == 0.75 and s["chance_rate"] == 0.5
    assert s["p_value"] == pytest.approx(binom.sf(5, 8, 0.5))
    assert s["substitution_rate_lo"] <= 0.75 <= s["substitution_rate_hi"]
    assert s == substitution_summary(rows, n_boot=200, seed=1)  # seeded
    assert math.isnan(substitution_summary([{"kind": "not_listed", "chance": 0.2}])["substitution_rate"])


def test_bins_are_quantiles_with_ties_kept_together():
    rows = [{"subject_zipf": float(z), "top1": z >= 5, "loss_bits": 10.0 - z} for z in range(10)]
    bins = popularity_bins(rows, n_bins=5, n_boot=100)
    assert [b["n"] for b in bins] == [2] * 5 and [b["accuracy"] for b in bins] == [0, 0, 0.5, 1, 1]
    assert bins[0]["loss_bits"] == 9.5 and bins[0]["accuracy_lo"] <= bins[0]["accuracy"] <= bins[0]["accuracy_hi"]
    tied = popularity_bins([{**r, "subject_zipf": 1.0} for r in rows], n_bins=5, n_boot=10)
    assert len(tied) == 1 and tied[0]["n"] == 10
    with pytest.raises(BadInput, match="n_bins"):
        popularity_bins(rows, n_bins=0)


def test_fit_slope_is_positive_when_popular_facts_are_recalled():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 6, 300)
    rows = [{"subject_zipf": v, "top1": bool(rng.random() < 1 / (1 + np.exp(-(v - 3.5) * 2))), "loss_bits": 6 - v}
            for v in x]
    fit = popularity_fit(rows, n_boot=50)
    assert 1.0 < fit["slope"] < 3.5 and fit["slope_lo"] < fit["slope"] < fit["slope_hi"]
    assert fit["spearman_loss"] == pytest.approx(-1.0)


def test_greedy_continuations_equal_an_argmax_loop(tiny):
    prompts = [tiny.encode("The cat"), tiny.encode("A dog"), tiny.encode("Hi")]
    got = greedy_continuations(tiny, prompts, 3, batch_size=2)
    for p, text in zip(prompts, got):
        toks = torch.tensor([p])
        for _ in range(3):
            toks = torch.cat([toks, tiny.bridge(toks)[:, -1].argmax(-1, keepdim=True)], 1)
        assert text == tiny.tokenizer.decode(toks[0, len(p):].tolist())


def test_analysis_on_tiny_writes_tables_and_plots(tiny, tmp_path):
    facts = load_facts("all", relations=["capital_of", "continent"], limit_per_relation=3)
    rec = recall(tiny, facts, scoring="sequence")
    res = popularity_analysis(tiny, facts, rec, n_bins=2, n_boot=50, n_tokens=2)
    assert set(res.tables) == {"facts", "popularity_bins", "substitutions", "substitution_relations"}
    assert len(res.table("substitutions")) == sum(not t for t in rec.table("facts")["top1"])
    assert set(res.table("substitutions")["kind"]) <= {"more_frequent", "not_more_frequent", "right_answer",
                                                       "not_listed"}
    save_figure(plot_recall_vs_popularity(res), tmp_path / "a.png")
    save_figure(plot_substitutions(res), tmp_path / "b.png")
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0
    with pytest.raises(BadInput, match="does not match"):
        popularity_analysis(tiny, facts[:-1], rec)


def test_frequency_weighted_null_counts_occurrences_not_names():
    from ffnmem.methods.popularity import weighted_more_frequent

    z = {"Canberra": 3.0, "Sydney": 5.0, "Perth": 2.0, "Hobart": 2.0}
    # Sydney alone is more popular, but it holds 10**5 / (10**5 + 2 * 10**2) of the frequency mass
    assert weighted_more_frequent(" Canberra", list(z), z) == pytest.approx(1e5 / (1e5 + 200))
    assert chance_more_frequent(" Canberra", list(z), z) == pytest.approx(1 / 3)
    assert weighted_more_frequent("Canberra", ["Canberra"], z) is None


def test_repairing_null_uses_the_relation_s_other_substitutes():
    from ffnmem.methods.popularity import repaired_more_frequent

    subs = [{"relation": "r", "kind": "more_frequent", "substitute_zipf": 5.0, "target_zipf": 3.0},
            {"relation": "r", "kind": "not_more_frequent", "substitute_zipf": 2.0, "target_zipf": 4.0},
            {"relation": "r", "kind": "more_frequent", "substitute_zipf": 4.5, "target_zipf": 1.0},
            {"relation": "r", "kind": "not_listed", "substitute_zipf": None, "target_zipf": 2.0},
            {"relation": "s", "kind": "more_frequent", "substitute_zipf": 6.0, "target_zipf": 1.0}]
    assert repaired_more_frequent(subs) == [0.5, 1.0, 1.0, None, None]  # row 0: 2.0 and 4.5 vs 3.0
