"""The FFN key-value view reproduces the model's own FFN exactly, on every architecture."""

import pytest
import torch


@torch.inference_mode()
def _parity(wb, text="The capital of France is Paris."):
    tokens = wb.to_tokens(text)
    names = {f"blocks.{l}.{h}" for l in range(wb.n_layers) for h in ("mlp.hook_post", "hook_mlp_out", "ln2.hook_out")}
    _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    out_err = coeff_err = 0.0
    for l in range(wb.n_layers):
        ffn = wb.ffn(l)
        out = cache[f"blocks.{l}.hook_mlp_out"]
        out_err = max(out_err, float((ffn.output(cache[ffn.coeff_hook]) - out).abs().max() / out.abs().max()))
        post = cache[ffn.coeff_hook]
        coeff_err = max(coeff_err, float((ffn.coefficients(cache[f"blocks.{l}.ln2.hook_out"]) - post).abs().max()
                                         / post.abs().max()))
    return out_err, coeff_err


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gated"])
def test_parity_native(fixture, request):
    wb = request.getfixturevalue(fixture)
    out_err, coeff_err = _parity(wb)
    assert out_err < 1e-5 and coeff_err < 1e-5


def test_views_have_the_right_shapes(tiny, tiny_gated):
    f = tiny.ffn(1)
    assert f.keys.shape == f.values.shape == (tiny.d_mlp, tiny.d_model)
    assert not f.gated and f.b_in is not None and f.b_out is not None
    g = tiny_gated.ffn(0)
    assert g.gated and g.gates.shape == (tiny_gated.d_mlp, tiny_gated.d_model) and g.b_out is None


def test_views_are_live_weights_not_copies(tiny):
    assert tiny.ffn(0).values.data_ptr() == tiny.bridge.blocks[0].mlp.W_out.data_ptr()


def test_negative_layer_counts_from_top(tiny):
    assert tiny.ffn(-1).layer == tiny.n_layers - 1


@pytest.mark.slow
def test_parity_smollm2(smol):
    out_err, coeff_err = _parity(smol)
    assert out_err < 1e-4 and coeff_err < 1e-4
    assert smol.ffn(0).gated and smol.d_mlp == 1536 and smol.n_layers == 30
