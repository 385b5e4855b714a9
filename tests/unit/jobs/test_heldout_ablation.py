"""The held-out ablation jobs on the tiny model: one row per fact, selection and validation prompts
apart, the partner from the same relation, and ablation that changes p(answer)."""

from __future__ import annotations

import pytest

from ffnmem.batch.registry import ANALYSES, UnitData
from ffnmem.data.facts import Fact, encode_facts, load_facts
from ffnmem.methods.ablation import top_vs_random


@pytest.fixture(scope="module")
def facts():
    fs = load_facts(["capital_of.jsonl", "currency.jsonl"], limit_per_relation=3)
    return fs + [Fact(subject="Nowhere", relation="capital_of", prompt="The capital of Nowhere is", target=" X")]


def test_heldout_rows(tiny, facts):
    a = ANALYSES["ablation_heldout"]
    res = a.fn(tiny, UnitData(facts=facts), a.params(k=4, modes=["zero", "mean"], random_sets=3,
                                                     reference_windows=2, first_token="any"), 0)
    rows = res.table("facts")
    assert res.meta["skipped_no_paraphrase"] == 1 and len(rows) == 2 * 6
    assert (rows["select_prompt"] != rows["eval_prompt"]).all()
    by = {(r.subject, r.mode): r for r in rows.itertuples()}
    for r in rows.itertuples():
        assert by[(r.other_subject, r.mode)].relation == r.relation and r.other_subject != r.subject
        assert sum(int(c.split(":")[1]) for c in r.layer_hist.split(",")) == 4
    zero = rows[rows["mode"] == "zero"]
    assert (zero["p_own"] != zero["p_clean"]).all() and (zero["drop_random"] != 0).all()
    # same selection and ablation as the older same-prompt job: identical drop on the selection prompt
    answers = [e.answer_ids[0] for e in encode_facts(tiny, facts[:6])]
    old = top_vs_random(tiny, list(zero["select_prompt"]), answers, k=4)
    assert list(zero["drop_own_select"]) == pytest.approx([(o["p_clean"] - o["p_top"]) / o["p_clean"] for o in old])


def test_knowledge_neuron_rows(tiny, facts):
    a = ANALYSES["knowledge_neurons_heldout"]
    res = a.fn(tiny, UnitData(facts=facts[:2]), a.params(steps=4, random_sets=2, first_token="any"), 0)
    rows = res.table("facts")
    assert len(rows) == 2
    r = rows.iloc[0]
    # capital facts have two paraphrases: the prompt and paraphrases[1] select, paraphrases[0] validates
    assert r.select_prompts.count(" | ") == 1 and r.eval_prompt not in r.select_prompts
    assert r.n_neurons >= 1 and r.p_kn != r.p_clean
