"""Claims: FFN layers as key-value memories (Geva et al. 2021).

(a) A planted memory on a tiny native model is found: its key's top trigger is the chosen input
    token and its value's top vocabulary token is the chosen output token.
The measured claim (upper-third agreement vs shuffled pairings on SmolLM2, with its random-init
control) is defined once, in probes/claims/kv_agreement.toml.
"""

from __future__ import annotations

import torch

import ffnmem
from ffnmem.data.corpus import windows
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
