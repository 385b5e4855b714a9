"""Claims: attribution methods agree where they must, find a planted fact neuron, and what they
measure on SmolLM2 (top-20 DLA ablation vs random). The causal-tracing claims are defined once, in
probes/claims/tracing.toml.

Numbers asserted on SmolLM2 were MEASURED first (fixed fact sample: the first facts of the listed
relations in data/facts, seed 0), then written here with a tolerance.
"""

from __future__ import annotations

import pytest
import torch

import ffnmem
from ffnmem.data.facts import encode_facts, load_facts
from ffnmem.methods.ablation import answer_probs, make_hooks, masks_for, summarise_drops, top_vs_random
from ffnmem.methods.attribution import direct_effects
from ffnmem.methods.knowledge_neurons import integrated_gradients
from ffnmem.methods.patching import attribution_core, attribution_patching

CLEAN, CORRUPT, PLANTED = "The cat sat on", "The dog sat on", (1, 7)


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_neuron_dla_sums_to_layer_direct_effect(fixture, request):
    wb = request.getfixturevalue(fixture)
    fx = direct_effects(wb, ["hello there", "abc"], [104, 120])
    torch.testing.assert_close(fx.neurons.sum(-1) + fx.mlp_bias, fx.mlp, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_neuron_dla_parity_smollm2(smol):
    fx = direct_effects(smol, ["The capital of France is"], [smol.answer_token(" Paris")])
    torch.testing.assert_close(fx.neurons.sum(-1) + fx.mlp_bias, fx.mlp, atol=2e-3, rtol=1e-3)


def test_attribution_patching_exact_on_linear_metric():
    g = torch.Generator().manual_seed(1)
    w, clean, corrupt = (torch.randn(2, 4, 16, generator=g) for _ in range(3))
    m = corrupt.clone().requires_grad_(True)
    (w * m).sum().backward()
    est = attribution_core(m.grad, clean, corrupt)
    true = (w * (clean - corrupt)).sum(-2)  # patching neuron i changes a linear metric by exactly this
    torch.testing.assert_close(est, true)


@pytest.fixture(scope="module")
def planted():
    """tiny-2l with neuron 7 of layer 1 planted: fires on CLEAN's last token only, writes the answer."""
    wb = ffnmem.load_model("tiny-2l", device="cpu", seed=0)
    name = "blocks.1.ln2.hook_out"
    xs = [wb.bridge.run_with_cache(wb.to_tokens(p), names_filter=lambda n: n == name)[1][name][0, -1] for p in (CLEAN, CORRUPT)]
    diff = xs[0] - xs[1]
    key = 16.0 * diff / diff.dot(diff)  # key·x_clean − key·x_corrupt = 16
    ffn = wb.ffn(1)
    answer = 300
    d = wb.W_U[:, answer] * wb.final_norm_weight()
    with torch.no_grad():
        ffn.keys[PLANTED[1]] = key
        ffn.b_in[PLANTED[1]] = -key.dot(xs[0] + xs[1]) / 2  # pre = +8 on CLEAN, −8 on CORRUPT
        ffn.values[PLANTED[1]] = 1.5 * (d - d.mean()) / (d - d.mean()).norm()
    return wb, answer


def test_planted_neuron_is_active_only_on_clean(planted):
    wb, _ = planted
    name = "blocks.1.mlp.hook_post"
    m = [wb.bridge.run_with_cache(wb.to_tokens(p), names_filter=lambda n: n == name)[1][name][0, -1, PLANTED[1]]
         for p in (CLEAN, CORRUPT)]
    assert float(m[0]) == pytest.approx(8.0, abs=0.1) and abs(float(m[1])) < 1e-3


def test_every_method_ranks_the_planted_neuron_first(planted):
    wb, answer = planted
    flat_to_pair = lambda i: (int(i) // wb.d_mlp, int(i) % wb.d_mlp)  # noqa: E731
    assert direct_effects(wb, [CLEAN], [answer]).top(0, 1)[0][:2] == PLANTED
    # zero-ablation of each neuron alone (one batch row per neuron)
    pairs = [(l, i) for l in range(wb.n_layers) for i in range(wb.d_mlp)]
    hooks = make_hooks(wb, masks_for(wb, [[p] for p in pairs]), "zero", positions="last")
    p = answer_probs(wb, wb.to_tokens(CLEAN).expand(len(pairs), -1), torch.full((len(pairs),), answer), hooks)
    assert pairs[int(p.argmin())] == PLANTED
    ig = integrated_gradients(wb, CLEAN, answer, steps=16)
    assert flat_to_pair(ig.flatten().argmax()) == PLANTED
    attr, _, _ = attribution_patching(wb, CLEAN, CORRUPT, answer)
    assert flat_to_pair(attr.flatten().argmax()) == PLANTED


@pytest.mark.slow
def test_top20_dla_ablation_vs_random_smollm2(smol):
    """Zero the top-20 DLA neurons vs 20 random ones (uniform over layers, seed 0) at the last
    position; first 5 capital + first 5 language facts. Measured: p(answer) drops by 97.2 % (top) vs
    0.18 % (random), factor ≈ 540. The random drop is tiny, so the factor is only bounded below."""
    facts = load_facts("all", relations=["capital_of", "official_language"], limit_per_relation=5)
    enc = encode_facts(smol, facts)
    rows = top_vs_random(smol, [e.fact.prompt for e in enc], [e.answer_ids[0] for e in enc], k=20, seed=0)
    s = summarise_drops(rows)
    assert s["drop_top"] == pytest.approx(0.972, abs=0.03)
    assert abs(s["drop_random"]) < 0.02
    assert s["factor"] > 100
