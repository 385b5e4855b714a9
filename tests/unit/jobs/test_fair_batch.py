"""The batch analysis ``architectures_fair`` with the per-arm analyses (issue 17 item 3)."""

from __future__ import annotations

from ffnmem.jobs.fair import FairParams, compute


def test_batch_unit_carries_the_per_arm_tables(one_thread):
    res = compute(FairParams(arms=["causal-nopos"], budgets=["steps"], steps=3, analyses=True), 0)
    assert {"facts", "capacity", "position_probe", "attention_rank", "dla_by_layer"} <= set(res.tables)
    probe = res.tables["position_probe"].to_pylist()
    assert {r["model"] for r in probe} == {"trained", "init"} and {r["inputs"] for r in probe} == {"documents", "random"}
    assert {r["arm"] for r in probe} == {"causal-nopos"} and max(r["depth"] for r in probe) == 2
    cap = res.tables["capacity"].to_pylist()
    assert cap[0]["params_non_embedding"] < cap[0]["params_all"]
