"""Lossy compression statistics on hand-made scored rows: value frequencies, the substitution test
and its nulls, the KL split, and the survival / forgetting tables."""

from __future__ import annotations

import numpy as np
import pytest

from ffnmem.core.errors import BadInput
from ffnmem.methods import lossy

VALUES = {"city": ["Ab", "Bo", "Ci", "Du", "Ek", "Fa"]}
FREQ = {"city": {"Ab": 0.4, "Bo": 0.2, "Ci": 0.1, "Du": 0.1, "Ek": 0.1, "Fa": 0.1}}


def _row(i, answer, pred, exposures=1, correct=None, kl=1.0):
    return {"entity": f"E{i}", "attribute": "city", "answer": answer, "prediction": pred, "exposures": exposures,
            "correct": pred == answer if correct is None else correct, "loss_bits": kl, "kl_bits": kl, "h_bits": 0.0}


def test_value_frequencies_count_mentions_or_facts_with_noise():
    facts = [{"entity": "a", "attribute": "city", "value": "Ab", "exposures": 3},
             {"entity": "b", "attribute": "city", "value": "Ab", "exposures": 1},
             {"entity": "c", "attribute": "city", "value": "Bo", "exposures": 4}]
    vals = {"city": ["Ab", "Bo", "Ci"]}
    assert lossy.value_frequencies(facts, vals)["city"] == pytest.approx({"Ab": 0.5, "Bo": 0.5, "Ci": 0.0})
    by_fact = lossy.value_frequencies(facts, vals, weight="facts", value_noise=0.3)  # noise: mentions only
    assert by_fact["city"] == pytest.approx({"Ab": 2 / 3, "Bo": 1 / 3, "Ci": 0.0})
    # 8 mentions: each writes the truth w.p. 0.7 and a uniform draw w.p. 0.3 (0.1 per value)
    noisy = lossy.value_frequencies(facts, vals, value_noise=0.3)["city"]
    assert noisy == pytest.approx({"Ab": 0.45, "Bo": 0.45, "Ci": 0.1})
    assert lossy.frequency_ranks(FREQ)["city"] == {"Ab": 1, "Bo": 2, "Ci": 3, "Du": 4, "Ek": 5, "Fa": 6}


def test_substitution_nulls_per_row():
    rows = [_row(0, "Ab", "Ci"), _row(1, "Ci", "Du"), _row(2, "Ci", "Ci"), _row(3, "Ci", "Paris")]
    subs = lossy.substitution_rows(rows, FREQ)
    assert len(subs) == 2  # right answers and answers outside the value set are not substitutions
    a, b = subs
    # truth Ab (the mode): the most frequent other value is Bo, drawn w.p. 0.2 / (1 − 0.4)
    assert not a["top"] and a["chance_frequency"] == pytest.approx(0.2 / 0.6) and a["chance_uniform"] == 0.2
    assert a["rank_frequency"] == pytest.approx((2 * 0.2 + (3 + 4 + 5 + 6) * 0.1) / 0.6)
    assert a["rank_uniform"] == pytest.approx((2 + 3 + 4 + 5 + 6) / 5)
    # truth Ci: the top other value is Ab, w.p. 0.4 / 0.9
    assert not b["top"] and b["chance_frequency"] == pytest.approx(0.4 / 0.9) and b["predicted_rank"] == 4


def test_substitution_detected_when_wrong_answers_are_the_frequent_value():
    rng = np.random.default_rng(0)
    truths = rng.choice(VALUES["city"][1:], size=120)
    rows = [_row(i, t, "Ab") for i, t in enumerate(truths)]  # every wrong answer: the mode
    rows += [_row(200 + i, "Ab", "Bo") for i in range(30)]  # truth = mode: the top other value is Bo
    res = lossy.substitution_test(rows, FREQ, n_boot=200, n_sim=500)
    assert res["n_substitutions"] == 150 and res["top_rate"] == 1.0
    # truth t ≠ mode: the top other value is the mode Ab, drawn w.p. 0.4 / (1 − f(t))
    want = (sum(0.4 / (1 - FREQ["city"][t]) for t in truths) + 30 * 0.2 / 0.6) / 150
    assert res["null_frequency"] == pytest.approx(want)
    assert res["p_frequency"] < 1e-20 and res["p_uniform"] < 1e-20 and res["rate_ratio_frequency"] > 2
    assert res["mean_rank"] < res["mean_rank_frequency"] < res["mean_rank_uniform"]
    assert res["p_rank_frequency"] < 0.01


def test_substitution_not_detected_when_wrong_answers_follow_the_frequency_null():
    # wrong answers drawn in proportion to corpus frequency: the value-frequency null holds, so its
    # test rejects at about its level; the uniform null does not hold and is rejected
    rng = np.random.default_rng(1)
    vals = VALUES["city"]
    p_freq, p_unif = [], []
    for rep in range(200):
        rows = []
        for i in range(60):
            t = vals[int(rng.integers(len(vals)))]
            others = [v for v in vals if v != t]
            w = np.array([FREQ["city"][v] for v in others])
            rows.append(_row(i, t, others[int(rng.choice(len(others), p=w / w.sum()))]))
        res = lossy.substitution_test(rows, FREQ, n_boot=10, n_sim=10)
        p_freq.append(res["p_frequency"])
        p_unif.append(res["p_uniform"])
    assert np.mean(np.array(p_freq) < 0.05) <= 0.08  # at most its level (+ Monte Carlo slack)
    assert np.mean(np.array(p_unif) < 0.05) > 0.5


def test_substitution_by_attribute_names_the_default_answer():
    rows = [_row(i, "Ci", "Bo") for i in range(5)] + [_row(9, "Du", "Ek")]
    (a,) = lossy.substitution_by_attribute(rows, FREQ)
    assert a["default_answer"] == "Bo" and a["default_share"] == pytest.approx(5 / 6) and a["default_rank"] == 2


def test_kl_split_rare_vs_frequent():
    rows = [_row(i, "Ab", "Ab", exposures=e, kl=kl) for i, (e, kl) in
            enumerate([(1, 3.0), (1, 2.0), (2, 2.5), (8, 1.0), (16, 0.5), (32, 0.1)] * 10)]
    res = lossy.kl_split(rows, n_boot=200, n_resamples=999)
    assert res["rare_max_exposures"] == 1 and res["frequent_min_exposures"] == 16
    assert res["kl_rare"] == pytest.approx(2.5) and res["kl_frequent"] == pytest.approx(0.3)
    assert res["kl_diff_lo"] > 0 and res["p_value"] < 0.01
    with pytest.raises(BadInput):
        lossy.kl_split([_row(i, "Ab", "Ab", exposures=4) for i in range(5)])


def test_survival_and_forgetting_order():
    exps = [1, 1, 2, 2, 4, 4, 8, 8]
    big = [_row(i, "Ab", "Ab", exposures=e) for i, e in enumerate(exps)]  # knows all
    small = [_row(i, "Ab", "Ab" if e >= 4 else "Bo", exposures=e) for i, e in enumerate(exps)]  # lost the rare
    models = [{"label": "big", "params": 1000, "rows": big}, {"label": "small", "params": 10, "rows": small}]
    table = lossy.survival(models, n_boot=50)
    assert [r["model"] for r in table] == ["small"] * 4 + ["big"] * 4  # smallest first
    assert [r["recall"] for r in table[:4]] == [0, 0, 1, 1] and all(r["recall"] == 1 for r in table[4:])
    assert [(r["bin_lo"], r["bin_hi"]) for r in table[:4]] == [(1, 1), (2, 3), (4, 7), (8, 15)]
    (step,) = lossy.forgetting_order(models, n_resamples=999)
    assert (step["from"], step["to"], step["n_lost"], step["n_kept"]) == ("big", "small", 4, 4)
    assert step["median_exposures_lost"] < step["median_exposures_kept"] and step["p_value"] < 0.05


def test_recall_by_value_rank_bins():
    rows = [_row(0, "Ab", "Ab"), _row(1, "Bo", "Ab"), _row(2, "Ci", "Ci"), _row(3, "Fa", "Ab")]
    bins = lossy.recall_by(rows, "value_rank", lossy.frequency_ranks(FREQ), n_boot=20)
    assert [(b["bin_lo"], b["n"], b["accuracy"]) for b in bins] == [(1, 1, 1.0), (2, 2, 0.5), (4, 1, 0.0)]


def test_bits_above_prior_credits_nothing_for_knowing_the_value_law():
    # a model that answers with the prior itself (q = f) loses exactly −log2 f(v*) bits: 0 above it
    rows = [{**_row(i, v, v), "loss_bits": -np.log2(FREQ["city"][v])} for i, v in enumerate(VALUES["city"])]
    assert lossy.bits_above_prior(rows, FREQ) == pytest.approx(0.0)
    rows[0]["loss_bits"] = 0.0  # knows the first fact for sure: −log2 0.4 bits above the prior
    assert lossy.bits_above_prior(rows, FREQ) == pytest.approx(-np.log2(0.4))
