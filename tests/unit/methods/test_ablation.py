"""Ablation hooks: zero/mean/resample/scale replace exactly the chosen coefficients."""

from __future__ import annotations

import pytest
import torch

from ffnmem.methods.ablation import (answer_probs, make_hooks, masks_for, random_neurons, reference_coefficients,
                                     summarise_drops, top_vs_random, whole_layers)
from ffnmem.core.errors import BadInput


def test_zero_whole_layer_matches_capture(tiny):
    tokens = tiny.to_tokens("hello world")
    seen = {}
    hooks = make_hooks(tiny, masks_for(tiny, [whole_layers(tiny, [1])]), "zero")
    hooks.append(("blocks.1.hook_mlp_out", lambda a, hook=None: seen.setdefault("out", a.clone())))
    with torch.inference_mode(), tiny.bridge.hooks(fwd_hooks=hooks):
        tiny.bridge(tokens)
    b_out = tiny.ffn(1).b_out
    torch.testing.assert_close(seen["out"][0], b_out.expand_as(seen["out"][0]), atol=1e-5, rtol=0)


def test_mean_and_resample_are_seeded(tiny):
    tokens = tiny.to_tokens(["abcdefgh", "ijklmnop"])
    ref = reference_coefficients(tiny, tokens, [0])
    masks = masks_for(tiny, [[(0, 3), (0, 5)]])
    ans = torch.tensor([10, 10])
    clean = answer_probs(tiny, tokens, ans)
    for mode in ("mean", "resample"):
        p1 = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, mode, reference=ref, seed=1))
        p2 = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, mode, reference=ref, seed=1))
        torch.testing.assert_close(p1, p2)
        assert not torch.allclose(p1, clean), f"{mode} ablation changed nothing"
    p_other = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, "resample", reference=ref, seed=2))
    assert not torch.allclose(p_other, p1), "resampling ignores its seed"
    with pytest.raises(BadInput, match="needs reference"):
        make_hooks(tiny, masks, "mean")
    with pytest.raises(BadInput, match="unknown ablation mode"):
        make_hooks(tiny, masks, "delete")


def test_random_neurons_seeded(tiny):
    a = random_neurons(tiny, 5, torch.Generator().manual_seed(0))
    assert a == random_neurons(tiny, 5, torch.Generator().manual_seed(0)) and len(set(a)) == 5


def test_top_vs_random_rows(tiny):
    rows = top_vs_random(tiny, ["abc", "xyz"], [100, 101], k=4)
    assert len(rows) == 2 and set(summarise_drops(rows)) == {"drop_top", "drop_random", "factor"}
