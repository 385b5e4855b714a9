"""How FFN updates build a prediction: logit lens parity, cases, top sub-updates."""

from __future__ import annotations

import pytest
import torch

from ffnmem.methods import updates as U


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_lens_on_last_resid_is_the_model(request, fixture):
    wb = request.getfixturevalue(fixture)
    tokens = wb.to_tokens("hello there")
    logits, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
    lens = U._lens(wb, cache[f"blocks.{wb.n_layers - 1}.hook_resid_post"][0])
    assert torch.allclose(lens, logits[0], atol=1e-3, rtol=1e-4)


def test_classify():
    assert U.classify(3, 3, 7) == "keep"
    assert U.classify(3, 7, 7) == "single"
    assert U.classify(3, 5, 7) == "compose"


def test_build_prediction(tiny_gated):
    b = U.build_prediction(tiny_gated, "abcdef", top=5)
    assert len(b.layers) == tiny_gated.n_layers * 6  # BOS skipped
    assert abs(sum(b.shares().values()) - 1) < 1e-9
    assert len(b.updates) == 5 and all(set(r) >= {"layer", "neuron", "effect", "value_top_token"} for r in b.updates)
    effects = [abs(r["effect"]) for r in b.updates]
    assert effects == sorted(effects, reverse=True)
    res = U.to_result(tiny_gated, {"abcdef": b})
    assert res.tables["layers"].num_rows == len(b.layers)
    assert len(b.shares_by_layer()) == tiny_gated.n_layers


def test_top_update_effect_matches_direct_effects(tiny):
    from ffnmem.methods.attribution import direct_effects

    b = U.build_prediction(tiny, "xyz", top=3, positions="last")
    fx = direct_effects(tiny, ["xyz"], [b.final_token])
    r = b.updates[0]
    assert fx.neurons[0, r["layer"], r["neuron"]].item() == pytest.approx(r["effect"], rel=1e-4, abs=1e-6)
