"""The output policy: nothing a user made is replaced, results swap in whole, normal file modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from ffnmem.core import outputs, paths
from ffnmem.core.errors import BadInput
from ffnmem.store.results import Result

ROOT = Path(__file__).resolve().parents[3]
TINY = ("-m", "tiny-2l", "--device", "cpu", "--max-tokens", "64", "--window", "32", "--k", "2", "--layers", "0")


def result(value: int) -> Result:
    return Result(kind="test", tables={"t": pa.table({"v": [value]})}, tensors={"x": torch.full((3,), value)})


def value(path: Path) -> int:
    return Result.load(path).table("t").v[0]


def test_capture_refuses_a_foreign_folder_and_keeps_it(cli, tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "f").write_text("a")
    res = cli("capture", *TINY, "-o", keep)
    assert res.returncode == 2 and "ffnmem did not write" in res.stderr and "--force" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in keep.iterdir()) == ["f"] and (keep / "f").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]  # refused before anything, even a lock file


def test_force_replaces_a_foreign_result_folder(cli, tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "f").write_text("a")
    res = cli("capture", *TINY, "-o", keep, "--force")
    assert res.returncode == 0, res.stderr
    assert Result.load(keep).kind == "capture" and not (keep / "f").exists()


def test_force_writes_into_an_output_folder_and_keeps_foreign_files(cli, tmp_path):
    out = tmp_path / "toy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ("toy-superposition", "--n-features", "3", "--n-hidden", "1", "--steps", "2", "--grid", "2", "-o", out)
    assert cli(*args).returncode == 2
    res = cli(*args, "--force")
    assert res.returncode == 0, res.stderr
    assert (out / "notes.txt").read_text() == "mine" and Result.load(out / "result").kind
    assert cli(*args).returncode == 0  # now marked as ffnmem's: a rerun needs no --force
    with pytest.raises(BadInput, match="output folder"):  # but it is no result to replace whole
        result(1).save(out)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args", [("capture", *TINY), ("facts", "make", "--entities", "4"),
                                  ("toy-superposition", "--steps", "1")])
def test_a_file_as_out_is_refused_and_intact(cli, tmp_path, args):
    f = tmp_path / "f"
    f.write_text("precious")
    res = cli(*args, "-o", f, "--force")
    assert res.returncode == 2 and "is a file" in res.stderr
    assert f.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_facts_make_refuses_a_foreign_folder_outside_the_cwd(cli, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.csv").write_text("1,2")
    (tmp_path / "a" / "b").mkdir(parents=True)
    res = cli("facts", "make", "--entities", "4", "-o", "../../victim", cwd=tmp_path / "a" / "b")
    assert res.returncode == 2 and (victim / "data.csv").read_text() == "1,2"


def test_rerun_over_an_ffnmem_result_replaces_it(cli, tmp_path):
    out = tmp_path / "cap"
    assert cli("capture", *TINY, "-o", out).returncode == 0
    first = (out / "header.json").stat().st_ino
    assert cli("capture", *TINY, "-o", out).returncode == 0
    assert (out / "header.json").stat().st_ino != first and Result.load(out).kind == "capture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cap.lock", "cap"]  # no temp or backup left


def test_library_save_never_replaces_a_foreign_folder(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("x")
    with pytest.raises(BadInput, match="ffnmem did not write"):
        result(1).save(tmp_path / "r")
    assert (tmp_path / "r" / "mine.txt").read_text() == "x"
    result(1).save(tmp_path / "empty")
    (tmp_path / "e").mkdir()
    result(2).save(tmp_path / "e")  # an empty folder is fine
    assert value(tmp_path / "e") == 2


def test_interrupted_save_leaves_the_old_result_intact(tmp_path, monkeypatch):
    path = result(1).save(tmp_path / "r")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("ffnmem.store.results.save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):  # the injected failure, not another one
        result(2).save(path)
    assert value(path) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_swaps_in_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    path = result(1).save(tmp_path / "r")
    result(2).save(path)
    assert value(path) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["r"]


KILL_BETWEEN_RENAMES = """
import os, signal, sys
import torch, pyarrow as pa
from ffnmem.core import outputs
from ffnmem.store.results import Result
outputs._exchange = lambda a, b: False        # the fallback: old -> backup, new -> path
real = os.rename
def rename(a, b):
    real(a, b)
    if ".old-" in str(b):                      # killed right after the first rename
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
Result(kind="test", tables={"t": pa.table({"v": [2]})}).save(sys.argv[1])
"""


def test_kill_between_the_renames_is_recovered(tmp_path):
    path = result(1).save(tmp_path / "r")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(path)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists() and list(tmp_path.glob(".r.old-*"))  # the window: only the backup is left
    assert value(path) == 1  # loading restores it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    result(3).save(path)  # and the next save works as usual
    assert value(path) == 3


def test_modes_follow_the_umask(tmp_path, cli):
    old = os.umask(0o022)
    try:
        result(1).save(tmp_path / "r")
        paths.atomic_write_text(tmp_path / "t.txt", "x")
        assert cli("capture", *TINY, "--shards", "-o", tmp_path / "cap").returncode == 0
    finally:
        os.umask(old)
    for p in [tmp_path / "t.txt", *(q for q in tmp_path.rglob("*") if ".lock" not in q.name)]:
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644), p


def test_neuron_card_refuses_a_foreign_file(cli, tmp_path):
    f = tmp_path / "card.html"
    f.write_text("<html>my page</html>")
    res = cli("neuron", "0", "1", "-m", "tiny-2l", "--device", "cpu", "--max-tokens", "64", "--window", "32",
              "-o", f)
    assert res.returncode == 2 and f.read_text() == "<html>my page</html>"


def test_identical_train_runs_give_the_same_weight_hash(tmp_path, cli):
    """Equal weights, equal bytes: the weight hash in provenance is the same for identical runs."""
    from ffnmem.methods.training import load_run

    assert cli("facts", "make", "--entities", "8", "-o", tmp_path / "facts").returncode == 0
    for i, hash_seed in enumerate(("1", "2")):  # the old alias map's order followed the str hash seed
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-m", "ffnmem", "train", "--facts", str(tmp_path / "facts"), "--steps", "2",
                        "--device", "cpu", "-o", str(tmp_path / f"run{i}")], env=env, check=True, timeout=300,
                       capture_output=True)
    a, b = (next((tmp_path / f"run{i}").glob("checkpoints/*/model/model.safetensors")).read_bytes() for i in range(2))
    assert a == b
    assert load_run(tmp_path / "run0", device="cpu")[0].weight_hash == load_run(tmp_path / "run1", device="cpu")[0].weight_hash


def test_checkpoint_round_trip_keeps_every_tensor(tiny, tmp_path):
    import ffnmem

    ffnmem.save_checkpoint(tiny, tmp_path / "ck")
    ffnmem.save_checkpoint(tiny, tmp_path / "ck2")
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == (tmp_path / "ck2" / "model.safetensors").read_bytes()
    ref = tiny.bridge.original_model.state_dict()
    got = ffnmem.load_checkpoint(tmp_path / "ck", device="cpu").bridge.original_model.state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


def test_shards_of_another_capture_are_not_reused(tiny, tmp_path):
    from ffnmem.methods.capture import write_shards

    names = ["blocks.0.mlp.hook_post"]
    a, b = torch.randint(0, 200, (2, 16)), torch.randint(0, 200, (2, 16))
    folder = write_shards(tiny, a, names, tmp_path / "s", progress=False)
    shard = folder / "shard-00000.safetensors"
    stamp = shard.stat().st_mtime_ns
    write_shards(tiny, a, names, folder, progress=False)  # the same capture resumes: shard kept
    assert shard.stat().st_mtime_ns == stamp
    write_shards(tiny, b, names, folder, progress=False)
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(shard))["tokens"], b)


def test_a_failed_command_leaves_no_folder_and_releases_its_lock(cli, tmp_path):
    out = tmp_path / "attr"
    res = cli("attribute", "The capital of France is", "--answer", " P", "-m", "tiny-2l", "--device", "cpu", "-o", out)
    assert res.returncode == 2 and "not one" in res.stderr
    assert not out.exists()  # claimed (created and marked) at the start, removed as it stayed unused
    assert str(outputs.lock_path(out)) not in outputs._HELD  # released when the command ended


def test_folders_of_older_ffnmem_versions_are_recognised(tmp_path):
    old_output = tmp_path / "demo"  # report.md, PNGs and result/ but no marker
    result(1).save(old_output / "result")
    (old_output / "result" / outputs.MARKER).unlink()
    (old_output / "report.md").write_text("# old")
    assert outputs.check(old_output) == old_output
    with pytest.raises(BadInput, match="output folder"):  # replacing it whole needs its own header
        outputs.check(old_output, whole=True)
    assert outputs.check(old_output / "result", whole=True)  # a result without the marker: header.json
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"catalog_schema": 1}')
    assert outputs.check(run)


def test_run_refuses_a_foreign_folder(cli, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "x").write_text("x")
    res = cli("run", ROOT / "probes" / "tiny-smoke.toml", "--out", mine)
    assert res.returncode == 2 and "ffnmem did not write" in res.stderr
    assert [p.name for p in mine.iterdir()] == ["x"]
