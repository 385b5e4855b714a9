"""Objectives: masks are what they claim, losses cover the right positions, bad input is one line."""

from __future__ import annotations

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.architectures import check_matched
from ffnmem.methods.objectives import (
    Objective,
    attention_mask,
    objective_loss,
    parse,
    prefix_mask,
    query_batch,
)
from ffnmem.methods.positions import effective_rank, order_task, position_probe_error


def test_prefix_mask_is_bidirectional_then_causal_and_blocks_padding():
    m = prefix_mask(torch.tensor([4]), torch.tensor([2]), 5)[0, 0]
    allowed = ~m
    assert allowed[0, 1] and not allowed[1, 2] and allowed[2, 2] and not allowed[2, 3]
    assert not allowed[:, 4].any()  # padding key
    assert allowed[3, :4].all()


def test_bad_input_one_line_each():
    with pytest.raises(BadInput, match="prefix of 7 tokens"):
        prefix_mask(torch.tensor([5]), torch.tensor([7]), 5)
    for rate in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(BadInput, match="outside \\(0, 1\\)"):
            Objective(kind="mlm", mask_rate=rate)
    with pytest.raises(BadInput, match="mismatched parameter counts"):
        check_matched({"causal": 1000, "mlm": 1064})
    with pytest.raises(BadInput, match="unknown variant"):
        parse("causal-sometimes")
    obj = Objective(kind="prefix", prefix_len=9)
    batch = torch.tensor([[2, 5, 6, 7, 3, 0]])
    with pytest.raises(BadInput, match="does not fit"):
        objective_loss(lambda x, **kw: torch.zeros(1, 6, 10), obj, batch, 0, None, torch.Generator())


def test_losses_count_the_expected_positions():
    batch = torch.tensor([[2, 5, 6, 7, 8, 3, 0, 0]])
    logits = lambda x, **kw: torch.zeros(x.shape[0], x.shape[1], 12)
    g = torch.Generator().manual_seed(0)
    assert objective_loss(logits, Objective(), batch, 0, None, g)[1] == 5
    assert objective_loss(logits, Objective(kind="prefix", prefix_len=3), batch, 0, None, g)[1] == 3
    assert attention_mask(Objective(), batch, 0) is None


def test_mlm_masks_its_input_and_scores_only_the_masked_real_tokens():
    batch = torch.tensor([[2, 5, 6, 7, 8, 3, 0, 0]]).repeat(400, 1)
    seen = {}

    def model(x, **kw):  # records its input; the logits name token (position + 4): a known answer per position
        seen["x"] = x
        return torch.nn.functional.one_hot((torch.arange(x.shape[1]) + 4) % 12, 12).float().expand(x.shape[0], -1, -1) * 3

    loss, n = objective_loss(model, Objective(kind="mlm", mask_rate=0.25), batch, 0, 11, torch.Generator().manual_seed(1))
    x = seen["x"]
    masked = x == 11
    assert n == int(masked.sum())
    assert not masked[:, 0].any() and not masked[:, 6:].any()  # never the BOS, never padding
    assert torch.equal(x[~masked], batch[~masked])  # the rest is left as it was
    assert 0.2 < n / (400 * 5) < 0.3  # 2000 candidates at rate 0.25: sd ≈ 0.01
    # cross-entropy of the hand-set logits on the masked positions only: the token at position p is
    # predicted with logit 3 when it equals p + 4 (positions 1..4 hold 5, 6, 7, 8), else 0
    hit = torch.tensor([0, 1, 1, 1, 1, 0, 0, 0]).expand_as(masked)[masked].float()
    lse = torch.log(torch.tensor(11.0) + torch.e ** 3)
    assert float(loss) == pytest.approx(float((lse - 3 * hit).mean()), rel=1e-5)


def test_mlm_query_appends_mask_and_reads_it():
    toks, last, mask = query_batch(Objective(kind="mlm"), [[2, 5], [2, 5, 6]], 0, 11)
    assert toks.tolist() == [[2, 5, 11, 0], [2, 5, 6, 11]] and last.tolist() == [2, 3]
    assert mask[0, 0, :, 3].all() and not mask[1].any()


def test_effective_rank_extremes_and_probe():
    assert effective_rank(torch.eye(4)).item() == pytest.approx(4.0, abs=1e-5)
    assert effective_rank(torch.ones(4, 4) / 4).item() == pytest.approx(1.0, abs=1e-5)
    pos = torch.arange(10).float()
    acts = torch.stack([torch.stack([pos, torch.randn(10, generator=torch.Generator().manual_seed(i))], 1)
                        for i in range(10)]).numpy()
    res = position_probe_error(acts)
    assert res["mae"] < 0.05 < res["baseline_mae"]
    toks, ans = order_task(5, 3, 8, 0)
    assert toks.shape == (5, 5) and (toks[:, 1] == ans).all() and (toks[:, 0] == 0).all() and (toks[:, -1] == 1).all()


def test_objective_training_resumes_exactly_and_freezes_positions(tmp_path):
    from ffnmem.data.synthetic import FactConfig, generate
    from ffnmem.methods.training import TrainConfig, train

    corpus = generate(FactConfig(n_entities=6, bins=(1, 2), n_values=4, seed=1))
    cfg = TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=4, batch_size=4, warmup=1,
                      checkpoint_every=2, eval_every=4, seed=0)
    obj = parse("mlm-nopos", mask_rate=0.3)
    whole = train(corpus, cfg, device="cpu", progress=False, objective=obj)
    train(corpus, cfg, tmp_path / "r", device="cpu", progress=False, objective=obj, stop_at=2)
    resumed = train(corpus, cfg, tmp_path / "r", device="cpu", progress=False, objective=obj)
    a, b = whole.wb.bridge.original_model.state_dict(), resumed.wb.bridge.original_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pos = resumed.wb.bridge.original_model.pos.weight
    assert float(pos.abs().max()) == 0.0 and not pos.requires_grad
    assert whole.wb.tokenizer.mask_token_id == len(whole.wb.tokenizer) - 1
    with pytest.raises(BadInput, match="another config"):
        train(corpus, cfg, tmp_path / "r", device="cpu", progress=False, objective=parse("causal"))
