"""CLI: facts make → train → recall --run / exposure → capacity, on a micro corpus; bad input is one line."""

from __future__ import annotations

import re

from ffnmem.core.models import load_checkpoint
from ffnmem.methods.training import checkpoints
from ffnmem.store.results import Result


def test_make_train_recall_and_capacity(tmp_path, cli):
    facts, run = tmp_path / "facts", tmp_path / "run"
    r = cli("facts", "make", "--out", str(facts), "--entities", "10", "--bins", "1,4", "--values", "6")
    assert r.returncode == 0, r.stderr
    assert "10 entities" in r.stdout and (facts / "facts.jsonl").exists()
    r = cli("train", "--facts", str(facts), "--out", str(run), "--steps", "8", "--d-model", "16", "--d-mlp", "32",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    r = cli("recall", "--run", str(run), "--out", str(tmp_path / "exp"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "FFN share" in r.stdout and "bits/param" in r.stdout
    res = Result.load(tmp_path / "exp" / "result")
    assert set(res.table("dla_bins")["target"]) == {"margin", "logit"}
    assert len(res.meta["ffn_share_by_exposure"]["margin"]) == 2
    assert (tmp_path / "exp" / "dla_by_exposure.png").exists()
    r = cli("capacity", "--facts", str(facts), "--widths", "8,16", "--steps", "4", "--out", str(tmp_path / "cap"),
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    widths = Result.load(tmp_path / "cap" / "result").table("widths")
    assert list(widths["d_model"]) == [8, 16] and list(widths["d_mlp"]) == [32, 64]
    # params is the trained model's own count (read back from each width's checkpoint), not a formula
    for w, n in zip(widths["d_model"], widths["params"]):
        wb = load_checkpoint(checkpoints(tmp_path / "cap" / "runs" / f"d{w}")[-1] / "model", device="cpu")
        assert wb.cfg.d_model == w and n == wb.n_params()
    assert (tmp_path / "cap" / "capacity_vs_size.png").exists() and (tmp_path / "cap" / "runs" / "d16").is_dir()


def test_capacity_bad_widths_are_one_line(tmp_path, cli):
    for widths, msg in (("10,x", "cannot read --widths"), ("6", "not a positive multiple of the 4 attention heads")):
        r = cli("capacity", "--widths", widths, "--out", str(tmp_path / "c"))
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_capacity_quick_sweep_writes_tables_and_figures_and_resumes(tmp_path, cli):
    out = tmp_path / "sweep"
    r = cli("capacity", "--quick", "--seeds", "0", "--no-check", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "c (bits / params_non_embedding)" in r.stdout
    res = Result.load(out / "result")
    sizes = res.table("sizes")
    assert list(sizes["size"]) == ["L1-d4", "L1-d8"] and (sizes["params_all"] > sizes["params_non_embedding"]).all()
    assert {"bits", "bits_clipped", "ceiling", "bits_per_param", "recall", "loss_bits", "steps", "seconds"} <= set(sizes)
    assert set(res.table("fit")["params"]) == {"params_non_embedding", "params_all"}
    for png in ("capacity_sweep.png", "capacity_sweep_all_params.png", "scaling.png"):
        assert (out / png).exists()
    assert (out / "runs" / "L1-d8" / "seed0" / "capacity.json").exists()
    again = cli("capacity", "--quick", "--seeds", "0", "--no-check", "--out", str(out), "--device", "cpu")
    assert again.returncode == 0, again.stderr
    assert list(Result.load(out / "result").table("sizes")["bits"]) == list(sizes["bits"])  # read back, not retrained


def test_train_for_passes_over_the_corpus(tmp_path, cli):
    facts = tmp_path / "facts"
    assert cli("facts", "make", "--out", str(facts), "--entities", "10", "--bins", "1,4", "--values", "6").returncode == 0
    r = cli("train", "--facts", str(facts), "--out", str(tmp_path / "run"), "--epochs", "2", "--d-model", "16",
            "--d-mlp", "32", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    passes = float(re.search(r"\(([\d.]+) passes over the corpus\)", r.stdout).group(1))
    assert 2 <= passes < 4  # rounded up to whole steps (one step is over half of this micro corpus)
