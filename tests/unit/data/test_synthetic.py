"""Synthetic fact corpora: determinism, exposure laws, exact entropy, tokenizer round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactConfig, FactCorpus, exposure_counts, generate, noisy_entropy_bits
from ffnmem.data.vocab import build_tokenizer

SMALL = FactConfig(n_entities=14, bins=(1, 2, 4), n_values=8, seed=3)


def test_same_seed_same_corpus_and_different_seed_differs():
    a, b = generate(SMALL), generate(SMALL)
    assert a.documents == b.documents and a.facts == b.facts and a.queries == b.queries
    import dataclasses
    assert generate(dataclasses.replace(SMALL, seed=4)).documents != a.documents


def test_exposures_match_document_counts():
    c = generate(SMALL)
    for e in c.entities:
        n_docs = sum(d.count(e + " ") > 0 for d in c.documents)
        want = {f["exposures"] for f in c.facts if f["entity"] == e}
        assert want == {n_docs}
    assert len(c.facts) == 14 * len(SMALL.attributes)


@pytest.mark.parametrize("law", ["zipf", "loguniform"])
def test_exposure_laws_in_range(law):
    cfg = FactConfig(n_entities=50, law=law, max_exposure=100, min_exposure=2)
    counts = exposure_counts(cfg, np.random.default_rng(0))
    assert counts.min() >= 2 and counts.max() <= 100 and len(counts) == 50


def test_exposure_laws_follow_their_shape():
    # zipf: the entity of rank r is seen max · r^(−a) times (floored at min), in shuffled order
    cfg = FactConfig(n_entities=50, law="zipf", max_exposure=100, min_exposure=2, zipf_a=1.0)
    counts = exposure_counts(cfg, np.random.default_rng(0))
    assert sorted(counts, reverse=True) == [max(2, round(100 / r)) for r in range(1, 51)]
    assert list(counts) != sorted(counts, reverse=True)
    # log-uniform on [2, 100]: P(count <= 14) = (ln 14.5 − ln 2) / (ln 100 − ln 2) ≈ 0.506 (sd 0.011 at n = 2000)
    cfg = FactConfig(n_entities=2000, law="loguniform", max_exposure=100, min_exposure=2)
    counts = exposure_counts(cfg, np.random.default_rng(0))
    want = (math.log(14.5) - math.log(2)) / (math.log(100) - math.log(2))
    assert abs((counts <= 14).mean() - want) < 0.04


def test_value_noise_entropy_exact():
    assert noisy_entropy_bits(0.0, 24) == 0.0
    assert noisy_entropy_bits(0.999999999, 8) == pytest.approx(3.0, abs=1e-6)
    eps, n = 0.1, 4
    p = [1 - eps + eps / n] + [eps / n] * 3
    assert noisy_entropy_bits(eps, n) == pytest.approx(-sum(x * math.log2(x) for x in p))


def test_noisy_corpus_writes_wrong_values_at_about_the_noise_rate():
    import dataclasses
    c = generate(dataclasses.replace(SMALL, bins=(40,), value_noise=0.3))
    truth = {(f["entity"], f["value"]) for f in c.facts if f["attribute"] == "employer"}
    hits = total = 0
    for d in c.documents:
        for s in (x.strip() for x in d.split(" .") if x.strip()):
            if " works for " in s or "employed by" in s or "employer of" in s:
                total += 1
                hits += any(e in s and s.split()[-1] == v for e, v in truth)
    assert 0.6 < hits / total < 0.85  # expect 1 - 0.3 + 0.3/8 ≈ 0.74


def test_tokenizer_one_token_per_word_and_round_trip(tmp_path):
    c = generate(SMALL)
    tok = build_tokenizer(c)
    doc = c.documents[0]
    ids = tok(doc, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(doc.split()) and tok.unk_token_id not in ids
    assert tok.decode(ids) == doc
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(tmp_path)(doc, add_special_tokens=False)["input_ids"] == ids


def test_save_load(tmp_path):
    c = generate(SMALL)
    c2 = FactCorpus.load(c.save(tmp_path / "facts"))
    assert c2.documents == c.documents and c2.config == c.config and c2.queries == c.queries


def test_queries_end_before_the_value():
    c = generate(SMALL)
    for q in c.queries:
        assert q["answer"] not in q["prompt"].split()
    assert any(q["heldout"] for q in c.queries) and any(not q["heldout"] for q in c.queries)


@pytest.mark.parametrize("kwargs", [dict(n_entities=0), dict(law="zipf", zipf_a=-1.0), dict(law="zipf", zipf_a=float("nan")),
                                    dict(bins=()), dict(attributes=("shoe_size",)), dict(value_noise=1.0),
                                    dict(min_exposure=5, max_exposure=2), dict(n_values=1), dict(law="powerlaw")])
def test_bad_settings_one_line(kwargs):
    with pytest.raises(BadInput) as err:
        FactConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_unseen_queries_are_fresh_facts_in_the_corpus_vocabulary():
    from ffnmem.data.synthetic import ATTRIBUTES, unseen_queries

    c = generate(SMALL)
    qs = unseen_queries(c, seed=0)
    assert qs == unseen_queries(c, seed=0) and qs != unseen_queries(c, seed=1)  # seeded
    assert len(qs) == SMALL.n_entities * len(SMALL.attributes)
    names = {q["entity"] for q in qs}
    assert len(names) == SMALL.n_entities and not names & set(c.entities)  # new subjects, disjoint
    tok = build_tokenizer(c)
    for q in qs:
        assert q["answer"] in c.values[q["attribute"]] and q["exposures"] == 0 and not q["heldout"]
        assert q["template"] < SMALL.templates_per_attribute  # a template the corpus uses
        assert q["prompt"] == ATTRIBUTES[q["attribute"]][q["template"]].split(" {value}")[0].format(name=q["entity"])
        assert tok.unk_token_id not in tok(q["prompt"], add_special_tokens=False)["input_ids"]
        assert q["entity"] not in " ".join(c.documents)  # the corpus never mentions them
    # values drawn uniformly from the whole value set: 200 fresh entities over 8 values hit every one
    import dataclasses
    c2 = generate(dataclasses.replace(SMALL, n_entities=60))
    many = unseen_queries(c2, 200, seed=2)
    for a in SMALL.attributes:
        assert {q["answer"] for q in many if q["attribute"] == a} == set(c2.values[a])
    with pytest.raises(BadInput, match="cannot make"):
        unseen_queries(c, 10_000)


def test_uniform_value_law_leaves_corpora_byte_for_byte_unchanged(monkeypatch):
    # the draw of the true values as it was before the value law existed (commit e81e9cd)
    import dataclasses

    from ffnmem.data import synthetic

    def before(cfg, rng, values):
        return {(i, a): values[a][int(rng.integers(cfg.n_values))] for i in range(cfg.n_entities) for a in cfg.attributes}

    old = FactConfig(n_entities=30, law="zipf", max_exposure=20, n_values=12, value_noise=0.1, junk_share=0.1, seed=5)
    now = [generate(SMALL), generate(old)]
    monkeypatch.setattr(synthetic, "_true_values", before)
    for a, b in zip(now, [generate(SMALL), generate(old)]):
        assert (a.documents, a.facts, a.queries, a.entities, a.values) == (b.documents, b.facts, b.queries, b.entities,
                                                                           b.values)
    assert "value_law" not in SMALL.to_dict()  # corpus config.json, run fingerprints and provenance unchanged
    z = dataclasses.replace(SMALL, value_law="zipf")
    assert FactConfig.from_dict(z.to_dict()) == z and FactConfig.from_dict(SMALL.to_dict()) == SMALL


def test_zipf_value_law_draws_values_with_zipf_frequencies():
    from collections import Counter

    from ffnmem.data.synthetic import value_weights

    cfg = FactConfig(n_entities=4000, bins=(1,), n_values=10, value_law="zipf", value_zipf_a=1.0, seed=2)
    w = value_weights(cfg)
    assert w[0] == pytest.approx(1 / sum(1 / r for r in range(1, 11)))  # rank^-1, normalised
    c = generate(cfg)
    tops = []
    for a in cfg.attributes:
        counts = Counter(f["value"] for f in c.facts if f["attribute"] == a)
        shares = np.array(sorted(counts.values(), reverse=True)) / cfg.n_entities
        assert np.abs(shares - w).max() < 0.03  # sd of a share at n = 4000 is <= 0.008
        tops.append(c.values[a].index(counts.most_common(1)[0][0]))
    assert len(set(tops)) > 1  # each attribute ranks its values in its own seeded order
    assert generate(cfg).facts == c.facts  # seeded


def test_value_noise_stays_uniform_under_the_zipf_law():
    # the data-entropy formula assumes a noisy mention is a uniform draw, whatever the value law
    from collections import Counter

    cfg = FactConfig(n_entities=60, bins=(40,), n_values=8, value_law="zipf", value_zipf_a=2.0, value_noise=0.5,
                     attributes=("employer",), seed=1)
    c = generate(cfg)
    truth = {f["entity"]: f["value"] for f in c.facts}
    mode = Counter(truth.values()).most_common(1)[0][0]
    # wrong mentions of the entities whose true value is not the mode
    wrong = [s.split()[-1] for d in c.documents for s in d.split(" .") if s.strip()
             for e in [next(e for e in truth if e in s)] if s.split()[-1] != truth[e] != mode]
    assert len(wrong) > 150  # ~20 such entities · 40 mentions · 1/2 noisy · 7/8 wrong
    # uniform noise writes the mode in 1/7 of them; noise drawn by the Zipf law (a = 2: mode share
    # 0.66) would write it in about 0.66 / (1 − f(truth)) > 0.7 of them
    assert 0.07 < sum(v == mode for v in wrong) / len(wrong) < 0.22
    assert c.value_entropy_bits() == noisy_entropy_bits(0.5, 8)


@pytest.mark.parametrize("kwargs", [{"value_law": "pareto"}, {"value_law": "zipf", "value_zipf_a": 0.0},
                                    {"value_zipf_a": float("inf")}])
def test_bad_value_law_one_line(kwargs):
    with pytest.raises(BadInput) as err:
        FactConfig(**kwargs)
    assert "\n" not in str(err.value)
