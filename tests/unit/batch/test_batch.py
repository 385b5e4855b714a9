"""Batch files: validation errors (file, line, choices), units, resume after SIGKILL, locks, schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffnmem.batch import runner as B
from ffnmem.core.errors import BadInput
from ffnmem.store import catalog as C

ROOT = Path(__file__).resolve().parents[3]
FACTS = ROOT / "data" / "facts" / "capital_of.jsonl"

BASE = f"""name = "t"
models = ["tiny-2l"]
[data]
facts = "{FACTS}"
limit_per_relation = 6
shards = 3
[[analysis]]
name = "recall"
scoring = "sequence"
[[analysis]]
name = "direct_effects"
first_token = "any"
top = 3
"""


def write(tmp_path, text: str, name="b.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_analysis_names_file_line_and_choices(tmp_path):
    p = write(tmp_path, BASE.replace('name = "direct_effects"', 'name = "direct_efects"'))
    with pytest.raises(BadInput, match=r"b\.toml:11: unknown analysis 'direct_efects'; choose from .*causal_trace"):
        B.load_batch(p)


def test_unknown_parameter_names_line_and_allowed(tmp_path):
    p = write(tmp_path, BASE.replace("top = 3", "topp = 3"))
    with pytest.raises(BadInput, match=r"b\.toml:13: analysis 'direct_effects' has no parameter 'topp'; allowed: .*top"):
        B.load_batch(p)


def test_bad_value_and_unknown_section_key(tmp_path):
    with pytest.raises(BadInput, match=r"b\.toml:6: \[data\] parameter 'data.shards'"):
        B.load_batch(write(tmp_path, BASE.replace("shards = 3", "shards = 0")))
    with pytest.raises(BadInput, match=r"b\.toml:6: \[data\] has no parameter 'shard'"):
        B.load_batch(write(tmp_path, BASE.replace("shards = 3", "shard = 3")))


def test_malformed_toml_reports_line_and_column(tmp_path):
    with pytest.raises(BadInput, match=r"malformed TOML: .*line 3, column"):
        B.load_batch(write(tmp_path, BASE.replace("[data]", "[data")))


def test_missing_data_is_one_line(tmp_path):
    with pytest.raises(BadInput, match=r"\[data\] facts: fact file .*nope.jsonl does not exist"):
        B.load_batch(write(tmp_path, BASE.replace(str(FACTS), "nope.jsonl")))


def test_units_and_shards_cover_the_facts(tmp_path):
    b = B.load_batch(write(tmp_path, BASE))
    us = B.units(b)
    assert len(us) == 6 and len({u.unit_id for u in us}) == 6
    shards = [B.unit_data(b, u).facts for u in us if u.analysis == "recall"]
    assert sorted(f.subject for s in shards for f in s) == sorted(f.subject for f in B._facts(b))


def test_run_resume_is_idempotent_and_sharding_does_not_change_numbers(tmp_path):
    b = B.load_batch(write(tmp_path, BASE))
    run = B.run_batch(b, tmp_path / "run", progress=False)
    one = B.load_batch(write(tmp_path, BASE.replace("shards = 3", "shards = 1"), "one.toml"))
    run1 = B.run_batch(one, tmp_path / "run1", progress=False)
    q = "SELECT subject, logp FROM recall_facts ORDER BY subject"
    assert C.query(run, q).equals(C.query(run1, q))
    mtimes = {p: p.stat().st_mtime_ns for p in (run / "units").glob("*/header.json")}
    (run / "units" / ".x__recall.abc.tmp" / "tables").mkdir(parents=True)  # as a save killed mid-write leaves
    B.run_batch(b, run, progress=False)  # nothing left to do; the leftover is removed
    assert not list((run / "units").glob(".*"))
    assert mtimes == {p: p.stat().st_mtime_ns for p in (run / "units").glob("*/header.json")}
    assert C.query(run, "SELECT count(*) n FROM recall_facts")["n"][0] == 6


def test_newer_catalogue_schema_is_refused(tmp_path):
    b = B.load_batch(write(tmp_path, BASE))
    run = B.run_batch(b, tmp_path / "run", progress=False)
    m = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**m, "catalog_schema": 99}))
    with pytest.raises(BadInput, match="newer ffnmem .*upgrade"):
        C.query(run, "SELECT * FROM units")


def test_live_lock_refuses_and_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    p = write(tmp_path, BASE)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    with C.run_lock(run):  # a second process trying to write the same run folder refuses, one line
        res = subprocess.run([sys.executable, "-m", "ffnmem", "run", str(p), "--out", str(run)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"is being written by process {os.getpid()}@" in res.stderr
    assert not (run / "run.json").exists()  # the refused run wrote nothing
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".run.lock"
    lock.write_text(f"{dead.pid}@{os.uname().nodename}")  # what a killed writer leaves: text, but no flock
    with C.run_lock(run):
        assert lock.read_text().startswith(str(os.getpid()))


def test_sigkill_mid_run_then_resume(tmp_path):
    text = BASE.replace("shards = 3", "shards = 6").replace("limit_per_relation = 6", "limit_per_relation = 12")
    p = write(tmp_path, text + '[[analysis]]\nname = "causal_trace"\nfirst_token = "any"\nn_samples = 2\n')
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ffnmem", "run", str(p), "--out", str(run)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run / "units").glob("*/header.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name for p in (run / "units").glob("*/header.json")}
    assert 3 <= len(done_before) < 18, "kill the run mid-way"
    assert (tmp_path / ".run.lock").exists()  # left behind by the killed process, its flock gone with it
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    units = C.query(run, "SELECT unit_id, status FROM units")
    assert (units.status == "done").all() and len(units) == 18
    assert C.query(run, "SELECT count(*) n FROM recall_facts")["n"][0] == 12  # nothing counted twice
    assert not list((run / "units").glob(".*"))  # no temp folders left in the catalogue


def test_analysis_that_builds_its_own_model_runs_once_per_seed(tmp_path):
    """data='none' analyses (toy superposition, synthetic training) load no model and ignore the models list."""
    from ffnmem.store import catalog

    text = '''name = "toy"
models = ["tiny-2l", "tiny-gated"]
seeds = [0]

[[analysis]]
name = "toy_superposition"
sparsities = [0.0, 0.99]
steps = 300
'''
    b = B.load_batch(write(tmp_path, text))
    assert [u.model for u in B.units(b)] == ["none"]
    B.run_batch(b, tmp_path / "run", progress=False)
    rows = catalog.query(tmp_path / "run", "SELECT sparsity, represented FROM toy_superposition_sweep ORDER BY sparsity")
    assert rows["represented"].tolist()[1] > rows["represented"].tolist()[0]


@pytest.mark.parametrize("old, new, match", [
    ('models = ["tiny-2l"]', 'models = ["tiny-2l", "tiny-2l"]', r"b\.toml:2: the batch parameter 'models'.*tiny-2l more than once"),
    ('models = ["tiny-2l"]', 'models = ["tiny-2l"]\nseeds = [0, 1, 0]', r"b\.toml:3: the batch parameter 'seeds'.*0 more than once"),
    ("shards = 3", "shards = 999", r"b\.toml:6: \[data\] shards = 999 but the facts hold only 6"),
    ('models = ["tiny-2l"]', 'models = ["tiny-2l"]\ndevice = "gpu"', r"b\.toml:3: .*'device'.*'cpu', 'cuda' or 'auto'"),
    ('models = ["tiny-2l"]', 'models = ["a/b", "a_b"]', r"models 'a/b' and 'a_b' give the same unit id"),
])
def test_batches_that_would_give_ambiguous_or_empty_units_are_refused(tmp_path, old, new, match):
    with pytest.raises(BadInput, match=match):
        B.load_batch(write(tmp_path, BASE.replace(old, new)))


def test_check_resolves_models_and_device_without_loading(tmp_path, monkeypatch):
    import ffnmem.core.models

    monkeypatch.setattr(ffnmem.core.models, "load_model", lambda *a, **k: pytest.fail("--check loaded a model"))
    assert len(B.check_batch(B.load_batch(write(tmp_path, BASE)))) == 6
    with pytest.raises(BadInput, match=r"b\.toml:2: unknown model 'tiny-3l'"):
        B.check_batch(B.load_batch(write(tmp_path, BASE.replace('"tiny-2l"', '"tiny-3l"'))))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cuda = B.load_batch(write(tmp_path, BASE.replace('models = ["tiny-2l"]', 'models = ["tiny-2l"]\ndevice = "cuda"')))
    with pytest.raises(BadInput, match=r"b\.toml:3: device 'cuda' was asked for but no CUDA GPU"):
        B.check_batch(cuda)
    assert len(B.check_batch(cuda, local=False)) == 6  # Ray: the workers must have it, not this machine


def _boom(wb, data, p, seed):
    raise RuntimeError("something unexpected\nsecond line")


def test_unexpected_exception_fails_its_unit_and_the_batch_goes_on(tmp_path, monkeypatch):
    from ffnmem.batch import registry as A

    monkeypatch.setitem(A.ANALYSES, "boom", A.Analysis("boom", A.Params, _boom, "facts"))
    text = BASE.replace("shards = 3", "shards = 1").replace('[[analysis]]\nname = "direct_effects"',
                                                            '[[analysis]]\nname = "boom"\n\n[[analysis]]\nname = "direct_effects"')
    b = B.load_batch(write(tmp_path, text))
    with pytest.raises(B.UnitsFailed, match=r"^1 of 3 units failed \(first: .*boom.*: RuntimeError: something unexpected\)"):
        B.run_batch(b, tmp_path / "run", progress=False)
    rows = C.query(tmp_path / "run", "SELECT analysis, status, error FROM units ORDER BY analysis")
    assert rows.status.tolist() == ["failed", "done", "done"]
    assert rows.error[0] == "RuntimeError: something unexpected"


def test_ctrl_c_stops_the_batch(tmp_path, monkeypatch):
    from ffnmem.batch import registry as A

    def interrupt(*a):
        raise KeyboardInterrupt

    monkeypatch.setitem(A.ANALYSES, "boom", A.Analysis("boom", A.Params, interrupt, "facts"))
    b = B.load_batch(write(tmp_path, BASE.replace('name = "recall"', 'name = "boom"').replace('scoring = "sequence"\n', '')))
    with pytest.raises(KeyboardInterrupt):
        B.run_batch(b, tmp_path / "run", progress=False)
    assert not any("direct_effects" in p.name for p in (tmp_path / "run").rglob("*"))  # nothing ran after it


def test_unreachable_ray_address_is_one_line_in_seconds(tmp_path):
    pytest.importorskip("ray")
    b = B.load_batch(write(tmp_path, BASE))
    t0 = time.perf_counter()
    with pytest.raises(BadInput, match=r"^cannot (reach|start or join) .*127\.0\.0\.1:1") as exc:
        B.run_batch(b, tmp_path / "run", executor="ray", address="ray://127.0.0.1:1", progress=False)
    assert "\n" not in str(exc.value) and time.perf_counter() - t0 < 20


def _nan_table(wb, data, p, seed):
    from ffnmem.store.results import Result, table_from_rows

    return Result(kind="nan", tables={"rows": table_from_rows([{"p": 0.5}, {"p": float("nan")}, {"p": None}])})


def test_unit_with_nan_numbers_fails_and_is_never_marked_done(tmp_path, monkeypatch):
    from ffnmem.batch import registry as A

    monkeypatch.setitem(A.ANALYSES, "nan", A.Analysis("nan", A.Params, _nan_table, "facts"))
    text = BASE.replace("shards = 3", "shards = 1").replace('name = "direct_effects"\nfirst_token = "any"\ntop = 3',
                                                            'name = "nan"')
    with pytest.raises(B.UnitsFailed, match=r"table rows, column p holds 1 NaN/inf of 3 values"):
        B.run_batch(B.load_batch(write(tmp_path, text)), tmp_path / "run", progress=False)
    rows = C.query(tmp_path / "run", "SELECT analysis, status, path FROM units ORDER BY analysis")
    assert rows.status.tolist() == ["failed", "done"] and rows.path.isna().tolist() == [True, False]
