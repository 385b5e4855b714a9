"""Claims: FFN layers as key-value memories (Geva et al. 2021).

(a) A planted memory on a tiny native model is found: its key's top trigger is the chosen input
    token and its value's top vocabulary token is the chosen output token.
(b) On SmolLM2 over a slice of the default corpus, key-value agreement (value top-10 tokens contain
    the next token of one of the key's top-10 trigger examples) in the upper third of layers beats
    a shuffled key-value pairing; in the lower layers it does not.
"""

from __future__ import annotations

import pytest
import torch

import ffnmem
from ffnmem.data.corpus import default_corpus, windows
from ffnmem.methods import triggers as T
from ffnmem.methods.keyvalue import value_tokens


def test_planted_memory_is_found():
    wb = ffnmem.load_model("tiny-2l", device="cpu", seed=0)
    trig, target, layer, j = wb.answer_token("Q"), wb.answer_token("z"), 1, 42
    d = torch.zeros(wb.d_model)
    d[0] = 1.0
    with torch.no_grad():
        wb.bridge.W_E[trig] += 40.0 * d  # the chosen token carries a strong, private direction
        wb.ffn(layer).keys[j] = 4.0 * d
        wb.ffn(layer).b_in[j] = -2.0
        wb.ffn(layer).values[j] = 3.0 * wb.W_U[:, target] / wb.W_U[:, target].norm()
    text = "The quick brown fox jumps over the lazy dog. Quiet Queens quote quaint Quakers. " * 6
    tokens = windows(wb, [text], window=48)
    tr = T.mine(wb, tokens, [layer], k=5, progress=False)
    assert wb.decode(int(tr.trigger_ids(layer)[0, j])) == "Q"
    assert (tr.trigger_ids(layer)[:, j] == trig).all()  # every top-5 example is a 'Q'
    proj = value_tokens(wb, layer, [j], k=3)
    assert int(proj.top_ids[0, 0]) == target


@pytest.mark.slow
def test_smollm2_agreement_rises_in_upper_layers(smol):
    # 48 windows × 96 tokens of the default corpus (~4.6k tokens, ~30 s on one CPU core).
    tokens = windows(smol, default_corpus(), window=96, max_windows=48)
    lower, upper = [0, 1, 2], [24, 26, 28]
    tr = T.mine(smol, tokens, lower + upper, k=10, progress=False)
    ag = T.agreement_by_layer(smol, tr, value_k=10, n_triggers=10, n_shuffles=5, seed=0)
    bands = ag.bands(smol.n_layers)
    (up_obs, up_base), (lo_obs, lo_base) = bands["upper"], bands["lower"]
    # Measured (Nov 2026, CPU float32): upper 2.91 % vs shuffled 0.94 % (3.1×);
    # lower 4.77 % vs 4.71 % (1.0×): no key-value agreement beyond chance in the lowest layers.
    assert up_obs == pytest.approx(0.0291, abs=0.01)
    assert up_obs - up_base > 0.01 and up_obs / up_base > 2.0
    for layer, obs, base in zip(ag.layers, ag.observed, ag.baseline):
        if layer in upper:
            assert obs > base, f"layer {layer}: {obs:.4f} <= baseline {base:.4f}"
    assert 0.7 < lo_obs / lo_base < 1.5
    # Note the lower layers' baseline is itself high (~4.7 %): their values promote frequent tokens
    # that are often the next token anywhere, so raw agreement there is not evidence of memory.
