"""Interventions and metrics: each replaces exactly what it says, on hand-built tensors and a tiny model."""

from __future__ import annotations

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.methods.interventions import (
    AnswerLogit,
    AnswerProb,
    LogitDiff,
    Margin,
    Mean,
    Noise,
    Resample,
    Restore,
    Scale,
    Zero,
    run_metric,
    unit_intervention,
)

ACT = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4) + 1  # (batch, pos, d)
MASK = torch.tensor([[True, False, False, True], [False, True, False, False]])


def _changed(out):
    return (out != ACT).nonzero().tolist()


def test_zero_and_scale_touch_only_masked_units():
    out = Zero(MASK)(ACT)
    assert _changed(out) == [[0, p, u] for p in range(3) for u in (0, 3)] + [[1, p, 1] for p in range(3)]
    assert out[MASK[:, None, :].expand_as(ACT)].eq(0).all()
    last = Zero(MASK, "last")(ACT)
    assert _changed(last) == [[0, 2, 0], [0, 2, 3], [1, 2, 1]]
    torch.testing.assert_close(Scale(MASK, "all", 2.0)(ACT)[0, :, 0], 2 * ACT[0, :, 0])
    one_row = Zero(MASK[:1])(ACT)  # one mask row applies to every batch row
    assert one_row[:, :, 0].eq(0).all() and one_row[:, :, 1].ne(0).all()
    with pytest.raises(BadInput, match="positions"):
        Zero(MASK, "first")


def test_mean_and_resample_replace_with_reference_values():
    ref = torch.tensor([[10.0, 20, 30, 40], [50, 60, 70, 80]])
    out = Mean(MASK, "all", ref.mean(0))(ACT)
    assert out[0, :, 0].eq(30).all() and out[0, :, 3].eq(60).all() and out[1, :, 1].eq(40).all()
    a = Resample(MASK, "all", ref, torch.Generator().manual_seed(0))(ACT)
    b = Resample(MASK, "all", ref, torch.Generator().manual_seed(0))(ACT)
    torch.testing.assert_close(a, b)
    assert set(a[0, :, 0].tolist()) <= {10.0, 50.0} and set(a[1, :, 1].tolist()) <= {20.0, 60.0}
    draws = {tuple(Resample(MASK, "all", ref, torch.Generator().manual_seed(s))(ACT)[0, :, 0].tolist())
             for s in range(8)}
    assert len(draws) > 1, "resampling ignores its generator"
    with pytest.raises(BadInput, match="reference"):
        unit_intervention("mean", MASK)
    with pytest.raises(BadInput, match="unknown ablation mode"):
        unit_intervention("delete", MASK)


def test_noise_adds_on_the_span_and_cycles_samples():
    noise = torch.stack([torch.full((1, 4), 100.0), torch.full((1, 4), 200.0)])  # (samples=2, span=1, d)
    act = torch.zeros(4, 3, 4)
    out = Noise(noise, (1, 2))(act)
    assert out[:, 0].eq(0).all() and out[:, 2].eq(0).all()
    assert out[:, 1, 0].tolist() == [100.0, 200.0, 100.0, 200.0]


def test_restore_writes_clean_vectors_or_units():
    clean = torch.full((1, 3, 4), -1.0)
    pos_mask = torch.tensor([[False, True, False], [False, False, False]])
    out = Restore(clean, pos_mask)(ACT)
    assert out[0, 1].eq(-1).all() and _changed(out) == [[0, 1, u] for u in range(4)]
    unit_mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    unit_mask[1, :, 2] = True
    assert _changed(Restore(clean, unit_mask)(ACT)) == [[1, p, 2] for p in range(3)]


def test_metrics_on_hand_built_logits():
    last = torch.tensor([[2.0, 0.0, -1.0, 1.0], [0.0, 3.0, 0.0, 0.0]])
    ans = torch.tensor([0, 1])
    torch.testing.assert_close(AnswerProb()(last, ans), last.softmax(-1)[[0, 1], [0, 1]])
    torch.testing.assert_close(AnswerLogit()(last, ans), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(LogitDiff(3)(last, ans), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(LogitDiff([2, 0])(last, ans), torch.tensor([3.0, 3.0]))
    # the answer is left out of its own alternatives
    torch.testing.assert_close(Margin([0, 1, 2])(last, ans), torch.tensor([2.0 - (-0.5), 3.0 - 0.0]))
    torch.testing.assert_close(Margin([[3], [0, 2]])(last, ans), torch.tensor([1.0, 3.0]))
    with pytest.raises(BadInput, match="alternative"):
        Margin([0])(last[:1], ans[:1])


def test_run_metric_applies_the_hooks(tiny):
    tokens = tiny.to_tokens(["hello world", "hello there"])
    ans = torch.tensor([5, 6])
    clean = run_metric(tiny, tokens, ans, AnswerLogit())
    zero_all = Zero(torch.ones(1, tiny.d_mlp, dtype=torch.bool))
    ablated = run_metric(tiny, tokens, ans, AnswerLogit(), [(hook_name("post", 1), zero_all)])
    assert not torch.allclose(clean, ablated)
    with torch.inference_mode():
        ref = tiny.bridge(tokens)[:, -1]
    torch.testing.assert_close(clean, ref[[0, 1], [5, 6]].float())


def test_the_unit_intervention_base_cannot_be_used_alone():
    from ffnmem.methods.interventions import UnitIntervention

    with pytest.raises(TypeError, match="abstract"):
        UnitIntervention(MASK)
