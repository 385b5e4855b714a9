"""Pure measures of recall vs exposure on hand-built rows."""

from __future__ import annotations

import math

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.frequency import _row, by_exposure, capacity_bits, fact_bits, recall_curve, spearman_over_bins


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


def test_capacity_counts_only_positive_bits_and_the_unclipped_sum():
    rows = [{"loss_bits": 0.0}, {"loss_bits": 1.0}, {"loss_bits": 10.0}]
    cap = capacity_bits(rows, 8, 10)
    assert cap["bits"] == pytest.approx(3 + 2 + 0) and cap["bits_per_param"] == pytest.approx(0.5)
    assert cap["bits_unclipped"] == pytest.approx(3 + 2 - 7)  # the unknown fact counts -7 bits
    assert cap["max_bits"] == pytest.approx(9)


def test_fact_bits_unclipped_per_attribute_value_set():
    rows = [{"entity": "A", "attribute": "x", "exposures": 2, "loss_bits": 1.0, "correct": True},
            {"entity": "A", "attribute": "y", "exposures": 2, "loss_bits": 5.0, "correct": False}]
    out = fact_bits(rows, {"x": list("abcd"), "y": list("abcdefgh")}, "trained")
    assert [r["bits"] for r in out] == pytest.approx([2 - 1, 3 - 5])  # log2 4 - 1, log2 8 - 5 (negative kept)
    assert [r["n_values"] for r in out] == [4, 8] and {r["arm"] for r in out} == {"trained"}


def test_cross_entropy_decomposes_into_entropy_and_kl_on_a_known_case():
    """CE = H(p) + KL(p || q), each checked against a direct sum (not against the other two), and KL is
    0 exactly when q equals the data distribution p on the value set, positive otherwise."""
    eps, ids, answer = 0.2, torch.tensor([5, 6, 7, 8]), 7  # the answer is the third value
    p = torch.tensor([eps / 4] * 2 + [1 - eps + eps / 4, eps / 4], dtype=torch.float64)  # .05, .05, .85, .05
    h_direct = -float((p * torch.log2(p)).sum())
    assert h_direct == pytest.approx(0.8476, abs=1e-4)  # by hand: -.85 log2 .85 - 3 (.05 log2 .05)
    q_cases = {"uniform on V": torch.tensor([0.25] * 4), "skewed": torch.tensor([0.1, 0.2, 0.4, 0.3]),
               "equal to p": p.float()}
    for name, q in q_cases.items():
        log2q = torch.full((10,), -80.0)  # the rest of the vocabulary gets (almost) nothing
        log2q[ids] = torch.log2(q)
        r = _row({"entity": "A", "attribute": "x", "exposures": 1, "heldout": False}, log2q, answer, {"x": ids}, eps)
        ce_direct = -float((p * torch.log2(q.double())).sum())
        kl_direct = float((p * (torch.log2(p) - torch.log2(q.double()))).sum())
        assert r["h_bits"] == pytest.approx(h_direct, abs=1e-6), name
        assert r["ce_bits"] == pytest.approx(ce_direct, abs=1e-5), name
        assert r["kl_bits"] == pytest.approx(kl_direct, abs=1e-5), name
        assert r["loss_bits"] == pytest.approx(-math.log2(float(q[2])), abs=1e-5), name
        if name == "equal to p":
            assert r["kl_bits"] == pytest.approx(0.0, abs=1e-6)
        else:
            assert r["kl_bits"] > 0.05, name
    # uniform q on V: CE = log2 4 = 2 bits exactly, so KL = 2 - H
    r = _row({"entity": "A", "attribute": "x", "exposures": 1, "heldout": False},
             torch.full((10,), -80.0).index_fill(0, ids, -2.0), answer, {"x": ids}, eps)
    assert r["ce_bits"] == pytest.approx(2.0, abs=1e-6) and r["kl_bits"] == pytest.approx(2.0 - h_direct, abs=1e-6)


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
