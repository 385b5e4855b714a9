"""The command line: real runs on a tiny model, and one clear line (no traceback) for bad input."""

import subprocess
import sys

import pytest

from ffnmem import Result


def test_console_script_prints_no_traceback(tmp_path):
    """End to end in a subprocess: the installed entry point turns errors into one line."""
    proc = subprocess.run([sys.executable, "-m", "ffnmem", "demo", "-m", "no-such-model"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert_one_line_error(proc, "unknown model")


def assert_one_line_error(proc, text):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines[-1].startswith("error:") and text in " ".join(lines), proc.stderr


@pytest.mark.parametrize("args, text", [
    (["demo", "-m", "no-such-model"], "unknown model 'no-such-model'"),
    (["capture", "-m", "tiny-2l", "--layers", "7"], "out of range"),
    (["capture", "-m", "tiny-2l", "--window", "500"], "longer than the context"),
    (["capture", "-m", "tiny-2l", "--kind", "nope", "--layers", "0"], "unknown activation kind"),
])
def test_bad_input_gives_one_line(args, text, tmp_path, cli):
    assert_one_line_error(cli(*args, "--out", str(tmp_path / "o"), cwd=tmp_path), text)


def test_empty_corpus_file(tmp_path, cli):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    assert_one_line_error(cli("capture", "-m", "tiny-2l", "--text", str(empty), "--out", str(tmp_path / "o")),
                          "corpus is empty")


def test_capture_writes_a_result_with_provenance(tmp_path, cli):
    text = tmp_path / "t.txt"
    text.write_text("Feed-forward layers act as key-value memories. " * 40)
    out = tmp_path / "cap"
    proc = cli("capture", "-m", "tiny-2l", "--text", str(text), "--layers", "0-1", "--window", "32",
                  "--k", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    res = Result.load(out)
    assert res.kind == "capture" and res.provenance["model_id"] == "tiny-2l@seed=0"
    assert res.tensors["blocks.1.mlp.hook_post/topk_values"].shape == (4, 256)
    assert res.provenance["data_hash"]


def test_models_lists_presets_and_default(cli):
    proc = cli("models")
    assert proc.returncode == 0 and "tiny-2l" in proc.stdout and "smollm2-135m" in proc.stdout


def test_help_explains_commands(cli):
    proc = cli("--help")
    assert proc.returncode == 0 and "demo" in proc.stdout and "capture" in proc.stdout
