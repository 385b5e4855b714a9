"""The analysis registry: every ablation mode runs through a batch unit."""

from __future__ import annotations

import pytest

from ffnmem.batch.registry import ANALYSES, UnitData
from ffnmem.data.facts import load_facts


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_ablation_modes_run_in_batches(tiny, mode):
    a = ANALYSES["ablation_topk_vs_random"]
    facts = load_facts("capital_of.jsonl", limit_per_relation=2)
    res = a.fn(tiny, UnitData(facts=facts, max_windows=4), a.params(k=3, mode=mode, first_token="any"), 0)
    rows = res.table("prompts")
    assert len(rows) == 2 and (rows["p_top"] != rows["p_clean"]).all()


def test_a_name_cannot_be_registered_twice():
    from ffnmem.batch.registry import Params, register

    with pytest.raises(ValueError, match="registered twice"):
        register("recall", Params, lambda *a: None)
