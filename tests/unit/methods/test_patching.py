"""Attribution patching: exact on a linear metric; batched activation patching equals single rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.patching import activation_patching, attribution_core, attribution_patching, compare


def test_attribution_equals_activation_patching_when_linear():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 8, generator=g)  # metric(m) = Σ w ⊙ m + 3: linear in the coefficients
    clean, corrupt = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    m = corrupt.clone().requires_grad_(True)
    ((w * m).sum() + 3).backward()
    est = attribution_core(m.grad, clean, corrupt)
    for i in range(8):
        patched = corrupt.clone()
        patched[:, i] = clean[:, i]
        true = (w * patched).sum() - (w * corrupt).sum()
        assert float(est[i]) == pytest.approx(float(true), abs=1e-5)


def _manual_patch(wb, clean, corrupt, answer, layer, neuron) -> float:
    """Independent reference: write the clean coefficient of one neuron (every position) into the corrupt run."""
    name = f"blocks.{layer}.mlp.hook_post"
    with torch.inference_mode():
        _, cache = wb.bridge.run_with_cache(wb.to_tokens(clean), names_filter=lambda n: n == name)
        base = wb.bridge(wb.to_tokens(corrupt))[0, -1, answer]

        def write(act, hook=None):
            act = act.clone()
            act[:, :, neuron] = cache[name][:, :, neuron]
            return act
        with wb.bridge.hooks(fwd_hooks=[(name, write)]):
            patched = wb.bridge(wb.to_tokens(corrupt))[0, -1, answer]
    return float(patched - base)


def test_activation_patching_batched_equals_single_and_a_manual_patch(tiny):
    neurons = [(0, 1), (1, 5), (1, 7), (0, 200)]
    batched = activation_patching(tiny, "the cat", "the dog", 110, neurons, batch_size=4)
    single = torch.cat([activation_patching(tiny, "the cat", "the dog", 110, [n]) for n in neurons])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    want = torch.tensor([_manual_patch(tiny, "the cat", "the dog", 110, l, n) for l, n in neurons])
    torch.testing.assert_close(batched, want, atol=1e-5, rtol=1e-4)
    assert want.abs().max() > 1e-3, "no neuron's patch moved the metric: the comparison would be vacuous"


def test_compare_samples_top_and_random_and_correlates_what_it_returns(tiny):
    out = compare(tiny, "the cat", "the dog", 110, n_sample=16, seed=2)
    attr = out["attribution"]
    assert attr.shape == (2, tiny.d_mlp)
    idx = [l * tiny.d_mlp + n for l, n in out["neurons"]]
    assert len(set(idx)) == 16
    torch.testing.assert_close(out["estimate"], attr.flatten()[idx])
    # the first half are the 8 largest |estimates|
    assert set(idx[:8]) == set(attr.flatten().abs().topk(8).indices.tolist())
    # "true" is the activation-patching effect of those very neurons
    for j in (0, 9):
        assert float(out["true"][j]) == pytest.approx(_manual_patch(tiny, "the cat", "the dog", 110,
                                                                    *out["neurons"][j]), abs=1e-5, rel=1e-4)
    want = np.corrcoef(out["estimate"].numpy(), out["true"].numpy())[0, 1]
    assert out["pearson"] == pytest.approx(want, abs=1e-5)
    with pytest.raises(BadInput, match="same token length"):
        attribution_patching(tiny, "the cat", "a dog", 110)
