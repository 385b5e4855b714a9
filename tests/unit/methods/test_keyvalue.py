"""Values read in vocabulary space."""

import torch

import ffnmem
from ffnmem.methods.keyvalue import project_to_vocab, value_tokens


def test_planted_value_promotes_its_token():
    wb = ffnmem.load_model("tiny-2l", seed=0)
    target = wb.encode("Z", prepend_bos=False)[0]
    with torch.no_grad():
        wb.ffn(1).values[5] = 10 * wb.W_U[:, target] / wb.W_U[:, target].norm()
    proj = value_tokens(wb, 1, [5], k=3)
    assert int(proj.top_ids[0, 0]) == target and proj.rank_of(target) == [1]
    flipped = value_tokens(wb, 1, [5], k=3, signs=torch.tensor([-1.0]))
    assert int(flipped.bottom_ids[0, 0]) == target


def test_centering_removes_uniform_shift():
    W_U = torch.randn(4, 7)
    v = torch.randn(2, 4)
    a = project_to_vocab(v + 3.0, W_U, None, center=True)
    b = project_to_vocab(v, W_U, None, center=True)
    torch.testing.assert_close(a, b)
