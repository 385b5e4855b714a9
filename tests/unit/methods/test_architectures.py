"""Architecture variants: the machinery behind the causal / prefix / masked-LM comparison.

These are checks on the training machinery (equal parameter counts, which positions give a loss
term), not claims about which variant remembers more: the ordering the old claims test asserted
(causal > prefix > MLM at 250 steps) was an under-training artefact (issue 17), and issue 17 brings
the fair comparison (equal FLOPs, equal supervised tokens, convergence, several seeds).
"""

from __future__ import annotations

import dataclasses

import pytest

from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.methods.objectives import parse, trainable_params
from ffnmem.methods.training import TrainConfig, train

FACTS = FactConfig(n_entities=12, bins=(1, 4), n_values=8, seed=0)
CFG = TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=8, batch_size=32,
                  eval_every=10_000, checkpoint_every=10_000, seed=0)


@pytest.fixture(scope="module")
def runs(one_thread):
    corpus = generate(FACTS)
    return {v: train(corpus, CFG, device="cpu", progress=False, objective=parse(v)) for v in ("causal", "prefix", "mlm")}


def test_variants_have_the_same_trainable_parameters(runs):
    counts = {v: trainable_params(r.wb.bridge.original_model) for v, r in runs.items()}
    assert len(set(counts.values())) == 1, counts
    # nopos freezes the positional table: fewer trainable parameters, same shape
    nopos = train(generate(FACTS), dataclasses.replace(CFG, steps=1), device="cpu", progress=False,
                  objective=parse("causal-nopos"))
    assert trainable_params(nopos.wb.bridge.original_model) == counts["causal"] - CFG.n_ctx * CFG.d_model


def test_signal_fraction_is_every_target_the_continuation_or_the_masking_rate(runs):
    frac = {v: r.signal_tokens / r.tokens_seen for v, r in runs.items()}
    # causal: every position but the last of a row; prefix: targets after a prefix drawn uniformly
    # in [1, len - 1] (about half); mlm: the masking rate 0.15 of the real tokens (BOS never)
    assert frac["causal"] > 0.9
    assert 0.3 < frac["prefix"] < 0.7
    assert frac["mlm"] == pytest.approx(0.15, abs=0.03)
