"""Encoder-decoder: parameters matched, trains, causal decoder, FFN capture and attribution, seeded, resumable."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ffnmem.core.encdec import (
    EncDecConfig,
    EncDecTransformer,
    block_params,
    ffn_views,
    matched_d_mlp,
)
from ffnmem.core.errors import BadInput
from ffnmem.core.models import load_checkpoint
from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.data.vocab import build_tokenizer
from ffnmem.methods.architectures import train_flops
from ffnmem.methods.encdec import (
    _cross_pullback,
    answer_attribution,
    capture_coefficients,
    dla_rows,
    encoder_probe,
)
from ffnmem.methods.objectives import core_params, parse
from ffnmem.methods.packing import sentence_pairs
from ffnmem.methods.training import TrainConfig, checkpoints, train

FACTS = FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1)
CFG = TrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=12, batch_size=8, warmup=2,
                  checkpoint_every=5, eval_every=100, seed=0)
ENCDEC = parse("encdec")


@pytest.fixture(scope="module")
def corpus():
    return generate(FACTS)


@pytest.fixture(scope="module")
def run(corpus):
    return train(corpus, dataclasses.replace(CFG, steps=25, lr=1e-2), device="cpu", progress=False, objective=ENCDEC)


def test_parameters_match_the_causal_model_within_one_percent(corpus):
    causal = train(corpus, dataclasses.replace(CFG, steps=1), device="cpu", progress=False, objective=parse("causal"))
    enc = train(corpus, dataclasses.replace(CFG, steps=1), device="cpu", progress=False, objective=ENCDEC)
    a, b = core_params(causal.wb.bridge.original_model), core_params(enc.wb.bridge.original_model)
    assert abs(b - a) / a < 0.01
    assert enc.wb.native_config["d_mlp"] == matched_d_mlp(2, 32, 64) < 64  # the FFN pays for the cross-attention
    # the formula is the model: one encoder block, one decoder block with cross-attention, encoder final LN
    m = enc.wb.bridge.original_model
    d, w = 32, enc.wb.native_config["d_mlp"]
    assert sum(p.numel() for p in m.encoder.blocks.parameters()) == block_params(d, w)
    assert sum(p.numel() for p in m.decoder.blocks.parameters()) == block_params(d, w, cross=True)


def test_pairs_are_prompt_then_value_dot_eos(corpus):
    tok = build_tokenizer(corpus, mask_token=True)
    enc, dec = sentence_pairs(tok, corpus.documents[:1])
    assert len(enc) == len(FACTS.attributes)
    words = [tok.convert_ids_to_tokens(r) for r in dec]
    assert all(w[0] == "<bos>" and w[2:] == [".", "<eos>"] for w in words)
    q = corpus.queries[0]  # a query prompt encodes to an encoder row of its form
    assert tok.convert_ids_to_tokens(enc[0])[0] == "<bos>" and "." not in tok(q["prompt"])["input_ids"]
    with pytest.raises(BadInput, match="end with"):
        sentence_pairs(tok, ["the of and"])


def test_trains_and_the_loss_drops(run):
    first, last = run.losses[0]["loss"], run.losses[-1]["loss"]
    assert last < 0.6 * first
    assert run.signal_tokens == 3 * 8 * 25  # value . EOS of every pair, no padding in decoder rows


def test_training_flops_count_each_side_for_its_own_tokens(run):
    model = run.wb.bridge.original_model
    n = sum(p.numel() for p in model.parameters())
    full = 6.0 * n * run.tokens_seen
    flops = train_flops(model, ENCDEC, run.tokens_seen, run.signal_tokens)
    enc_tokens, dec_tokens = run.tokens_seen - 4 * 8 * 25, 4 * 8 * 25
    assert dec_tokens == run.signal_tokens * 4 // 3
    # each side's share lies strictly between nothing and everything; the two add up to more than
    # half of 6·N·tokens (the embedding is counted on both sides) and less than all of it
    assert 0.5 * full < flops < full
    enc_only = sum(p.numel() for p in model.encoder.parameters())
    assert flops > 6.0 * enc_only * enc_tokens


def test_decoder_cannot_see_future_answer_tokens(run):
    model = run.wb.bridge.original_model
    enc = torch.tensor([[2, 10, 11, 12]])
    dec = torch.tensor([[2, 20, 21, 3]])
    changed = dec.clone()
    changed[0, 2:] = torch.tensor([30, 31])
    with torch.no_grad():
        a, b = model(enc, dec), model(enc, changed)
    torch.testing.assert_close(a[:, :2], b[:, :2])  # positions before the change are untouched
    assert not torch.allclose(a[:, 2:], b[:, 2:])
    enc2 = enc.clone()
    enc2[0, 3] = 13  # the encoder is bidirectional: its last token reaches decoder position 0
    with torch.no_grad():
        assert not torch.allclose(model(enc2, dec)[:, 0], a[:, 0])


def test_ffn_capture_returns_both_stacks(run):
    wb = run.wb
    cfg = wb.native_config
    coeffs = capture_coefficients(wb, torch.tensor([[2, 10, 11, 12, 0]]), torch.tensor([[2, 20, 21]]))
    assert coeffs["encoder"].shape == (cfg["n_enc"], 1, 5, cfg["d_mlp"])
    assert coeffs["decoder"].shape == (cfg["n_dec"], 1, 3, cfg["d_mlp"])
    views = ffn_views(wb.bridge.original_model)
    x = torch.randn(3, cfg["d_model"])
    mlp = wb.bridge.original_model.encoder.blocks[0].mlp
    torch.testing.assert_close(views["encoder"][0].output(views["encoder"][0].coefficients(x)), mlp(x[None])[0])
    with pytest.raises(BadInput, match="two stacks"):
        wb.ffn(0)


def test_attribution_parts_sum_to_their_wholes(run, corpus):
    wb = run.wb
    model = wb.bridge.original_model
    qs = corpus.queries[:3]
    e = answer_attribution(wb, [wb.encode(q["prompt"]) for q in qs], [wb.answer_token(q["answer"]) for q in qs])
    mlp = model.decoder.blocks[0].mlp
    u = model.decoder.ln_final.w * model.W_U[:, wb.answer_token(qs[0]["answer"])]
    b_out = float(mlp.b_out.detach() @ (u - u.mean()).detach()) / float(
        model.run_with_cache(torch.tensor([wb.encode(qs[0]["prompt"])]), torch.tensor([[2]]))[1]["decoder.ln_final.hook_scale"][0, 0])
    assert float(e.dec_neurons[0, 0].sum()) + b_out == pytest.approx(float(e.dec_ffn[0, 0]), abs=1e-4)
    # encoder paths + the rest reproduce the cross-attention exactly; the rest is not just the encoder FFN
    torch.testing.assert_close(e.enc_attn.sum(1) + e.enc_ffn.sum(1) + e.enc_rest, e.dec_cross.sum(1))
    torch.testing.assert_close(e.enc_neurons.sum(-1), e.enc_ffn - _enc_bout_path(wb, qs), atol=1e-4, rtol=1e-4)
    rows = dla_rows(wb, qs)
    assert all(0 <= r["ffn_share"] <= 1 for r in rows) and "enc_ffn_share_L0" in rows[0]


def _enc_bout_path(wb, qs):
    """The encoder FFN's b_out through the cross-attention: what the neurons' sum leaves out."""
    model = wb.bridge.original_model
    b_out = model.encoder.blocks[0].mlp.b_out
    out = []
    with torch.no_grad():
        for q in qs:
            _, cache = model.run_with_cache(torch.tensor([wb.encode(q["prompt"])]), torch.tensor([[2]]))
            u = model.decoder.ln_final.w * model.W_U[:, wb.answer_token(q["answer"])]
            u = (u - u.mean()) / cache["decoder.ln_final.hook_scale"][0, 0]
            out.append((_cross_pullback(model, cache, u, 0) @ b_out).sum())
    return torch.stack(out)[:, None].float()


def test_encoder_probe_shapes(run, corpus):
    tok = run.wb.tokenizer
    enc, _ = sentence_pairs(tok, corpus.documents[:6])
    n = min(len(r) for r in enc)
    probe, ranks = encoder_probe(run.wb, torch.tensor([r[:n] for r in enc]))
    assert len(probe) == run.wb.native_config["n_enc"] + 1 and ranks.shape == (1, 2)


def test_same_seed_same_weights_and_resume(corpus, tmp_path):
    cfg = dataclasses.replace(CFG, steps=10)
    a = train(corpus, cfg, tmp_path / "a", device="cpu", progress=False, objective=ENCDEC)
    train(corpus, cfg, tmp_path / "b", device="cpu", progress=False, objective=ENCDEC, stop_at=5)
    b = train(corpus, cfg, tmp_path / "b", device="cpu", progress=False, objective=ENCDEC)
    sa, sb = a.wb.bridge.original_model.state_dict(), b.wb.bridge.original_model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    wb = load_checkpoint(checkpoints(tmp_path / "a")[-1] / "model", device="cpu")
    assert isinstance(wb.bridge, EncDecTransformer) and wb.weight_hash
    enc, dec = torch.tensor([[2, 10, 11]]), torch.tensor([[2]])
    torch.testing.assert_close(wb.bridge(enc, dec), a.wb.bridge(enc, dec))


def test_the_seed_sets_the_initial_weights():
    shape = {"n_enc": 1, "n_dec": 1, "d_model": 16, "n_heads": 2, "d_mlp": 24, "d_vocab": 30, "n_ctx": 8}
    a, b, c = (EncDecTransformer(EncDecConfig(**shape, seed=s)).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed.weight"], c["embed.weight"])
    assert not torch.equal(a["decoder.blocks.0.cross_attn.q.weight"], c["decoder.blocks.0.cross_attn.q.weight"])


def test_rotary_and_narrow_ffn_are_refused():
    with pytest.raises(BadInput, match="not rotary"):
        parse("encdec-rope")
    with pytest.raises(BadInput, match="too narrow"):
        matched_d_mlp(2, 64, 8)
    with pytest.raises(BadInput, match="n_layers ≥ 2"):
        matched_d_mlp(1, 64, 256)
