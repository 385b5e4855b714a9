import pytest
import torch

from ffnmem.methods import sae as S
from ffnmem.core.errors import BadInput


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
    from ffnmem.methods import triggers as T
    from ffnmem.data.corpus import windows

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
