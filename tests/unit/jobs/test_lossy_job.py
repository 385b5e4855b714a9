"""The lossy-compression job on a micro corpus: every table, resumable training, figures, registry."""

from __future__ import annotations

import dataclasses

import pandas as pd

from ffnmem.batch.registry import ANALYSES
from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.jobs import lossy as job
from ffnmem.methods.frequency import score_queries
from ffnmem.methods.training import TrainConfig, train

FACTS = FactConfig(n_entities=16, attributes=("birth_city", "employer"), n_values=8, value_law="zipf", bins=(1, 4),
                   value_noise=0.05, seed=1)
BASE = TrainConfig(n_layers=1, n_heads=2, steps=6, batch_size=8, warmup=2, eval_every=6, checkpoint_every=3)


def test_job_tables_resume_and_figures(tmp_path):
    corpus = generate(FACTS)
    p = job.LossyParams(n_boot=20, n_sim=20)
    models = job.train_models(corpus, BASE, [8, 4], run_dir=tmp_path / "runs", progress=False)
    assert [m["label"] for m in models] == ["d4", "d8"] and (tmp_path / "runs" / "d8" / "checkpoints").is_dir()
    res = job.compute(corpus, models, p, seed=0)
    assert set(res.tables) == {"models", "facts", "bins", "substitution", "substitution_rows",
                               "substitution_by_attribute", "kl_split", "survival", "value_frequencies", "forgetting"}
    facts = res.table("facts")
    assert set(facts["arm"]) == {"trained", "init", "unseen"} and len(facts) == 2 * 3 * len(corpus.facts)
    # the negative control is the untrained twin (same shape and seed, 0 steps), not the trained model
    twin = train(corpus, dataclasses.replace(BASE, d_model=4, d_mlp=16), None, device="cpu", progress=False, stop_at=0)
    want = score_queries(twin.wb, corpus.queries, value_sets=corpus.values, value_noise=FACTS.value_noise)
    init = facts[(facts["arm"] == "init") & (facts["model"] == "d4")]
    assert list(init["loss_bits"]) == [r["loss_bits"] for r in want]
    sub = res.table("substitution")
    assert len(sub) == 2 * 5 * 2  # model x arm x (top-1, forced value) and the nulls are probabilities
    assert set(sub["arm"]) == {"trained", "init", "unseen", "trained_rare", "trained_frequent"}
    assert ((sub["null_frequency"].dropna() > 0) & (sub["null_frequency"].dropna() < 1)).all()
    # the per-answer rows (what the claims' SQL reads) add up to the summary's counts
    rows = res.table("substitution_rows").groupby(["model", "arm", "key"])["top"].agg(["size", "sum"])
    summary = sub.set_index(["model", "arm", "key"])
    for k, r in rows.iterrows():
        assert (r["size"], r["sum"]) == (summary.loc[k, "n_substitutions"], summary.loc[k, "n_top"])
    assert len(rows) == (sub["n_substitutions"] > 0).sum()
    surv = res.table("survival")
    assert list(surv["model"]) == ["d4"] * 2 + ["d8"] * 2 and list(surv["bin_lo"]) == [1, 4, 1, 4]
    vf = res.table("value_frequencies")
    assert vf.groupby("attribute")["frequency"].sum().round(9).eq(1).all()
    # resumed from the checkpoints: the same weights, so the same scores
    again = job.compute(corpus, job.train_models(corpus, BASE, [4, 8], run_dir=tmp_path / "runs", progress=False), p)
    pd.testing.assert_frame_equal(again.table("facts"), facts)
    job.write(res, tmp_path / "out")
    for name in ("survival.png", "substitution.png", "recall_by_value_rank.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert ANALYSES["lossy_compression"].data == "none"
