"""Synthetic fact corpora: determinism, exposure laws, exact entropy, tokenizer round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactConfig, FactCorpus, build_tokenizer, exposure_counts, generate, noisy_entropy_bits

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
