"""Integrated gradients over FFN coefficients: completeness, batching, selection, edits."""

from __future__ import annotations

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.ablation import answer_probs, make_hooks, masks_for, whole_layers
from ffnmem.methods.knowledge_neurons import edit_effects, integrated_gradients, refine_neurons, select_neurons


def test_ig_completeness_and_batching(tiny):
    prompt, ans = "hello wor", 108
    ig = integrated_gradients(tiny, prompt, ans, layers=[1], steps=64, batch_steps=64)
    ig_chunked = integrated_gradients(tiny, prompt, ans, layers=[1], steps=64, batch_steps=7)
    torch.testing.assert_close(ig, ig_chunked, atol=1e-6, rtol=1e-4)
    assert ig[0].abs().sum() == 0  # layer 0 not asked
    tokens = tiny.to_tokens(prompt)
    p = answer_probs(tiny, tokens, torch.tensor([ans]))
    p0 = answer_probs(tiny, tokens, torch.tensor([ans]),
                      make_hooks(tiny, masks_for(tiny, [whole_layers(tiny, [1])]), "zero", positions="last"))
    # IG sums to p(m) - p(0) up to the Riemann error of 64 steps
    assert float(ig.sum()) == pytest.approx(float(p - p0), rel=0.05, abs=1e-4)


def test_select_neurons():
    attr = torch.tensor([[0.0, 1.0, 0.1], [0.5, -2.0, 0.19]])
    assert select_neurons(attr, 0.2) == [(0, 1), (1, 0)]
    assert select_neurons(attr, 0.2, max_neurons=1) == [(0, 1)]
    with pytest.raises(BadInput):
        select_neurons(attr, 0.0)


def _p_with_last_position_edit(wb, prompt, ans, neurons, factor):
    """Independent reference: a hand-written hook multiplies the coefficients at the last position."""
    def hook(act, hook=None):
        act = act.clone()
        for l, n in neurons:
            act[:, -1, n] *= factor
        return act
    (layer,) = {l for l, _ in neurons}
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", hook)]):
        return float(wb.bridge(wb.to_tokens(prompt))[0, -1].float().softmax(-1)[ans])


def test_edit_effects_equal_a_manual_forward(tiny):
    neurons = [(0, 3), (0, 17)]  # layer 0: an edit at earlier positions would reach the last one through layer 1
    out = edit_effects(tiny, neurons, ("abc", 100), [("xyz", 101), ("hello", 102)], amplify=3.0)
    p0 = _p_with_last_position_edit(tiny, "abc", 100, neurons, 1.0)
    assert out["p_clean"] == pytest.approx(p0, rel=1e-5)
    assert out["p_suppressed"] == pytest.approx(_p_with_last_position_edit(tiny, "abc", 100, neurons, 0.0), rel=1e-4)
    assert out["p_amplified"] == pytest.approx(_p_with_last_position_edit(tiny, "abc", 100, neurons, 3.0), rel=1e-4)
    assert out["p_suppressed"] != pytest.approx(p0, rel=1e-4), "suppressing the neurons changed nothing"
    rel = [(_p_with_last_position_edit(tiny, q, a, neurons, 0.0) - _p_with_last_position_edit(tiny, q, a, neurons, 1.0))
           / _p_with_last_position_edit(tiny, q, a, neurons, 1.0) for q, a in (("xyz", 101), ("hello", 102))]
    assert out["unrelated_suppress_change"] == pytest.approx(sum(rel) / 2, rel=1e-3, abs=1e-7)


def test_refine_keeps_neurons_shared_by_most_prompts():
    sets = [[(1, 2), (0, 3), (1, 5)], [(0, 3), (1, 2)], [(1, 2), (0, 9)]]
    assert refine_neurons(sets, 0.7) == [(1, 2)]  # in 3/3; (0, 3) is in 2/3 < 0.7
    assert refine_neurons(sets, 0.5) == [(1, 2), (0, 3)]
    assert refine_neurons([[(0, 1), (0, 1)]], 0.7) == [(0, 1)]  # one prompt: every selected neuron
    assert refine_neurons([], 0.7) == []
    with pytest.raises(BadInput, match="share"):
        refine_neurons(sets, 1.0)
