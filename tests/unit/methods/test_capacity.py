"""Capacity estimator, fits, checks and a quick sweep end to end (issue 16)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ffnmem.data.synthetic import FactConfig, generate, noisy_entropy_bits
from ffnmem.methods import capacity as cap
from ffnmem.methods import capacity_fit as cf
from ffnmem.methods.training import TrainConfig


def _rows(losses, attribute="a", ce=None):
    return [{"attribute": attribute, "loss_bits": l, "ce_bits": l if ce is None else ce[i]} for i, l in enumerate(losses)]


def test_unclipped_bits_count_unknown_facts_against_the_sum():
    vs = {"a": [str(i) for i in range(8)]}  # log2|V| = 3
    kb = cap.knowledge_bits(_rows([0.0, 1.0, 5.0, 7.0]), vs)
    assert kb["bits"] == pytest.approx(3 + 2 - 2 - 4)
    assert kb["bits_clipped"] == pytest.approx(3 + 2)
    assert kb["max_bits"] == kb["ceiling"] == pytest.approx(12)
    assert kb["bits_azl"] == pytest.approx(kb["bits"])  # mean loss per attribute: linear, same rows


def test_ceiling_accounts_for_the_data_noise_tiny_preset_figures():
    # tiny preset: 140 entities × 4 attributes, |V| = 24, 5% value noise (issue 16: 2,291 not 2,568)
    vs = {a: [str(i) for i in range(24)] for a in "abcd"}
    h = noisy_entropy_bits(0.05, 24)
    rows = [r for a in "abcd" for r in _rows([h] * 140, a)]
    kb = cap.knowledge_bits(rows, vs, 0.05)
    assert kb["max_bits"] == pytest.approx(2568, abs=1)
    assert kb["ceiling"] == pytest.approx(2291, abs=1)
    assert kb["bits"] == pytest.approx(kb["ceiling"])  # CE = H: every fact learned, nothing more to store


def test_ce_and_true_value_loss_differ_under_noise():
    vs = {"a": [str(i) for i in range(4)]}
    kb = cap.knowledge_bits(_rows([0.5, 0.5], ce=[1.0, 1.0]), vs, 0.1)
    assert kb["bits"] == pytest.approx(2 * (2 - 1.0)) and kb["bits_true"] == pytest.approx(2 * (2 - 0.5))


def test_fit_recovers_c_on_synthetic_numbers():
    rng = np.random.default_rng(0)
    params = [500, 1500, 3000, 6000, 12000]
    rows = [{"seed": s, "params_non_embedding": p, "bits": 1.3 * p * (1 + 0.05 * rng.standard_normal())}
            for s in range(4) for p in params]
    fit = cf.fit_capacity(rows)
    assert fit["c"] == pytest.approx(1.3, abs=0.05)
    assert fit["c_lo"] < 1.3 < fit["c_hi"] and fit["n_seeds"] == 4
    assert fit["peak_ratio"] == pytest.approx(1.3, abs=0.1) and fit["peak_ratio_params"] in params
    assert cf.fit_capacity([r for r in rows if r["seed"] == 0])["c_lo"] is None  # one seed: no interval


def test_steps_check_sees_a_rise_and_its_absence():
    rng = np.random.default_rng(1)
    base = rng.normal(2, 1, 500)
    rows = [{"size": "s", "seed": 0, "steps": 10, "per_fact_bits": base.tolist()}]
    flat = cf.steps_check(rows, [{"size": "s", "seed": 0, "steps": 20, "per_fact_bits": (base + rng.normal(0, 0.1, 500)).tolist()}])
    up = cf.steps_check(rows, [{"size": "s", "seed": 0, "steps": 20, "per_fact_bits": (base + 0.5).tolist()}])
    assert not flat[0]["still_rising"] and flat[0]["ratio_lo"] < 1 < flat[0]["ratio_hi"]
    assert up[0]["still_rising"] and up[0]["gain_lo"] > 0


def test_scaling_fit_recovers_the_law():
    n = np.array([300, 1000, 3000, 10000, 30000.0])
    y = 0.4 + 50 * n ** -0.6
    f = cf.scaling_fit(n, y)
    assert f["H"] == pytest.approx(0.4, abs=0.02) and f["alpha"] == pytest.approx(0.6, abs=0.02)
    g = cf.scaling_fit(n, y, h=0.4)
    assert g["alpha"] == pytest.approx(0.6, abs=1e-3) and g["A"] == pytest.approx(50, rel=1e-2)


def test_preset_tables_exceed_twice_two_bits_per_param_at_every_size():
    from ffnmem.methods.training import preset

    for name in ("capacity-100x", "capacity-1000x"):
        fcfg, _ = preset(name)
        table = fcfg.n_entities * len(fcfg.attributes) * math.log2(fcfg.n_values)
        sizes = cap.SWEEPS[name].sizes
        assert all(table >= 2 * 2 * cap.non_embedding_params(s) for s in sizes)
    p = [cap.non_embedding_params(s) for s in cap.SWEEPS["capacity-100x"].sizes]
    assert len(p) >= 5 and p[-1] / p[0] >= 20


def test_quick_sweep_end_to_end_resumes_from_its_records(tmp_path, monkeypatch):
    corpus = generate(FactConfig(n_entities=12, n_values=8, bins=(6,), templates_per_attribute=4, first_names=5,
                                 last_names=6))
    base = TrainConfig(n_ctx=48, n_heads=2, steps=1, batch_size=8, lr=1e-2, warmup=1, packing="none")
    spec = cap.Sweep(sizes=(cap.Size(1, 4),), check=(cap.Size(1, 4),))
    rows, checks = cap.sweep(corpus, base, spec, [0, 1], run_dir=tmp_path, progress=False, device="cpu")
    assert [(r["size"], r["seed"]) for r in rows] == [("L1-d4", 0), ("L1-d4", 1)]
    r = rows[0]
    assert r["params_non_embedding"] == cap.non_embedding_params(cap.Size(1, 4))
    assert r["params_all"] > r["params_non_embedding"] and r["n_facts"] == 48
    assert r["steps"] == 9 and checks[0]["steps"] == 18  # one pass = 72 documents / 8; the check: 2×
    assert r["ceiling"] == pytest.approx(48 * 3) and r["bits_clipped"] >= r["bits"]
    assert (tmp_path / "L1-d4" / "seed1" / cap.RECORD).exists()
    assert cf.steps_check(rows, checks)[0]["steps_long"] == 18

    def refuse(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(cap, "train", refuse)
    again, _ = cap.sweep(corpus, base, spec, [0, 1], run_dir=tmp_path, progress=False, device="cpu")
    assert [a["bits"] for a in again] == [r["bits"] for r in rows]
    with pytest.raises(AssertionError, match="trained again"):  # a changed setting is a new run
        cap.sweep(corpus, dataclasses.replace(base, lr=2e-2), spec, [0], run_dir=tmp_path, check=False,
                  progress=False, device="cpu")


def test_passes_multiply_the_steps_and_reuse_the_check_run_of_fewer_passes(tmp_path, monkeypatch):
    corpus = generate(FactConfig(n_entities=12, n_values=8, bins=(6,), templates_per_attribute=4, first_names=5,
                                 last_names=6))
    base = TrainConfig(n_ctx=48, n_heads=2, steps=1, batch_size=8, lr=1e-2, warmup=1, packing="none")
    spec = cap.Sweep(sizes=(cap.Size(1, 4),), check=(cap.Size(1, 4),))
    _, checks = cap.sweep(corpus, base, spec, [0], run_dir=tmp_path, progress=False, device="cpu")
    assert (tmp_path / "L1-d4-steps×2" / "seed0" / cap.RECORD).exists()

    trained = []
    real_train = cap.train

    def counting_train(corpus, cfg, *a, **k):
        trained.append(cfg.steps)
        return real_train(corpus, cfg, *a, **k)

    monkeypatch.setattr(cap, "train", counting_train)
    rows, long = cap.sweep(corpus, base, spec, [0], run_dir=tmp_path, passes=2, progress=False, device="cpu")
    assert trained == [36]  # the 2-pass base is the 1-pass check, read back; only its 4× check trains
    assert rows[0]["steps"] == 18 and rows[0]["bits"] == checks[0]["bits"] and rows[0]["passes"] == 2
    assert long[0]["steps"] == 36 and (tmp_path / "L1-d4-steps×4" / "seed0").is_dir()
    with pytest.raises(cap.BadInput, match="at least 1"):
        cap.sweep(corpus, base, spec, [0], passes=0, progress=False)

    # the curve gathers every multiplier trained under the folder, whichever call trained it
    from ffnmem.jobs.capacity import curve_checks, steps_curve
    from ffnmem.viz import plot_steps_curve

    curve = steps_curve(tmp_path, corpus)
    assert [(r["size"], r["steps_factor"], r["steps"]) for r in curve] == [("L1-d4", 1, 9), ("L1-d4", 2, 18),
                                                                          ("L1-d4", 4, 36)]
    assert [r["exposures_total"] for r in curve] == [6, 12, 24]
    assert [(c["factor_base"], c["factor_long"]) for c in curve_checks(curve, n_boot=20)] == [(1, 2), (2, 4)]
    other = generate(FactConfig(n_entities=13, n_values=8, bins=(6,), templates_per_attribute=4, first_names=5,
                                last_names=6))
    assert steps_curve(tmp_path, other) == []  # another table's runs are not this curve
    assert plot_steps_curve(curve).axes[0].get_xlabel() == "exposures per fact"


def test_select_sizes_keeps_the_named_and_a_check_among_them():
    spec = cap.SWEEPS["capacity-100x"]
    one = cap.select_sizes(spec, ["L2-d10"])
    assert [s.name for s in one.sizes] == ["L2-d10"] and [s.name for s in one.check] == ["L2-d10"]
    two = cap.select_sizes(spec, ["L2-d22", "L1-d6"])
    assert [s.name for s in two.sizes] == ["L1-d6", "L2-d22"] and two.check == spec.check
    assert cap.select_sizes(spec, None) is spec
    with pytest.raises(cap.BadInput, match="no size 'L9-d1'"):
        cap.select_sizes(spec, ["L9-d1"])
