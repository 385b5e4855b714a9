"""The localization jobs on a small synthetic-facts model (word-level vocabulary, so a relation's
answers have distinct first tokens and margins are defined): tables, the frequency link, the
ground-truth scoring, and the batch registry entries that call them."""

from __future__ import annotations

import math

import pytest

from ffnmem.batch.registry import ANALYSES, UnitData
from ffnmem.jobs import groundtruth, localization
from ffnmem.store.results import check_finite


@pytest.fixture(scope="module")
def synthetic():
    p = localization.SyntheticLocalizationParams(methods=["dla", "attribution_patching"], k=4, ks=[1, 4, 16],
                                                 modes=["zero", "mean"], n_random=2, n_collateral=2,
                                                 reference_windows=2, steps=150, facts_per_bin=1)
    return ANALYSES["localization_synthetic"].fn(None, UnitData(), p, 0)


def test_every_known_fact_is_located_and_validated_by_every_method(synthetic):
    facts, val = synthetic.table("facts"), synthetic.table("validation")
    known = set(facts.loc[facts["known"], "fact"])
    assert known and synthetic.meta["frequency_measure"] == "exposures"
    for method in ("dla", "attribution_patching"):
        for mode in ("zero", "mean"):
            mine = val[(val["method"] == method) & (val["mode"] == mode)]
            assert set(mine["fact"]) == known  # one row per known fact, none for the others
    assert (val["n_set"] == 4).all() and (val["margin_clean"] > 0).all()
    mem = synthetic.table("memories")
    per = mem.groupby(["method", "fact"]).size()
    assert (per == 16).all()  # the ranked list reaches the largest k of the grid


def test_undefined_values_are_null_so_the_batch_store_accepts_the_result(synthetic):
    check_finite(synthetic)  # a NaN here fails a batch unit (the store reads NaN as broken numbers)
    val = synthetic.table("validation")
    assert val.loc[val["k_half_censored"], "k_half"].isna().all()
    assert val.loc[val["n_paraphrases"] == 0, "paraphrase_drop"].isna().all()


def test_summary_and_frequency_tables(synthetic):
    s = synthetic.table("summary")
    assert set(zip(s["method"], s["mode"])) == {(m, o) for m in ("dla", "attribution_patching") for o in ("zero", "mean")}
    assert (s["target_drop_median_lo"] <= s["target_drop_median"]).all()
    f = synthetic.table("frequency")
    assert set(f["y"]) == {"k_half", "target_drop", "share_top10"} and (f["x"] == "exposures").all()
    assert all(-1 <= r <= 1 and 0 <= p <= 1 for r, p in zip(f["rho"], f["p_two_sided"]))


def test_frequency_link_ranks_censored_k_above_every_k():
    facts = [{"fact": i, "exposures": float(i)} for i in range(5)]
    val = [{"method": "m", "mode": "zero", "fact": i, "k_half": 2.0 ** i if i < 4 else math.nan,
            "k_half_censored": i == 4, "target_drop": 0.5} for i in range(5)]
    rows = localization.frequency_link(facts, val, [], "exposures", 0)
    (k,) = [r for r in rows if r["y"] == "k_half"]
    assert k["rho"] == pytest.approx(1.0)  # the censored fact (most exposures) ranks last, not dropped


def test_ground_truth_scores_every_method_against_the_planted_neurons():
    p = groundtruth.GroundTruthParams(methods=["dla"], n_facts=2, neurons_per_fact=4, steps=60, inject_steps=20,
                                      others=10)
    res = ANALYSES["localization_groundtruth"].fn(None, UnitData(), p, 0)
    s = res.table("summary").set_index("method")
    assert set(s.index) == {"dla", "random"} and (s["k"] == 4).all()
    assert s.loc["random", "chance_precision"] == pytest.approx(4 / res.meta["eligible"])
    inj = res.table("injections")
    assert list(inj["fact"]) == [0, 1] and inj["weights_ok"].all()
    r = res.table("rankings")
    assert len(r) == 4 and r["precision"].between(0, 1).all()
