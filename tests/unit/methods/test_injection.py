"""Fact injection (Chang et al.'s INJ): only the planted neurons change, the new facts are recalled,
and rankings are scored against the planted sets."""

from __future__ import annotations

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import tensor_hash
from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.methods import injection as inj
from ffnmem.methods.training import TrainConfig, train

FACTS = FactConfig(n_entities=12, bins=(4, 8), n_values=6, seed=1)
# one padded document per row: the base model these thresholds were set on (packed rows train another)
CFG = TrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=40, batch_size=16, warmup=4,
                  eval_every=1000, checkpoint_every=1000, seed=0, packing="none")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(one_thread):
    corpus = generate(FACTS)
    return train(corpus, CFG, None, device="cpu", progress=False).wb, corpus


@pytest.fixture(scope="module")
def injected(model):
    wb, corpus = model
    facts, held = inj.new_facts(corpus, 4, seed=0)
    before = {n: p.detach().clone() for n, p in wb.bridge.original_model.named_parameters()}
    hash0 = tensor_hash(wb.bridge.original_model.state_dict())
    done = inj.inject_facts(wb, facts, neurons_per_fact=4, layers=[0], steps=200, lr=5e-2, seed=0, stop_loss=0.3,
                            parts="key_value", heldout=held, others=inj.corpus_facts(corpus))
    after = {n: p.detach().clone() for n, p in wb.bridge.original_model.named_parameters()}
    done.undo(wb)
    yield done, before, after, hash0
    done.undo(wb)


def test_new_facts_are_unseen_with_answers_from_the_value_set(model):
    _, corpus = model
    facts, held = inj.new_facts(corpus, 5, seed=0)
    known = set(corpus.entities)
    assert len(facts) == len(held) == 5
    for f, h in zip(facts, held):
        assert f.subject not in known and f.target.strip() in corpus.values[f.relation]
        assert f.target not in f.distractors and len(f.distractors) == FACTS.n_values - 1
        assert len(f.paraphrases) == FACTS.templates_per_attribute - 1 and len(h) == 1


def test_only_planted_parameters_change(injected):
    done, before, after, _ = injected
    assert done.weight_check["ok"] and done.weight_check["changed_planted"] > 0
    # the same check made here, independently: rows of layer 0's fc_in / fc_out of the planted neurons
    planted = sorted({n for s in done.planted for _, n in s})
    for name in before:
        diff = (after[name] != before[name])
        if "layers.0" in name and "mlp" in name and "fc_out.weight" not in name and name.endswith(("weight", "bias")) \
                and "fc_in" in name:
            rows = diff.reshape(diff.shape[0], -1).any(-1).nonzero().flatten().tolist()
            assert set(rows) <= set(planted)
        elif "layers.0" in name and "fc_out._original_component.weight" in name:
            cols = diff.any(0).nonzero().flatten().tolist()
            assert set(cols) <= set(planted) and cols
        else:
            assert not diff.any(), name


def test_injected_facts_become_recalled(injected):
    done, *_ = injected
    assert not any(done.recalled_before)
    assert all(done.recalled_own)
    # later facts' neurons may disturb an earlier fact (reported, not hidden): on the prefix-free templates
    # (issue 16) the first two facts lose their margin to the last two, so the mean margin is no longer a
    # fair check; the last fact, injected after every other, must keep what its injection gave it
    assert sum(done.recalled) >= 2 and done.recalled[-1]
    assert done.margins[-1] > done.margins_before[-1] + 1
    assert done.others["n"] == FACTS.n_entities * len(FACTS.attributes)
    rows = done.rows()
    assert len(rows) == 4 and rows[0]["planted"].startswith("L0.")


def test_planted_sets_are_disjoint_and_in_the_given_layers(injected):
    done, *_ = injected
    flat = [x for s in done.planted for x in s]
    assert len(flat) == len(set(flat)) == 16 and {l for l, _ in flat} == {0}


def test_undo_restores_weights_and_hash(model, injected):
    wb, _ = model
    _, before, _, hash0 = injected
    for n, p in wb.bridge.original_model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
    assert wb.weight_hash == hash0


def test_inject_each_ranks_on_the_injected_model_then_undoes(model):
    wb, corpus = model
    facts, _ = inj.new_facts(corpus, 2, seed=3)
    hash0 = tensor_hash(wb.bridge.original_model.state_dict())
    seen = []
    injections, ranked = inj.inject_each(
        wb, facts, {"dla": lambda w, f: inj.dla_rankings(w, [f], [1])[0],
                    "hash": lambda w, f: seen.append(w.weight_hash) or []},
        neurons_per_fact=4, layers=[1], steps=5, seed=0)
    assert len(injections) == 2 and len(ranked["dla"]) == 2 and len(ranked["dla"][0]) == wb.d_mlp
    assert all(h != hash0 for h in seen) and wb.weight_hash == hash0
    assert injections[0].planted != injections[1].planted


def test_precision_recall_on_constructed_rankings():
    planted = {(0, 1), (0, 2), (1, 3), (1, 4)}
    ranked = [(0, 1, 9.0), (5, 5, 8.0), (0, 2, 7.0), (1, 3, 6.0), (1, 4, 5.0)]
    assert inj.precision_recall(ranked, planted, 4) == (0.75, 0.75)
    assert inj.precision_recall(ranked, planted, 2) == (0.5, 0.25)
    assert inj.precision_recall(ranked, planted, 5) == (0.8, 1.0)
    assert inj.precision_recall([(0, 1), (0, 1), (0, 2)], planted, 2) == (1.0, 0.5)  # duplicates counted once
    assert inj.precision_recall([(0, 1)], planted, 4) == (0.25, 0.25)  # short ranking: misses
    with pytest.raises(BadInput):
        inj.precision_recall(ranked, set(), 2)


def test_summary_ci_and_chance():
    planted = [[(0, i), (0, i + 1)] for i in range(0, 40, 2)]
    perfect = [[*p, (1, 0)] for p in planted]
    s = inj.summarize_localization(perfect, planted, 2, eligible=100)
    assert s["precision"] == s["recall"] == 1.0 and s["precision_lo"] == 1.0
    half = [[p[0], (1, 0)] if i % 2 else [(1, 0), (1, 1)] for i, p in enumerate(planted)]
    s = inj.summarize_localization(half, planted, 2, eligible=100)
    assert s["precision"] == pytest.approx(0.25) and s["precision_lo"] < 0.25 < s["precision_hi"]
    assert s["chance_precision"] == pytest.approx(0.02) and s["chance_recall"] == pytest.approx(0.02)


def test_random_rankings_match_chance():
    layers, d_mlp, k = [0, 1], 32, 4
    planted = inj.draw_neurons(layers, d_mlp, 8, k, seed=0)
    ranks = inj.random_rankings(layers, d_mlp, 400, seed=1)
    s = inj.summarize_localization(ranks, [planted[i % 8] for i in range(400)], k, eligible=64)
    assert s["precision_lo"] <= s["chance_precision"] <= s["precision_hi"]


def test_bad_settings_are_one_line_errors(model):
    wb, corpus = model
    facts, _ = inj.new_facts(corpus, 2, seed=0)
    with pytest.raises(BadInput, match="disjoint"):
        inj.inject_facts(wb, facts, neurons_per_fact=wb.d_mlp, layers=[0])
    with pytest.raises(BadInput, match="parts"):
        inj.inject_facts(wb, facts, parts="keys")


def test_retain_keeps_other_facts_closer_and_splits_collateral_by_relation(model):
    wb, corpus = model
    facts, _ = inj.new_facts(corpus, 1, seed=5)
    known = inj.corpus_facts(corpus)
    change = []
    for retain in (None, known):
        done = inj.inject_facts(wb, facts, neurons_per_fact=4, layers=[1], steps=60, lr=5e-2, seed=1,
                                parts="key_value", stop_loss=0.3, others=known, retain=retain, retain_weight=3.0)
        done.undo(wb)
        assert done.weight_check["ok"] and done.recalled_own == [True]
        assert {"recall_after_same", "recall_after_other"} <= set(done.others)
        change.append(done.others["margin_abs_change"])
    assert change[1] < 0.7 * change[0]
