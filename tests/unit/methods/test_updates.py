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
    from ffnmem.methods.attribution import direct_effects

    wb = tiny_gated
    b = U.build_prediction(wb, "abcdef", top=5)
    assert len(b.layers) == wb.n_layers * 6  # BOS skipped
    logits = wb.bridge(wb.to_tokens("abcdef"))[0]
    assert b.final_token == int(logits[-1].argmax())
    # after the last FFN the lens reads the model's own prediction at every position
    last = [r for r in b.layers if r["layer"] == wb.n_layers - 1]
    assert [r["after"] for r in last] == [wb.decode(int(logits[p].argmax())) for p in range(1, 7)]
    for r in b.layers:  # each case follows from its own row (module docstring)
        want = "keep" if r["after"] == r["before"] else "single" if r["after"] == r["dominant_token"] else "compose"
        assert r["case"] == want
    # the top sub-updates are the 5 largest |direct effects| toward the final token, over all layers
    fx = direct_effects(wb, ["abcdef"], [b.final_token]).neurons[0]
    top = fx.abs().flatten().topk(5).indices.tolist()
    assert [(r["layer"], r["neuron"]) for r in b.updates] == [divmod(i, wb.d_mlp) for i in top]
    res = U.to_result(wb, {"abcdef": b})
    assert res.tables["layers"].num_rows == len(b.layers)
    shares = dict(zip(res.table("shares")["case"], res.table("shares")["share"]))
    assert shares == pytest.approx({k: sum(r["case"] == k for r in b.layers) / len(b.layers) for k in U.CASES})
    assert [s["layer"] for s in b.shares_by_layer()] == list(range(wb.n_layers))


def test_top_update_effect_matches_direct_effects(tiny):
    from ffnmem.methods.attribution import direct_effects

    b = U.build_prediction(tiny, "xyz", top=3, positions="last")
    fx = direct_effects(tiny, ["xyz"], [b.final_token])
    r = b.updates[0]
    assert fx.neurons[0, r["layer"], r["neuron"]].item() == pytest.approx(r["effect"], rel=1e-4, abs=1e-6)
