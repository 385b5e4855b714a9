"""Packed training rows: every token once per epoch, a pure function of (seed, step), and
per-document attention that reproduces a document trained alone."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.core.models import boot_native
from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.data.vocab import build_tokenizer
from ffnmem.methods.packing import PackedRows, document_layout, epochs_to_steps
from ffnmem.methods.training import TrainConfig, steps_for_epochs, steps_per_epoch, train

BOS, EOS = 1, 2


def _docs(n: int = 11) -> list[list[int]]:
    # distinct ids per document, lengths 3..7, so a lost, doubled or reordered token shows
    docs, nxt = [], 10
    for i in range(n):
        body = list(range(nxt, nxt + 1 + i % 5))
        nxt += len(body)
        docs.append([BOS, *body, EOS])
    return docs


def _stream(rows: PackedRows, steps: int, b: int) -> list[int]:
    return torch.cat([rows.batch(s, b).reshape(-1) for s in range(steps)]).tolist()


@pytest.mark.parametrize("n_ctx,b", [(8, 2), (5, 3), (64, 4)])
def test_each_epoch_holds_every_token_once_with_documents_intact(n_ctx, b):
    docs = _docs()
    rows = PackedRows(docs, n_ctx, seed=3)
    total = rows.tokens_per_epoch
    steps = -(-3 * total // (b * n_ctx))  # three epochs and a bit
    stream = _stream(rows, steps, b)
    for e in range(3):
        epoch = stream[e * total:(e + 1) * total]
        assert Counter(epoch) == Counter(t for d in docs for t in d)
        starts = [i for i, t in enumerate(epoch) if t == BOS]
        pieces = [tuple(epoch[s:e2]) for s, e2 in zip(starts, starts[1:] + [total])]
        assert sorted(pieces) == sorted(tuple(d) for d in docs)  # each document whole, once
    assert stream[:total] != stream[total:2 * total]  # a new order each epoch


def test_rows_are_a_pure_function_of_seed_and_step():
    docs = _docs()
    a = PackedRows(docs, 8, seed=0)
    used = [a.batch(s, 3) for s in range(9)]
    fresh = PackedRows(docs, 8, seed=0)
    for s in (7, 0, 4):  # any order, any cache state
        assert torch.equal(fresh.batch(s, 3), used[s])
    assert not torch.equal(PackedRows(docs, 8, seed=1).batch(0, 3), used[0])


def test_document_layout_blocks_other_documents_and_restarts_positions():
    row = torch.tensor([[7, EOS, BOS, 5, 6, EOS, BOS, 9]])
    blocked, pos = document_layout(row, BOS)
    assert pos.tolist() == [[0, 1, 0, 1, 2, 3, 0, 1]]
    seg = [0, 0, 1, 1, 1, 1, 2, 2]
    expect = torch.tensor([[a != c for c in seg] for a in seg])
    assert torch.equal(blocked[0, 0], expect)


def test_packed_document_reads_as_if_alone():
    corpus = generate(FactConfig(n_entities=4, bins=(1,), n_values=4, seed=0))
    tok = build_tokenizer(corpus)
    cfg = TrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=64)
    wb = boot_native(cfg.tl_config(len(tok)), tok, torch.device("cpu"), torch.float32, model_id="t")
    model = wb.bridge.original_model.eval()
    d1, d2 = (torch.tensor([[tok.bos_token_id, *tok(d, add_special_tokens=False)["input_ids"], tok.eos_token_id]])
              for d in corpus.documents[:2])
    row = torch.cat([d1, d2], 1)
    blocked, pos = document_layout(row, tok.bos_token_id)
    with torch.no_grad():
        packed = model(row, attention_mask=blocked, position_ids=pos)
        alone = model(d2)
        crossed = model(row)
    torch.testing.assert_close(packed[:, d1.shape[1]:], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(crossed[:, d1.shape[1]:], alone, atol=1e-3)  # the stream layout differs


def test_steps_for_epochs_covers_the_corpus():
    corpus = generate(FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1))
    cfg = TrainConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=64, batch_size=4, warmup=1,
                      eval_every=10**6, checkpoint_every=10**6)
    per = steps_per_epoch(corpus, cfg)
    tokens = sum(len(d.split()) + 2 for d in corpus.documents)  # word-level: words + BOS + EOS
    assert per == pytest.approx(tokens / (4 * 64))
    steps = steps_for_epochs(corpus, cfg, 2)
    run = train(corpus, dataclasses.replace(cfg, steps=steps), device="cpu", progress=False)
    assert run.epochs >= 2 > (steps - 1) / per
    assert run.tokens_seen == steps * 4 * 64 >= 2 * tokens
    none = dataclasses.replace(cfg, packing="none")
    assert steps_per_epoch(corpus, none) == len(corpus.documents) / 4
    with pytest.raises(BadInput):
        epochs_to_steps(per, 0)
    with pytest.raises(BadInput, match="packing"):
        TrainConfig(packing="rows")


@pytest.mark.parametrize("packing", ["documents", "stream", "none"])
def test_signal_counts_the_targets_that_carry_a_loss(packing):
    from ffnmem.methods.packing import make_batches

    corpus = generate(FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1))
    tok = build_tokenizer(corpus)
    get, _ = make_batches(tok, corpus.documents, 4, 64, 0, packing)
    for step in range(3):
        rows, kwargs, n_tokens, n_signal = get(step)
        ignore = tok.bos_token_id if packing == "documents" else tok.pad_token_id
        assert n_signal == int((rows[:, 1:] != ignore).sum())
        assert n_tokens == int((rows != tok.pad_token_id).sum())
        assert set(kwargs) == ({"attention_mask", "position_ids"} if packing == "documents" else set())
