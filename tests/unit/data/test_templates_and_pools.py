"""Prefix-free templates and fixed name pools (issue 16)."""

from __future__ import annotations

import pytest

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import (
    ATTRIBUTES,
    FactConfig,
    generate,
    template_collisions,
    unseen_queries,
)


def test_templates_are_prefix_free_across_all_attributes():
    assert template_collisions() == []
    assert all(len(ts) == 4 for ts in ATTRIBUTES.values())


def test_the_check_finds_the_old_birth_city_birth_year_collision():
    old = {**ATTRIBUTES, "birth_year": ["{name} was born in the year {value} ."] + ATTRIBUTES["birth_year"][1:]}
    assert ("{name} was born in {value} .", "{name} was born in the year {value} .") in template_collisions(old)


def test_the_check_finds_two_attributes_with_the_same_prompt():
    same = {"a": ["{name} likes {value} ."], "b": ["{name} likes {value} ."], "c": ["{name} hates {value} ."]}
    assert template_collisions({"a": same["a"], "c": same["c"]}) == []
    assert len(template_collisions({"a": same["a"], "b": ["{name} likes {value} !"]})) == 2


def test_name_pools_bound_the_vocabulary():
    cfg = FactConfig(n_entities=600, first_names=30, last_names=40)
    c = generate(cfg)
    assert len(set(c.entities)) == 600
    assert len({e.split()[0] for e in c.entities}) <= 30 and len({e.split()[1] for e in c.entities}) <= 40
    names = {w for e in c.entities for w in e.split()}
    values = {v for vs in c.values.values() for v in vs}
    assert not names & values
    assert len(c.vocabulary()) < len(generate(FactConfig(n_entities=600)).vocabulary()) / 3
    assert generate(cfg).entities == c.entities  # seeded
    assert len(unseen_queries(c, 100)) == 100 * len(cfg.attributes)


def test_default_pools_keep_the_existing_entities():
    # the corpus of the main branch for this config (names drawn before the pool option existed)
    c = generate(FactConfig(n_entities=5))
    assert c.entities == ['Dubel Drutai', 'Shubroushol Robremem', 'Rulokol Rikodrai', 'Souvul Foudouso',
                          'Rulokol Geshuston']
    assert [f["value"] for f in c.facts[:4]] == ['Gaistanu', '1908', 'Kroufain', 'Brigunou']


@pytest.mark.parametrize("first,last,n", [(10, 0, 10), (3, 3, 5), (-1, -1, 5)])
def test_bad_pools_are_refused(first, last, n):
    with pytest.raises(BadInput, match="name pools"):
        FactConfig(n_entities=n, first_names=first, last_names=last)
