"""Pure measures of recall vs exposure on hand-built rows."""

from __future__ import annotations

import math

import pytest
import torch

from ffnmem.errors import BadInput
from ffnmem.frequency import _row, by_exposure, capacity_bits, recall_curve, spearman_over_bins


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


def test_cross_entropy_is_entropy_plus_nonnegative_kl():
    eps, ids = 0.2, torch.tensor([5, 6, 7, 8])
    for logits in (torch.randn(10), torch.zeros(10), torch.tensor([0.0] * 5 + [9.0, 0, 0, 0, 0])):
        log2q = torch.log_softmax(logits, -1) / math.log(2)
        r = _row({"entity": "A", "attribute": "x", "exposures": 1, "heldout": False}, log2q, 5, {"x": ids}, eps)
        assert r["kl_bits"] >= -1e-6
        assert r["ce_bits"] == pytest.approx(r["h_bits"] + r["kl_bits"])
    # q equal to p on the value set (and nothing elsewhere) has zero gap
    p = torch.tensor([1 - eps + eps / 4] + [eps / 4] * 3)
    log2q = torch.full((10,), -60.0)
    log2q[ids] = torch.log2(p)
    r = _row({"entity": "A", "attribute": "x", "exposures": 1, "heldout": False}, log2q, 5, {"x": ids}, eps)
    assert r["kl_bits"] == pytest.approx(0.0, abs=1e-5)
