"""The Ray executor on a local Ray instance (started once per test session): same numbers as local,
and a worker that dies mid-unit is one clear line with a consistent catalogue."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ffnmem.batch import registry as A
from ffnmem.batch import runner as B
from ffnmem.core.errors import FfnmemError
from ffnmem.store import catalog as C

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_and_local_give_identical_numbers(local_ray, tmp_path):
    b = B.load_batch(ROOT / "probes" / "tiny-ablation.toml")
    on_ray = B.run_batch(b, tmp_path / "ray", executor="ray", progress=False)
    local = B.run_batch(b, tmp_path / "local", progress=False)
    q = "SELECT subject, p_clean, p_top, p_random FROM ablation_topk_vs_random_prompts ORDER BY subject"
    got, want = C.query(on_ray, q), C.query(local, q)
    assert len(got) == 8 and got.equals(want)  # bit-identical, not just close


class DieParams(A.Params):
    pass


def _die(wb, data, p, seed):
    os._exit(1)  # the worker process dies mid-unit


def test_worker_death_is_one_line_and_catalogue_stays_consistent(local_ray, tmp_path, monkeypatch):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setitem(A.ANALYSES, "die", A.Analysis("die", DieParams, _die, "facts"))
    text = (ROOT / "probes" / "tiny-ablation.toml").read_text().replace("[outputs]", '[[analysis]]\nname = "die"\n\n[outputs]')
    p = tmp_path / "b.toml"
    p.write_text(text.replace('facts = "capital_of.jsonl"', f'facts = "{ROOT}/data/facts/capital_of.jsonl"'))
    b = B.load_batch(p)
    with pytest.raises(FfnmemError, match=r"2 of 4 units failed .*Ray worker died mid-unit.*rerun the same command"):
        B.run_batch(b, tmp_path / "run", executor="ray", progress=False)
    units = C.query(tmp_path / "run", "SELECT analysis, status, error FROM units ORDER BY analysis")
    assert units.status.tolist() == ["done", "done", "failed", "failed"]
    assert units.error[2].startswith("the Ray worker died mid-unit")
    assert C.query(tmp_path / "run", "SELECT count(*) n FROM ablation_topk_vs_random_prompts")["n"][0] == 8
