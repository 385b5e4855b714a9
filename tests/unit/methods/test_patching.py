"""Attribution patching: exact on a linear metric; batched activation patching equals single rows."""

from __future__ import annotations

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


def test_activation_patching_batched_equals_single(tiny):
    neurons = [(0, 1), (1, 5), (1, 7), (0, 200)]
    batched = activation_patching(tiny, "the cat", "the dog", 110, neurons, batch_size=4)
    single = torch.cat([activation_patching(tiny, "the cat", "the dog", 110, [n]) for n in neurons])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_compare_runs_and_length_check(tiny):
    out = compare(tiny, "the cat", "the dog", 110, n_sample=16)
    assert out["attribution"].shape == (2, tiny.d_mlp) and -1 <= out["pearson"] <= 1
    with pytest.raises(BadInput, match="same token length"):
        attribution_patching(tiny, "the cat", "a dog", 110)
