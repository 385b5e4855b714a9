"""A feature planted in a tiny model is found by probes, above the control task.

Planted: the five vowel tokens carry a private embedding direction, and neuron 42 of layer 1 reads
it (key 4·d, bias −2), so it fires only on vowels. Task: does the prompt end in a vowel (200 random
6-letter prompts, balanced). Control (Hewitt & Liang): a random label per final letter.
Measured with an L1 probe (C=0.05, 5-fold CV): accuracy 1.00 at layer 1's coefficients, control
0.72 (majority 0.50), selectivity 0.28; the sparse probe's top unit is neuron 42 (weight 0.88, next
0.47). Note the control is well above chance: with only 26 word types a probe can memorise them.
"""

import warnings

import numpy as np
import torch

import ffnmem
from ffnmem.methods import probes as P


def test_planted_feature_is_probed_and_named():
    wb = ffnmem.load_model("tiny-2l", device="cpu", seed=0)
    layer, j, vowels = 1, 42, "aeiou"
    d = torch.zeros(wb.d_model)
    d[0] = 1.0
    with torch.no_grad():
        for ch in vowels:
            wb.bridge.W_E[wb.answer_token(ch)] += 40.0 * d
        wb.ffn(layer).keys[j] = 4.0 * d
        wb.ffn(layer).b_in[j] = -2.0
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    consonants = [c for c in letters if c not in vowels]
    prompts = ["".join(rng.choice(letters, size=5)) + rng.choice(list(vowels) if k % 2 else consonants)
               for k in range(200)]
    labels = np.array([p[-1] in vowels for p in prompts]).astype(int)
    hook = f"blocks.{layer}.mlp.hook_post"
    acts, _ = P.representations(wb, prompts, [hook])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (row,) = P.layer_curve(acts, labels, [p[-1] for p in prompts], cv=5, probe=P.SparseProbe(C=0.05))
        sparse = P.SparseProbe(C=0.05).fit(acts[hook].numpy(), labels)
    assert row["accuracy"] >= 0.97
    assert row["control"] < 0.85 and row["selectivity"] >= 0.15
    top = sparse.top_neurons(2)
    assert top[0][0] == j and top[0][1] > 1.5 * top[1][1]
