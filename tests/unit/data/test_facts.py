"""Fact loader: schema errors name file and line; subject spans; answer tokenisation checks."""

from __future__ import annotations

import json

import pytest

from ffnmem.core.errors import BadInput
from ffnmem.data.facts import answer_ids, check_first_token, encode_facts, load_facts, parse_fact, subject_span


def _write(tmp_path, rows):
    p = tmp_path / "f.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


GOOD = {"subject": "France", "relation": "capital_of", "prompt": "The capital of France is", "target": " Paris"}


def test_shipped_facts_load_and_cover_relations():
    facts = load_facts("all")
    assert len(facts) >= 300
    assert len({f.relation for f in facts}) >= 8
    assert all(f.subject in f.prompt and f.target.startswith(" ") for f in facts)


def test_seeded_sample_per_relation():
    first = load_facts("all", limit_per_relation=3)
    a = load_facts("all", limit_per_relation=3, sample_seed=0)
    b = load_facts("all", limit_per_relation=3, sample_seed=0)
    c = load_facts("all", limit_per_relation=3, sample_seed=1)
    relations = {f.relation for f in first}
    assert a == b and a != c and a != first
    assert all(sum(f.relation == r for f in a) == 3 for r in relations)
    # a relation's sample does not depend on which other relations are loaded
    one = load_facts("all", relations=["currency"], limit_per_relation=3, sample_seed=0)
    assert one == [f for f in a if f.relation == "currency"]


def test_malformed_line_names_file_and_line(tmp_path):
    p = _write(tmp_path, [GOOD, "{not json"])
    with pytest.raises(BadInput, match=r"f\.jsonl:2: not valid JSON"):
        load_facts(p)


def test_missing_field_and_subject_not_found(tmp_path):
    with pytest.raises(BadInput, match=r":1: field 'target'"):
        load_facts(_write(tmp_path, [{k: v for k, v in GOOD.items() if k != "target"}]))
    with pytest.raises(BadInput, match="not found verbatim"):
        parse_fact(json.dumps({**GOOD, "subject": "Spain"}))
    with pytest.raises(BadInput, match="exactly one space"):
        parse_fact(json.dumps({**GOOD, "target": "Paris"}))


def test_empty_set_and_unknown_relation(tmp_path):
    with pytest.raises(BadInput, match="empty"):
        load_facts(_write(tmp_path, [""]))
    with pytest.raises(BadInput, match="unknown relation 'nope'"):
        load_facts(_write(tmp_path, [GOOD]), relations=["nope"])


def test_subject_span_on_byte_tokenizer(tiny):
    start, end = subject_span(tiny, "The capital of France is", "France")
    toks = tiny.to_tokens("The capital of France is")[0, start:end].tolist()
    assert tiny.tokenizer.decode(toks) == "France"
    assert tiny.tokenizer.bos_token_id is not None  # else the next check says nothing
    start, end = subject_span(tiny, "The capital of France is", "France", prepend_bos=False)
    toks = tiny.to_tokens("The capital of France is", prepend_bos=False)[0, start:end].tolist()
    assert tiny.tokenizer.decode(toks) == "France"  # no BOS in the caller's tokens, none counted
    with pytest.raises(BadInput, match="not found"):
        subject_span(tiny, "The capital of France is", "Spain")


def test_subject_span_smollm2(smol):
    start, end = subject_span(smol, "The Eiffel Tower is located in", "Eiffel Tower")
    assert smol.str_tokens(smol.to_tokens("The Eiffel Tower is located in")[0, start:end]) == [" E", "iffel", " Tower"]


def test_answer_tokenisation_checks(tiny):
    assert answer_ids(tiny, "ab", " c") == tiny.encode(" c", prepend_bos=False)
    enc = encode_facts(tiny, [parse_fact(json.dumps(GOOD))])[0]
    with pytest.raises(BadInput, match="bare-space"):
        check_first_token(tiny, enc)  # a byte tokenizer spells ' Paris' as ' ', 'P', ...


def test_answer_that_merges_with_prompt_is_refused(smol):
    # "Hello," + " world" tokenises fine; a prompt ending in a space would merge differently
    with pytest.raises(BadInput, match="tokenises differently"):
        answer_ids(smol, "The capital of France is ", "Paris")
