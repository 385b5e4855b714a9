"""Recall: batched scoring equals one-by-one; scoring modes are recorded."""

from __future__ import annotations

import json

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.data.facts import encode_facts, parse_fact
from ffnmem.methods.recall import group_by_length, recall, score_answer, score_encoded

FACTS = [parse_fact(json.dumps({"subject": s, "relation": r, "prompt": p, "target": t})) for s, r, p, t in [
    ("France", "capital_of", "The capital of France is", " Paris"),
    ("Italy", "capital_of", "The capital of Italy is", " Rome"),
    ("Peru", "capital_of", "The capital of Peru is", " Lima"),
    ("Japan", "language", "In Japan people speak", " Japanese"),
]]


def test_group_by_length():
    assert group_by_length([3, 5, 3, 3], 2) == [[0, 2], [3], [1]]


def test_score_answer_pure():
    lp = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]), -1)
    s = score_answer(lp, 2, [1, 0], "sequence", k=2)
    assert s["top1"] and s["rank"] == 0
    assert s["logp"] == pytest.approx(float(lp[1, 1] + lp[2, 0]))
    assert score_answer(lp, 2, [2], "first_token", k=2)["rank"] == 1


def test_batched_equals_one_by_one(tiny):
    enc = encode_facts(tiny, FACTS)
    batched = score_encoded(tiny, enc, scoring="sequence", batch_size=8)
    single = [score_encoded(tiny, [e], scoring="sequence", batch_size=1)[0] for e in enc]
    for a, b in zip(batched, single):
        assert a["logp"] == pytest.approx(b["logp"], abs=1e-4)
        assert a["rank"] == b["rank"]


def test_recall_result_records_scoring(smol):
    res = recall(smol, FACTS, scoring="first_token", k=5)
    assert res.meta["scoring"] == "first_token"
    rel = res.table("relations").set_index("relation")
    assert rel.loc["ALL", "n"] == 4
    assert rel.loc["capital_of", "top1"] >= 2 / 3  # SmolLM2 knows Paris and Rome at least (measured: 3/3)


def test_bad_scoring(tiny):
    with pytest.raises(BadInput, match="unknown scoring"):
        recall(tiny, FACTS, scoring="best")
