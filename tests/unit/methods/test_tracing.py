"""Causal tracing: batched restorations equal one forward per cell; alignment; seeding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.tracing import aligned, average_aligned, peak, trace, trace_one_cell_per_forward, window_layers
from ffnmem.viz import plot_trace, save_figure

PROMPT, SPAN, ANS = "The cat sat on", (4, 8), 109  # BOS + "The " then "cat " (bytes 4..7)


def test_window_layers():
    assert list(window_layers(0, 3, 10)) == [0, 1, 2]
    assert list(window_layers(5, 4, 10)) == [3, 4, 5, 6]
    assert list(window_layers(9, 4, 10)) == [6, 7, 8, 9]


def test_batched_equals_one_cell_per_forward(tiny):
    t = trace(tiny, PROMPT, ANS, SPAN, kinds=("resid", "mlp"), n_samples=3, window=2, max_rows=20)
    ref = trace_one_cell_per_forward(tiny, PROMPT, ANS, SPAN, kind="mlp", n_samples=3, window=2)
    torch.testing.assert_close(t.effects["mlp"], ref, atol=1e-5, rtol=1e-4)
    # restoring the whole residual stream at the top layer, last position, gives the clean answer back
    assert float(t.effects["resid"][-1, -1]) == pytest.approx(t.p_clean - t.p_corrupt, abs=1e-5)
    again = trace(tiny, PROMPT, ANS, SPAN, kinds=("resid",), n_samples=3)
    torch.testing.assert_close(again.effects["resid"], t.effects["resid"])


def test_aligned_and_peak(tmp_path, tiny):
    eff = torch.arange(12.0).reshape(2, 6)
    a = aligned(eff, (1, 4))
    assert a[0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert torch.isnan(aligned(eff, (1, 2))[0, 1])
    # peak on a hand-built profile: NaN cells never win, the largest finite one does
    prof = torch.tensor([[0.1, float("nan"), 0.3, 0.0, 0.2], [0.4, 0.9, float("nan"), -1.0, 0.5], [0.0] * 5])
    assert peak(prof) == (1, "middle_subject", pytest.approx(0.9))
    assert peak(-prof)[:2] == (1, "first_after")
    t = trace(tiny, PROMPT, ANS, SPAN, kinds=("attn",), n_samples=2, window=1)
    shifted = dataclasses.replace(t, effects={"attn": t.effects["attn"] + 1.0})
    avg = average_aligned([t, shifted])  # the mean of two facts, cell by cell
    torch.testing.assert_close(avg["attn"], aligned(t.effects["attn"], SPAN) + 0.5)
    save_figure(plot_trace(t), tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
    with pytest.raises(BadInput, match="unknown trace kind"):
        trace(tiny, PROMPT, ANS, SPAN, kinds=("ffn",))
