"""Claims on the `tiny` preset (seeded, CPU): recall rises with exposure; the KL gap is >= 0 and shrinks.

Tiny preset: 140 entities × 4 attributes, 24 values each, 5% value noise, bins of 1..64
exposures per epoch, 2-layer d_model 64 model (152k parameters), 400 steps of 32 documents, seed 0
(~40 s on an idle core; 4-5 min when the 2-core machine is shared by several jobs). The asserts
use generous tolerances around the measured figures stated inline.
"""

from __future__ import annotations

import pytest
import torch

from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.methods.frequency import by_exposure, capacity_bits, score_queries, spearman_over_bins
from ffnmem.methods.training import TrainConfig, checkpoints, preset, train


@pytest.fixture(scope="session")
def tiny_run():
    facts, cfg = preset("tiny")
    corpus = generate(facts)
    run = train(corpus, cfg, device="cpu", progress=False)
    rows = score_queries(run.wb, corpus.queries, value_sets=corpus.values, value_noise=facts.value_noise)
    return run, rows


def test_recall_rises_with_exposure(tiny_run):
    run, rows = tiny_run
    bins = by_exposure(rows, seed=0)
    # measured: Spearman 1.0 over 7 bins, recall .175 .300 .600 .838 .950 .963 .975 for 1..64;
    # the top bins sit near the ceiling, so a tie there would still leave rho >= 0.9 (the bar)
    assert spearman_over_bins(bins) >= 0.9
    assert spearman_over_bins(bins, key="loss_bits") <= -0.9


def test_most_exposed_bin_far_better_than_least(tiny_run):
    _, rows = tiny_run
    bins = by_exposure(rows, seed=0)
    lo, hi = bins[0], bins[-1]
    assert (lo["exposures"], hi["exposures"]) == (1, 64)
    # measured: recall 0.175 [0.10, 0.26] at 1 exposure/epoch vs 0.975 [0.94, 1.0] at 64;
    # loss 4.96 vs 0.15 bits on the value
    assert hi["accuracy"] - lo["accuracy"] >= 0.4
    assert hi["accuracy_lo"] > lo["accuracy_hi"]  # bootstrap CIs do not overlap
    assert lo["loss_bits"] - hi["loss_bits"] >= 2.0


def test_kl_gap_never_negative_and_shrinks(tiny_run):
    run, rows = tiny_run
    assert min(r["kl_bits"] for r in rows) >= -1e-4
    assert all(e["min_kl_bits"] >= -1e-4 for e in run.evals)
    kl = [e["kl_bits"] for e in run.evals]
    # measured: KL gap 4.24 → 2.75 → 1.92 → 1.67 bits (steps 100..400), H = 0.494 bits, min per-fact KL 0.047
    assert kl[-1] < 0.5 * kl[0]
    # the data entropy at attribute positions is exact and the same at every eval
    assert len({round(e["h_bits"], 9) for e in run.evals}) == 1 and run.evals[0]["h_bits"] > 0


def test_capacity_is_positive_and_below_the_fact_table(tiny_run):
    run, rows = tiny_run
    facts, _ = preset("tiny")
    cap = capacity_bits(rows, facts.n_values, run.wb.n_params())
    # measured: 1669 of 2568 bits, 0.011 bits/parameter (the tiny corpus is far below capacity)
    assert 0.5 * cap["max_bits"] < cap["bits"] <= cap["max_bits"]
    assert 0 < cap["bits_per_param"] < 2.0


def test_resume_after_interrupt_gives_the_same_weights(tmp_path):
    facts = FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1)
    cfg = TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, steps=12, batch_size=4, warmup=2,
                      checkpoint_every=5, eval_every=6, seed=0)
    corpus = generate(facts)
    full = train(corpus, cfg, tmp_path / "full", device="cpu", progress=False)
    train(corpus, cfg, tmp_path / "cut", device="cpu", progress=False, stop_at=7)
    assert [p.name for p in checkpoints(tmp_path / "cut")] == ["step-000005", "step-000007"]
    resumed = train(corpus, cfg, tmp_path / "cut", device="cpu", progress=False)
    assert resumed.step == full.step == 12
    a, b = full.wb.bridge.original_model.state_dict(), resumed.wb.bridge.original_model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert [e["step"] for e in resumed.evals] == [6, 12]
    assert [x["loss"] for x in resumed.losses] == pytest.approx([x["loss"] for x in full.losses], abs=1e-6)


def test_where_frequent_and_rare_facts_live(tiny_run):
    """Direct logit attribution per exposure bin (one corpus-template query per fact).

    Measured (seed 0), margin = answer logit − mean logit of the other 23 values:
    margin 1.22 → 2.27 → 3.18 → 4.69 → 5.94 → 6.96 → 7.44 logits for 1..64 exposures; FFN share of
    |DLA| 0.68 0.68 0.70 0.68 0.71 0.71 0.70 (flat: rare facts are written by the same layers, only
    weaker); attention's signed effect 0.16 → 2.13. On the raw answer logit the FFN share falls from
    0.89 [0.88, 0.90] to 0.83 [0.81, 0.85]: a generic "a value comes next" push from FFN layer 0 that
    does not depend on the fact is a smaller part of the logit of well-known facts.
    """
    from ffnmem.methods.frequency import dla_by_exposure, dla_rows

    run, _ = tiny_run
    qs = [q for q in run.corpus.queries if not q["heldout"]]
    margin = dla_by_exposure(dla_rows(run.wb, qs, contrast=run.corpus.values), n_boot=500, seed=0)
    assert spearman_over_bins(margin, key="logit") >= 0.9
    assert margin[-1]["logit"] - margin[0]["logit"] >= 3.0
    shares = [b["ffn_share"] for b in margin]
    assert all(0.55 <= s <= 0.85 for s in shares)  # FFN layers carry most of the margin in every bin
    assert max(shares) - min(shares) <= 0.15  # ... about equally for rare and frequent facts
    assert margin[-1]["attn"] - margin[0]["attn"] >= 1.0
    raw = dla_by_exposure(dla_rows(run.wb, qs), n_boot=500, seed=0)
    assert raw[0]["ffn_share_lo"] > raw[-1]["ffn_share_hi"]
