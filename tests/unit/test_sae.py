import pytest
import torch

from ffnmem import sae as S
from ffnmem.errors import BadInput


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
