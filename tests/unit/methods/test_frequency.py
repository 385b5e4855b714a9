"""Pure measures of recall vs exposure on hand-built rows."""

from __future__ import annotations

import math

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.frequency import _row, by_exposure, capacity_bits, recall_curve, spearman_over_bins


def _rows(acc_by_exp: dict[int, float], n: int = 40) -> list[dict]:
    rows = []
    for e, acc in acc_by_exp.items():
        for i in range(n):
            ok = i < round(acc * n)
            rows.append({"exposures": e, "correct": ok, "loss_bits": 0.1 if ok else 3.0})
    return rows


def test_bins_curve_and_spearman():
    rows = _rows({1: 0.1, 4: 0.4, 16: 0.8, 64: 0.95})
    bins = by_exposure(rows, n_boot=200, seed=0)
    assert [b["exposures"] for b in bins] == [1, 4, 16, 64]
    assert all(b["accuracy_lo"] <= b["accuracy"] <= b["accuracy_hi"] for b in bins)
    assert by_exposure(rows, n_boot=200, seed=0) == bins  # seeded
    assert spearman_over_bins(bins) == pytest.approx(1.0)
    curve = recall_curve(rows, n_boot=100, seed=0)
    assert curve["slope_lo"] > 0 and curve["y"][0] < curve["y"][-1]
    with pytest.raises(BadInput):
        spearman_over_bins(bins[:1])


def test_capacity_counts_only_positive_bits():
    rows = [{"loss_bits": 0.0}, {"loss_bits": 1.0}, {"loss_bits": 10.0}]
    cap = capacity_bits(rows, 8, 10)
    assert cap["bits"] == pytest.approx(3 + 2 + 0) and cap["bits_per_param"] == pytest.approx(0.5)
    assert cap["max_bits"] == pytest.approx(9)


def test_cross_entropy_entropy_and_kl_known_answers():
    """The noisy target puts 1 − ε + ε/n on the answer and ε/n on each other value of the set.
    (ce = h + kl is how kl is defined, and kl ≥ 0 is Gibbs: neither is checked here; the numbers are.)"""
    eps, ids, q = 0.2, torch.tensor([5, 6, 7, 8]), {"entity": "A", "attribute": "x", "exposures": 1, "heldout": False}
    p = torch.tensor([0.05, 0.05, 0.85, 0.05])  # answer 7 is the third value of the set
    h = -float((p * p.log2()).sum())
    # a uniform model over 10 tokens: cross-entropy log2(10) on any target, loss log2(10), wrong argmax
    r = _row(q, torch.full((10,), -math.log2(10)), 7, {"x": ids}, eps)
    assert r["ce_bits"] == pytest.approx(math.log2(10)) and r["h_bits"] == pytest.approx(h)
    assert r["kl_bits"] == pytest.approx(math.log2(10) - h) and r["loss_bits"] == pytest.approx(math.log2(10))
    # an arbitrary model: KL summed term by term, Σ p log2(p / q) over the value set
    logits = torch.randn(10, generator=torch.Generator().manual_seed(0))
    log2q = torch.log_softmax(logits, -1) / math.log(2)
    r = _row(q, log2q, 7, {"x": ids}, eps)
    assert r["kl_bits"] == pytest.approx(float((p * (p.log2() - log2q[ids])).sum()), abs=1e-5)
    assert r["p_true"] == pytest.approx(float(logits.softmax(-1)[7]))
    assert r["correct"] == (int(logits.argmax()) == 7)
    # q equal to p on the value set (and nothing elsewhere) has zero gap
    log2q = torch.full((10,), -60.0)
    log2q[ids] = torch.log2(p)
    assert _row(q, log2q, 7, {"x": ids}, eps)["kl_bits"] == pytest.approx(0.0, abs=1e-5)


@pytest.fixture(scope="module")
def micro_run():
    from ffnmem.data.synthetic import FactConfig, generate
    from ffnmem.methods.training import TrainConfig, train

    corpus = generate(FactConfig(n_entities=12, bins=(1, 4), n_values=6, seed=1))
    cfg = TrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, steps=30, batch_size=8, warmup=3, eval_every=30,
                      checkpoint_every=30, seed=0)
    return train(corpus, cfg, device="cpu", progress=False)


@torch.inference_mode()
def test_dla_rows_add_up_to_the_margin(micro_run):
    from ffnmem.methods.frequency import dla_rows

    wb, corpus = micro_run.wb, micro_run.corpus
    qs = [q for q in corpus.queries if not q["heldout"]][:6]
    rows = dla_rows(wb, qs, contrast=corpus.values)
    for q, r in zip(qs, rows):
        logits = wb.bridge(wb.to_tokens(q["prompt"]))[0, -1]
        ans = wb.answer_token(q["answer"])
        others = [wb.answer_token(v) for v in corpus.values[q["attribute"]] if v != q["answer"]]
        assert r["logit"] == pytest.approx(float(logits[ans] - logits[others].mean()), abs=1e-4)
        assert r["ffn"] + r["attn"] + r["rest"] == pytest.approx(r["logit"], abs=1e-5)
        assert r["ffn"] == pytest.approx(r["ffn_L0"] + r["ffn_L1"], abs=1e-5)
        shares = [r[f"{k}_share_L{layer}"] for k in ("ffn", "attn") for layer in (0, 1)]
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)
        assert r["ffn_share"] == pytest.approx(r["ffn_share_L0"] + r["ffn_share_L1"], abs=1e-5)
    raw = dla_rows(wb, qs[:1])[0]
    logits = wb.bridge(wb.to_tokens(qs[0]["prompt"]))[0, -1]
    assert raw["logit"] == pytest.approx(float(logits[wb.answer_token(qs[0]["answer"])]), abs=1e-4)


def test_dla_bins_and_plot(micro_run, tmp_path):
    from ffnmem.methods.frequency import dla_by_exposure, dla_rows
    from ffnmem.viz import plot_dla_by_exposure, save_figure

    corpus = micro_run.corpus
    rows = dla_rows(micro_run.wb, [q for q in corpus.queries if not q["heldout"]], contrast=corpus.values)
    bins = dla_by_exposure(rows, n_boot=50, seed=0)
    assert [b["exposures"] for b in bins] == [1, 4] and sum(b["n"] for b in bins) == len(rows)
    for b in bins:
        mine = [r for r in rows if r["exposures"] == b["exposures"]]
        assert b["ffn_share"] == pytest.approx(sum(r["ffn_share"] for r in mine) / len(mine))
        assert b["ffn_share_lo"] <= b["ffn_share"] <= b["ffn_share_hi"]
    assert dla_by_exposure(rows, n_boot=50, seed=0) == bins
    assert save_figure(plot_dla_by_exposure(bins), tmp_path / "dla.png").stat().st_size > 0
    with pytest.raises(BadInput):
        dla_rows(micro_run.wb, [])
