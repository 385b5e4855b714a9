"""Training: deterministic batches, checkpoints with tokenizer, exact resume, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.core.models import load_checkpoint
from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.methods.training import TrainConfig, batch_indices, checkpoints, encode_documents, train

FACTS = FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1)
CFG = TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=12, batch_size=4, warmup=2,
                  checkpoint_every=5, eval_every=6, seed=0)


def test_batches_are_a_pure_function_of_seed_and_step():
    a = [batch_indices(s, 10, 4, 0).tolist() for s in range(5)]
    assert a == [batch_indices(s, 10, 4, 0).tolist() for s in range(5)]
    first_epoch = sorted(sum(a, [])[:10])
    assert first_epoch == list(range(10))
    assert batch_indices(0, 10, 4, 1).tolist() != a[0]


def test_checkpoint_keeps_the_word_tokenizer(tmp_path):
    corpus = generate(FACTS)
    run = train(corpus, dataclasses.replace(CFG, steps=2), tmp_path / "r", device="cpu", progress=False)
    wb = load_checkpoint(checkpoints(tmp_path / "r")[-1] / "model", device="cpu")
    doc = corpus.documents[0]
    assert wb.encode(doc) == run.wb.encode(doc)
    assert wb.d_vocab == len(run.wb.tokenizer)
    x = wb.to_tokens(corpus.queries[0]["prompt"])
    torch.testing.assert_close(wb.bridge(x), run.wb.bridge(x))


def test_other_config_in_run_dir_is_refused(tmp_path):
    corpus = generate(FACTS)
    train(corpus, dataclasses.replace(CFG, steps=2), tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(BadInput, match="another config"):
        train(corpus, dataclasses.replace(CFG, steps=3, lr=1e-2), tmp_path / "r", device="cpu", progress=False)


def test_document_longer_than_context_is_refused():
    corpus = generate(FACTS)
    from ffnmem.data.vocab import build_tokenizer
    with pytest.raises(BadInput, match="raise n_ctx"):
        encode_documents(build_tokenizer(corpus), corpus.documents, 8)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(d_model=30, n_heads=4), dict(lr=-1.0), dict(min_lr_ratio=2.0)])
def test_bad_train_settings(kwargs):
    with pytest.raises(BadInput):
        TrainConfig(**kwargs)


def test_resume_from_json_and_safetensors_gives_identical_weights(tmp_path):
    corpus = generate(FACTS)
    full = train(corpus, CFG, tmp_path / "full", device="cpu", progress=False)
    train(corpus, CFG, tmp_path / "cut", device="cpu", progress=False, stop_at=7)
    assert not list((tmp_path / "cut").rglob("*.pt"))
    resumed = train(corpus, CFG, tmp_path / "cut", device="cpu", progress=False)
    a, b = full.wb.bridge.original_model.state_dict(), resumed.wb.bridge.original_model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert resumed.losses == full.losses


def test_damaged_optimizer_state_is_one_line(tmp_path):
    from ffnmem.core.errors import CorruptWeights

    corpus = generate(FACTS)
    train(corpus, CFG, tmp_path / "r", device="cpu", progress=False, stop_at=5)
    (checkpoints(tmp_path / "r")[-1] / "optimizer.safetensors").write_bytes(b"garbage")
    with pytest.raises(CorruptWeights, match="delete that checkpoint folder"):
        train(corpus, CFG, tmp_path / "r", device="cpu", progress=False)
