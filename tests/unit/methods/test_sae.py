import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods import sae as S


def test_token_entropy_counts():
    ids = torch.tensor([[1, 2], [1, 3], [1, 4], [1, 5]])
    ent = S.token_entropy(ids)
    assert ent[0] == 0 and ent[1] == pytest.approx(2.0)


def test_top_examples_match_topk():
    acts = torch.tensor([[0.0, 5.0], [3.0, 1.0], [2.0, 4.0]])
    vals, rows = S.top_examples(acts, k=2)
    assert rows[:, 0].tolist() == [1, 2] and rows[:, 1].tolist() == [0, 2]


def test_bad_input(tiny):
    with pytest.raises(BadInput):
        S.capture_pairs(tiny, tiny.to_tokens("abc"), 0, target="nope")
    with pytest.raises(BadInput):
        S.train(torch.zeros(10, 4), torch.zeros(10, 4), transcode=False)


def test_neuron_polysemanticity_from_triggers(tiny):
    from ffnmem.data.corpus import windows
    from ffnmem.methods import triggers as T

    tokens = windows(tiny, ["The quick brown fox jumps over the lazy dog. " * 8], window=32)
    tr = T.mine(tiny, tokens, [0], k=5, progress=False)
    poly = S.neuron_polysemanticity(tr, 0)
    # independent count: the token at each mined flat index, and the one after it in its window
    flat, width = tokens.flatten().tolist(), tokens.shape[1]
    for u in (0, 7, 100, tiny.d_mlp - 1):
        idx = tr.index[0][:, u].tolist()
        trig = [flat[i] for i in idx]
        nxt = [flat[i + 1] if (i % width) != width - 1 else -1 for i in idx]
        assert int(poly["distinct_triggers"][u]) == len(set(trig))
        assert int(poly["distinct_next"][u]) == len(set(nxt))
        p = torch.tensor([trig.count(t) / len(trig) for t in set(trig)])
        assert float(poly["entropy_bits"][u]) == pytest.approx(float(-(p * p.log2()).sum()), abs=1e-5)
    # the repeated sentence has few distinct tokens: some neurons must see repeats, or the count is vacuous
    assert (poly["distinct_triggers"] < 5).any() and (poly["distinct_triggers"] > 1).any()


def test_sae_units_rows_per_alive_unit(tiny):
    from ffnmem.data.corpus import default_corpus, windows
    from ffnmem.jobs.probe import SaeParams, compute_sae_units

    tokens = windows(tiny, default_corpus(), window=32, max_windows=24)
    res = compute_sae_units(tiny, tokens, SaeParams(layers=[0, 1], expansion=2, k=4, epochs=1, top=4), seed=0)
    u = res.table("units")
    assert set(u["layer"]) == {0, 1} and set(u["kind"]) == {"neuron", "latent"}
    assert ((u["concentration_bits"] - (2.0 - u["entropy_bits"])).abs() < 1e-6).all()  # log2(4) - H
    assert u["entropy_bits"].between(0, 2).all()
    # dead units are left out: at most d_mlp neurons and 2 * d_mlp latents per layer
    per = u.groupby(["layer", "kind"]).size()
    assert (per.xs("neuron", level="kind") <= tiny.d_mlp).all()
    assert (per.xs("latent", level="kind") <= 2 * tiny.d_mlp).all()
    assert set(res.table("metrics")["layer"]) == {0, 1}
