"""A transcoder and an SAE (eai-sparsify's Trainer) on tiny-2l layer 1's FFN.

Data: 64 windows × 64 tokens of the default corpus (BOS left out), 3/4 train, 1/4 held out;
expansion 4 (transcoder 256 latents, SAE on coefficients 1024), k=16, 4 epochs, seed 0.
Measured held-out (CPU float32): transcoder FVU 0.346 at L0 16, 0 dead latents; SAE on
coefficients FVU 0.516 at L0 16, 66 dead (6 %). Monosemanticity proxy (median entropy of the
top-10 trigger tokens): neurons 2.05 bits (5 distinct tokens), SAE latents 1.77 bits (4).
"""

import pytest

import ffnmem
from ffnmem.data.corpus import default_corpus, windows
from ffnmem.methods import sae as S


@pytest.fixture(scope="module")
def data():
    wb = ffnmem.load_model("tiny-2l", device="cpu", seed=0)
    return wb, windows(wb, default_corpus(), window=64, max_windows=64)


def test_transcoder_fvu_at_l0(data):
    wb, tokens = data
    x, y, _ = S.capture_pairs(wb, tokens, 1, target="transcoder")
    n = len(x) * 3 // 4
    coder = S.train(x[:n], y[:n], transcode=True, expansion=4, k=16, epochs=4, seed=0)
    ev = S.evaluate(coder, x[n:], y[n:])
    assert ev["l0"] == pytest.approx(16, abs=0.5)
    assert ev["fvu"] == pytest.approx(0.346, abs=0.08)
    assert ev["dead_frac"] < 0.1


def test_sae_on_coefficients_and_proxy(data):
    wb, tokens = data
    x, y, ids = S.capture_pairs(wb, tokens, 1, target="post")
    n = len(x) * 3 // 4
    coder = S.train(x[:n], y[:n], transcode=False, expansion=4, k=16, epochs=4, seed=0)
    ev = S.evaluate(coder, x[n:], y[n:])
    assert ev["fvu"] == pytest.approx(0.516, abs=0.1) and ev["l0"] <= 16
    mono = S.monosemanticity(x[n:], S.encode(coder, x[n:]), ids[n:], k=10)
    # measured: latents 1.77 bits vs neurons 2.05 bits; assert only the direction, with slack
    assert mono["latents"]["median_entropy_bits"] < mono["neurons"]["median_entropy_bits"] + 0.1
