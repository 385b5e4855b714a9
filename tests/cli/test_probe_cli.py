"""CLI: probe, toy-superposition, sae on tiny inputs; bad input is one line."""


import pytest

from ffnmem import Result


@pytest.fixture
def run(cli):
    return cli


def test_probe_cli(run, tmp_path):
    code, out, err = run("probe", "-m", "tiny-2l", "--task", "word_category", "--layers", "0,1", "-o", tmp_path)
    assert code == 0, err
    assert (tmp_path / "curves.png").exists() and "curves.png" in out
    t = Result.load(tmp_path / "result").table("curves")
    assert len(t) == 2 and set(t.columns) >= {"accuracy", "control", "selectivity"}


def test_probe_bad_labels_one_line(run, tmp_path):
    tsv = tmp_path / "one.tsv"
    tsv.write_text("prompt\tlabel\n" + "".join(f"ab{i}\tx\n" for i in range(10)))
    code, _, err = run("probe", "-m", "tiny-2l", "--prompts", tsv, "-o", tmp_path / "o")
    assert code == 2 and "only one class" in err and "Traceback" not in err
    code, _, err = run("probe", "-m", "tiny-2l", "--kind", "nope", "--task", "word_category", "-o", tmp_path / "o")
    assert code == 2 and "Traceback" not in err


def test_toy_and_sae_cli(run, tmp_path):
    code, out, err = run("toy-superposition", "--steps", "10", "--grid", "2", "-o", tmp_path / "toy")
    assert code == 0, err
    assert {"wtw.png", "phase.png", "dimensionality.png"} <= {p.name for p in (tmp_path / "toy").iterdir()}
    code, out, err = run("sae", "-m", "tiny-2l", "--layer", "1", "--max-tokens", "2048", "--epochs", "1",
                         "-o", tmp_path / "sae")
    assert code == 0, err
    assert "FVU" in out and Result.load(tmp_path / "sae" / "result").table("metrics").shape[0] == 2
