"""Answer sets and alternatives for margin targets."""

import pytest

from ffnmem.core.errors import BadInput
from ffnmem.data.facts import EncodedFact, Fact
from ffnmem.methods.targets import alternatives, relation_answers


def _enc(subject, relation, answer, distractors=()):
    f = Fact(subject=subject, relation=relation, prompt=f"{subject} is", target=" x", where=f"f.jsonl:{subject}")
    return EncodedFact(fact=f, prompt_ids=[0, 1], answer_ids=[answer, 99], subject=(1, 2),
                       distractor_ids=[[d] for d in distractors])


def test_alternatives_are_the_relations_other_answers():
    enc = [_enc("a", "r", 5), _enc("b", "r", 6), _enc("c", "r", 5), _enc("d", "s", 7, distractors=(8, 7))]
    assert relation_answers(enc) == {"r": [5, 6], "s": [7]}
    alts = alternatives(enc)
    assert alts[:3] == [[6], [5], [6]]
    assert alts[3] == [8]  # a one-answer relation falls back to the fact's distractors, minus its answer


def test_a_fact_without_any_alternative_is_named():
    with pytest.raises(BadInput, match="f.jsonl:d"):
        alternatives([_enc("d", "s", 7)])
