"""Shared fixtures: tiny native models (fast, seeded) and the real SmolLM2 (cached conversion)."""

from __future__ import annotations

import os

import pytest
import torch

import ffnmem

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny():
    """2 layers, d_model 64, GELU MLP with biases, LayerNorm, byte tokenizer."""
    return ffnmem.load_model("tiny-2l", device="cpu", seed=0)


@pytest.fixture(scope="session")
def tiny_gated():
    """2 layers, d_model 64, Llama-style gated SiLU MLP, RMSNorm, rotary."""
    return ffnmem.load_model("tiny-gated", device="cpu", seed=0)


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M (converted once into FFNMEM_CACHE, then ~1 s per load)."""
    return ffnmem.load_model("smollm2-135m", device="cpu")
