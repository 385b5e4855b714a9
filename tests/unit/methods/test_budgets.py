"""Fair-comparison budgets: the step arithmetic, the plateau rule on hand-made curves, and train()
stopping where its monitor says."""

from __future__ import annotations

import dataclasses

import pytest

from ffnmem.core.errors import BadInput
from ffnmem.methods.budgets import PlateauMonitor, Rates, parse_budgets, parse_seeds, plateaued, steps_for

# the tiny preset's measured rates (methods.fair.measure_rates, seed 0): causal, masked LM, encoder-decoder
CAUSAL = Rates(tokens=991.0, signal=959.0, flops=786_964_992.0)
MLM = Rates(tokens=991.0, signal=145.625, flops=786_964_992.0)
ENCDEC = Rates(tokens=1322.75, signal=384.0, flops=585_098_815.5)


def test_supervised_budget_gives_every_arm_the_reference_loss_bearing_tokens():
    # 959 x 300 = 287,700 supervised tokens; the masked LM gets 145.625 a step: ceil(1975.6) = 1976
    assert steps_for("supervised", CAUSAL, 300, MLM) == 1976
    assert steps_for("supervised", CAUSAL, 300, ENCDEC) == 750  # 287,700 / 384 = 749.2
    assert steps_for("supervised", CAUSAL, 300, CAUSAL) == 300
    assert 1976 * MLM.signal >= 300 * CAUSAL.signal > 1975 * MLM.signal


def test_flops_budget_gives_every_arm_the_reference_training_flops():
    assert steps_for("flops", CAUSAL, 300, MLM) == 300  # same parameters, same tokens a step
    assert steps_for("flops", CAUSAL, 300, ENCDEC) == 404  # 2.3609e11 / 5.851e8 = 403.5
    assert steps_for("steps", CAUSAL, 300, ENCDEC) == 300
    assert steps_for("convergence", CAUSAL, 300, MLM) == 300  # the cap is the convergence budget's own


def test_a_budget_the_arm_cannot_meet_is_refused():
    with pytest.raises(BadInput, match="cannot meet a supervised budget"):
        steps_for("supervised", CAUSAL, 300, dataclasses.replace(MLM, signal=0.0))
    with pytest.raises(BadInput, match="unknown budget 'tokens'"):
        steps_for("tokens", CAUSAL, 300, MLM)


def test_plateau_rule_on_hand_made_curves():
    falling = [4.0, 2.0, 1.0, 0.5, 0.25, 0.125]
    assert not plateaued(falling, 0.01, 3)
    flat = [4.0, 2.0, 1.0, 0.999, 0.995, 0.994]  # the last 3 improve the best (1.0) by 0.6% < 1%
    assert plateaued(flat, 0.01, 3)
    assert not plateaued(flat, 0.001, 3)  # a 0.1% tolerance still counts the 0.6%
    assert not plateaued(flat[:3], 0.01, 3)  # too few checks to judge
    worse = [1.0, 0.5, 0.6, 0.7, 0.55]  # overfitting: no new best in 3 checks
    assert plateaued(worse, 0.0, 3)


def test_monitor_stops_at_the_first_plateaued_check():
    curve = iter([3.0, 1.5, 1.0, 0.9, 0.899, 0.898, 0.897, 0.5])
    mon = PlateauMonitor(lambda model: next(curve), every=50, tol=0.01, patience=3)
    stops = [mon(step, None) for step in range(50, 400, 50)]
    assert stops == [False, False, False, False, False, False, True]
    assert mon.stopped_at == 350 and [s for s, _ in mon.history] == list(range(50, 400, 50))


def test_train_stops_where_the_monitor_fires():
    from ffnmem.data.synthetic import FactConfig, generate
    from ffnmem.methods.objectives import parse
    from ffnmem.methods.training import TrainConfig, train

    corpus = generate(FactConfig(n_entities=8, bins=(1, 2), n_values=4, seed=0))
    cfg = TrainConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=64, steps=40, batch_size=4,
                      eval_every=1000, checkpoint_every=1000)
    seen = []

    class Fire:
        every = 5

        def __call__(self, step, model):
            seen.append((step, model.training))
            return step == 15

    run = train(corpus, cfg, device="cpu", progress=False, objective=parse("causal"), monitor=Fire())
    assert run.step == 15 and [s for s, _ in seen] == [5, 10, 15]
    assert not any(training for _, training in seen)  # checked in eval mode


def test_budget_and_seed_lists_parse_or_refuse_in_one_line():
    assert parse_budgets(" supervised, convergence ") == ("supervised", "convergence")
    assert parse_seeds("0,1,2") == (0, 1, 2)
    for bad, msg in (("", "names no budget"), ("flops,x", "unknown budget 'x'"), ("steps,steps", "twice")):
        with pytest.raises(BadInput, match=msg):
            parse_budgets(bad)
    for bad, msg in (("", "names no seed"), ("1.5", "not a comma list"), ("3,3", "twice"), ("-2", "must be in")):
        with pytest.raises(BadInput, match=msg):
            parse_seeds(bad)
