"""Results save and load with provenance, atomically."""

import json

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows


def _result(tiny, value=1.0):
    return Result(kind="t", tables={"rows": table_from_rows([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])},
                  tensors={"w": torch.full((2, 3), value)}, meta={"k": 3},
                  provenance=make_provenance(tiny, data_hash="abc", seed=7))


def test_round_trip(tmp_path, tiny):
    path = _result(tiny).save(tmp_path / "r")
    back = Result.load(path)
    assert back.kind == "t" and back.meta == {"k": 3}
    assert back.table("rows")["b"].tolist() == ["x", "y"]
    torch.testing.assert_close(back.tensors["w"], torch.ones(2, 3))
    prov = back.provenance
    assert prov["model_id"] == tiny.model_id and prov["weight_hash"] == tiny.weight_hash
    assert prov["seed"] == 7 and prov["data_hash"] == "abc" and "torch" in prov["versions"]


def test_interrupted_save_keeps_the_old_result(tmp_path, tiny, monkeypatch):
    path = _result(tiny, 1.0).save(tmp_path / "r")
    import ffnmem.store.results as results

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        _result(tiny, 2.0).save(path)
    torch.testing.assert_close(Result.load(path).tensors["w"], torch.ones(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_newer_schema_and_damaged_header(tmp_path, tiny):
    path = _result(tiny).save(tmp_path / "r")
    header = json.loads((path / "header.json").read_text())
    (path / "header.json").write_text(json.dumps({**header, "schema_version": 99}))
    with pytest.raises(BadInput, match="newer ffnmem"):
        Result.load(path)
    (path / "header.json").write_text("{broken")
    with pytest.raises(BadInput, match="damaged"):
        Result.load(path)
    with pytest.raises(BadInput, match="not an ffnmem result"):
        Result.load(tmp_path)
