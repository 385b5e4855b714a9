"""The browse job on fact results (no model): a locate card and a localization become fact pages whose
memories link to memory pages, and each memory's data lists the facts it carries; models never mix."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.jobs import browse
from ffnmem.store.results import Result, table_from_rows

PROV = {"model_id": "m", "weight_hash": "h"}
VAL = {"mode": "zero", "target_drop": 0.8, "random_drop": 0.1, "same_relation_drop": 0.2, "other_relation_drop": 0.05,
       "paraphrase_drop": 0.6, "k_half": 2}


def _card() -> Result:
    fact = {"prompt": "The capital of France is", "target": " Paris", "subject": "France", "relation": "capital_of",
            "predicted": " Paris", "p_answer": 0.7, "margin": 3.0, "alternatives": " Rome,  Berlin", "paraphrases": ""}
    mems = [{"method": "dla", "rank": r, "layer": 1, "neuron": n, "score": 1.0 - r / 10, "coefficient": 1.0,
             "promotes": [" Paris", " France"]} for r, n in enumerate((7, 3))]
    return Result(kind="fact_card", tables={"fact": table_from_rows([fact]), "memories": table_from_rows(mems),
                                            "validation": table_from_rows([{"method": "dla", **VAL}]),
                                            "cells": table_from_rows([{"layer": 1, "position": 4, "token": " France",
                                                                       "effect": 0.3}])},
                  tensors={"trace/mlp": torch.rand(2, 5), "trace/resid": torch.rand(2, 5)},
                  meta={"trace": {"tokens": ["<s>", "The", " capital", " of", " France"], "subject": [4, 5],
                                  "p_clean": 0.7, "p_corrupt": 0.1, "window": 1}}, provenance=PROV)


def _localization() -> Result:
    facts = [{"fact": 0, "relation": "capital_of", "subject": "Italy", "prompt": "The capital of Italy is",
              "target": " Rome", "margin": 2.0, "known": True, "subject_zipf": 5.0}]
    mems = [{"method": "knowledge_neurons", "fact": 0, "relation": "capital_of", "subject": "Italy", "rank": 0,
             "layer": 0, "neuron": 5, "score": 0.9}]
    return Result(kind="localization", tables={"facts": table_from_rows(facts), "memories": table_from_rows(mems),
                                               "validation": table_from_rows([{"method": "knowledge_neurons",
                                                                               "fact": 0, **VAL}]),
                                               "cells": table_from_rows([])},
                  meta={"params": {"k": 20}}, provenance=PROV)


def _layer(site, layer: int) -> dict:
    return json.loads(re.search(r",(\{.*\})\);", (site / "data" / f"layer-{layer}.js").read_text()).group(1))


def test_fact_results_give_fact_pages_linked_both_ways(tmp_path):
    _card().save(tmp_path / "run" / "locate" / "result")
    _localization().save(tmp_path / "run" / "localize" / "result")
    site = browse.build(tmp_path / "run", tmp_path / "site")
    assert (site.n_facts, site.n_memories, site.n_layers) == (2, 3, 2)
    page = (tmp_path / "site" / "facts" / "France.html").read_text()
    assert "href='../memory.html?layer=1&amp;neuron=7'" in page  # memories link to their pages
    assert "data:image/png;base64," in page  # the tracing heatmap, redrawn from the result's tensors
    assert "0.800" in page  # the validation's target drop
    assert "href='../memory.html?layer=0&amp;neuron=5'" in (tmp_path / "site" / "facts" / "Italy.html").read_text()
    carried = _layer(tmp_path / "site", 1)["7"]["f"]
    assert carried == [["facts/France.html", "The capital of France is Paris", "dla #1, score 1"]]
    assert _layer(tmp_path / "site", 1)["7"]["p"][0][0] == " Paris"  # no keys run: the card's value tokens


def test_results_of_two_models_are_refused(tmp_path):
    _card().save(tmp_path / "run" / "a")
    other = _localization()
    Result(kind=other.kind, tables=other.tables, meta=other.meta,
           provenance={"model_id": "n", "weight_hash": "g"}).save(tmp_path / "run" / "b")
    with pytest.raises(BadInput, match="several models"):
        browse.find_results(tmp_path / "run")
    assert browse.find_results(tmp_path / "run", model="n") == {"localization": [tmp_path / "run" / "b"]}
