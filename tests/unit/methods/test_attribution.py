"""Direct logit attribution per FFN memory: parity with whole-layer effects and the logits."""

import pytest
import torch

from ffnmem.methods.attribution import answer_directions, direct_effects, neuron_logit_attribution


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_neurons_plus_bias_sum_to_layer_effect(fixture, request):
    wb = request.getfixturevalue(fixture)
    fx = direct_effects(wb, ["hello world", "abc"], [wb.encode("x", prepend_bos=False)[0]] * 2)
    torch.testing.assert_close(fx.neurons.sum(-1) + fx.mlp_bias, fx.mlp, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_heads_plus_bias_sum_to_attention_layer_effect(fixture, request):
    wb = request.getfixturevalue(fixture)
    fx = direct_effects(wb, ["hello world"], [wb.encode("x", prepend_bos=False)[0]])
    assert fx.heads.shape == (1, wb.n_layers, wb.cfg.n_heads)
    torch.testing.assert_close(fx.heads.sum(-1) + fx.attn_bias, fx.attn, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_heads_sum_to_attention_on_smollm2(smol):
    """Grouped-query attention (9 query heads, 3 key/value heads): one effect per query head."""
    fx = direct_effects(smol, ["The capital of France is"], [smol.answer_token(" Paris")])
    assert fx.heads.shape == (1, 30, 9)
    torch.testing.assert_close(fx.heads.sum(-1) + fx.attn_bias, fx.attn, atol=1e-3, rtol=1e-3)


def test_direct_effects_reconstruct_the_logit(tiny_gated):
    """RMSNorm, no biases, no positional embedding: the logit is exactly the sum of direct effects."""
    wb = tiny_gated
    ans = wb.encode("q", prepend_bos=False)[0]
    fx = direct_effects(wb, ["some text"], [ans])
    tokens = wb.to_tokens("some text")
    _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in ("hook_embed", "ln_final.hook_scale"))
    d = answer_directions(wb, torch.tensor([ans]))
    embed = (cache["hook_embed"][:, -1] * d).sum(-1) / cache["ln_final.hook_scale"][:, -1, 0]
    b_u = wb.bridge.b_U[ans] if wb.bridge.b_U is not None else 0.0
    total = fx.mlp.sum() + fx.attn.sum() + embed.sum() + b_u
    torch.testing.assert_close(total, fx.logit[0], atol=1e-3, rtol=1e-4)


def test_pure_core_on_hand_set_weights():
    values = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    coeffs = torch.tensor([[2.0, -1.0, 0.5]])
    direction = torch.tensor([[0.0, 1.0]])
    got = neuron_logit_attribution(coeffs, values, direction, torch.tensor([[2.0]]))
    torch.testing.assert_close(got, torch.tensor([[0.0, -1.0, 0.25]]))


def test_top_returns_layer_and_neuron(tiny):
    fx = direct_effects(tiny, ["hello"], [tiny.encode("o", prepend_bos=False)[0]])
    (layer, neuron, effect), *_ = fx.top(0, 3)
    assert effect == pytest.approx(float(fx.neurons[0].max()))
    assert float(fx.neurons[0, layer, neuron]) == pytest.approx(effect)
