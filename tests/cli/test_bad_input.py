"""Hostile input to every command: one clear line, the right exit code, nothing lost, no traceback.

Each row is (argv, exit code, regex the error line must match, files that must survive). Rows run
in-process through ``main()``, the console script's entry point and so the CLI's error boundary.

What "one line" means, by kind of failure:

- a user error (exit 2): stderr holds exactly one non-empty line, ``error: ...``;
- a usage error found by click (exit 2): click's ``Usage: ...`` line, its ``Try ... --help`` hint
  and exactly one ``Error: ...`` line (the regex is matched against that line);
- Ctrl-C (exit 130): one ``interrupted: ...`` line (after any progress bar);
- a bug (exit 1): one ``internal error: ...`` line; the traceback only with ``FFNMEM_DEBUG=1``.

Most rows fail before a model is loaded; the rest load ``tiny-2l`` (a second on CPU).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

T = ["-m", "tiny-2l", "--device", "cpu"]
FACT = ('{"subject": "France", "relation": "capital_of", "prompt": "The capital of France is", '
        '"target": " Paris"%s}\n')
ROOT = Path(__file__).resolve().parents[2]


def _files(d: Path) -> None:
    """The hostile files that rows name by their bare file name (the test runs inside ``d``)."""
    (d / "one.jsonl").write_text(FACT % "")
    (d / "dup.jsonl").write_text(FACT % "" * 3)
    (d / "dis.jsonl").write_text(FACT % ', "distractors": [" Lyon", " Paris"]')
    (d / "latin1.jsonl").write_bytes(FACT.replace("France", "Fran\xe7e").encode("latin-1") % b"")
    (d / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (d / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    (d / "bad.toml").write_bytes(b'name = "caf\xe9"\n')
    (d / "a_file").write_text("keep me\n")
    (d / "empty_dir").mkdir()


USAGE = [  # click's own usage errors: exit 2, usage + hint + one "Error:" line
    (["capture", "--bogus"], r"No such option: --bogus"),
    (["no-such-command"], r"No such command 'no-such-command'"),
    (["capture", *T, "--window", "0"], r"Invalid value for '--window'.*greater than or equal to 2"),
    (["capture", *T, "--window", "abc"], r"Invalid value for '--window'"),
    (["capture", *T, "--max-tokens", "0"], r"Invalid value for '--max-tokens'"),
    (["capture", *T, "--batch-size", "-1"], r"Invalid value for '--batch-size'"),
    (["keys", *T, "--cards", "-1"], r"Invalid value for '--cards'"),
    (["keys", *T, "--seed", "-1"], r"Invalid value for '--seed'"),
    (["keys", *T, "--max-tokens", "0"], r"Invalid value for '--max-tokens'"),
    (["neuron", *T, "0", "-1"], r"No such option: -1"),
    (["neuron", *T, "--", "0", "-1"], r"Invalid value for 'INDEX'|Invalid value for 'index'"),
    (["recall", *T, "--batch-size", "0"], r"Invalid value for '--batch-size'"),
    (["recall", *T, "--k", "0"], r"Invalid value for '--k'"),
    (["recall", *T, "--limit", "0"], r"Invalid value for '--limit'"),
    (["attribute", "The capital of France is", "--answer", " Paris", *T, "--top", "-5"], r"Invalid value for '--top'"),
    (["attribute", "The capital of France is", "--answer", " Paris", *T, "--ig-steps", "-3"],
     r"Invalid value for '--ig-steps'"),
    (["attribute", "The capital of France is", *T], r"Missing option '--answer'"),
    (["trace", *T, "--samples", "0"], r"Invalid value for '--samples'"),
    (["trace", *T, "--window", "0"], r"Invalid value for '--window'"),
    (["demo", *T, "--top", "0"], r"Invalid value for '--top'"),
    (["probe", *T, "--folds", "1"], r"Invalid value for '--folds'"),
    (["probe", *T, "--C", "abc"], r"Invalid value for '--C'"),
    (["toy-superposition", "--grid", "1"], r"Invalid value for '--grid'"),
    (["sae", *T, "--expansion", "0"], r"Invalid value for '--expansion'"),
    (["sae", *T, "--window", "1"], r"Invalid value for '--window'"),
    (["facts", "make", "--entities", "100000000"], r"Invalid value for '--entities'.*100000"),
    (["facts", "make", "--values", "1"], r"Invalid value for '--values'"),
    (["train", "--steps", "0"], r"Invalid value for '--steps'"),
    (["train", "--d-model", "-8"], r"Invalid value for '--d-model'"),
    (["capacity", "--mlp-ratio", "0"], r"Invalid value for '--mlp-ratio'"),
    (["capacity", "--quick", "--passes", "0"], r"Invalid value for '--passes'"),
    (["exposure", "--n-boot", "0"], r"Invalid value for '--n-boot'"),
    (["compare-architectures", "--steps", "0"], r"Invalid value for '--steps'"),
    (["run"], r"Missing argument '(BATCH|batch)'"),
]

USER = [  # FfnmemError and file errors: exit 2, exactly one "error:" line
    (["capture", "-m", "tiny-2l@seed=abc", "--device", "cpu"], r"seed 'abc' in 'tiny-2l@seed=abc' is not an integer"),
    (["capture", "-m", "tiny-2l@colour=red", "--device", "cpu"], r"unknown model option 'colour=red'.*allowed: seed=N"),
    (["capture", "-m", "[/x]", "--device", "cpu"], r"unknown model '\[/x\]'"),
    (["capture", "-m", "[data] [[analysis]]", "--device", "cpu"], r"unknown model '\[data\] \[\[analysis\]\]'"),
    (["capture", "-m", "", "--device", "cpu"], r"the model spec is empty"),
    (["capacity", "--quick", "--sizes", "L9-d1"], r"no size 'L9-d1' in this sweep; choose from L1-d4, L1-d8"),
    (["capacity", "--widths", "16", "--passes", "3"], r"--passes and --sizes belong to a capacity sweep"),
    (["capture", *T, "--device", "tpu"], r"unknown device 'tpu'; use cpu, cuda, cuda:N or auto"),
    (["capture", *T, "--device", ""], r"unknown device ''"),
    (["capture", *T, "--layers", "0-99999999999"], r"layer 99999999999 is out of range"),
    (["capture", *T, "--layers=-5"], r"layer -5 is out of range.*-2\.\.-1"),
    (["capture", *T, "--layers", "1-0"], r"layer range '1-0' is empty"),
    (["capture", *T, "--layers", "zero"], r"cannot read layers 'zero'"),
    (["capture", *T, "--text", "bad.parquet"], r"bad.parquet cannot be read as Parquet"),
    (["capture", *T, "--text", "latin1.jsonl"], r"latin1.jsonl:1: not UTF-8 text"),
    (["capture", *T, "--text", "binary.bin"], r"binary.bin is not UTF-8 text"),
    (["capture", *T, "--text", "missing.txt"], r"corpus file missing.txt does not exist"),
    (["capture", *T, "--text", "empty_dir"], r"empty_dir is a folder but not a saved Hugging Face dataset"),
    (["recall", *T, "-f", "dup.jsonl"], r"dup.jsonl:2: duplicate fact .* first given at dup.jsonl:1"),
    (["recall", *T, "-f", "dis.jsonl"], r"dis.jsonl:1: distractor ' Paris' is the answer itself"),
    (["recall", *T, "-f", "latin1.jsonl"], r"latin1.jsonl:1: not UTF-8 text"),
    (["recall", *T, "-f", "binary.bin"], r"binary.bin:\d+: not UTF-8 text"),
    (["recall", *T, "-f", "missing.jsonl"], r"fact file missing.jsonl does not exist"),
    (["recall", *T, "-f", "empty_dir"], r"no facts in"),
    (["trace", *T, "-f", "dup.jsonl"], r"dup.jsonl:2: duplicate fact"),
    (["recall", *T, "-f", "one.jsonl", "--relation", "nope"], r"unknown relation 'nope'"),
    (["probe", *T, "--C", "-1"], r"--C -1 is outside \(0, inf\]"),
    (["probe", *T, "--C", "nan"], r"--C nan is outside"),
    (["probe", *T, "--prompts", "missing.tsv"], r"missing.tsv"),
    (["compare-architectures", "--mask-rate", "nan"], r"--mask-rate nan is outside \(0, 1\)"),
    (["facts", "make", "--noise", "nan"], r"--noise nan is outside \[0, 1\)"),
    (["facts", "make", "--junk", "inf"], r"--junk inf is outside"),
    (["facts", "make", "--zipf-a", "-1", "--law", "zipf"], r"--zipf-a -1 is outside"),
    (["facts", "make", "--bins", "1,99999999"], r"bins \[1, 99999999\]; give exposure counts in 1\.\.10000"),
    (["facts", "make", "--bins", "1,x"], r"cannot read --bins '1,x'"),
    (["facts", "make", "--law", "normal"], r"law 'normal'"),
    (["facts", "make", "--bins", ""], r"cannot read --bins ''"),
    (["compare-architectures", "--variants", ""], r"--variants '' names no variant"),
    (["compare-architectures", "--budget", "fast"], r"unknown budget 'fast'; choose from steps, flops, supervised, convergence"),
    (["compare-architectures", "--budget", ""], r"--budget '' names no budget"),
    (["compare-architectures", "--budget", "flops,flops"], r"--budget 'flops,flops' lists a budget twice"),
    (["compare-architectures", "--seeds", "0,x"], r"--seeds '0,x' is not a comma list of integers"),
    (["compare-architectures", "--seeds", "1,1"], r"--seeds '1,1' lists a seed twice"),
    (["compare-architectures", "--seeds", "-1"], r"--seeds '-1': every seed must be in \[0, "),
    (["compare-architectures", "--budget", "convergence", "--tol", "1"], r"--tol 1 is outside \[0, 1\)"),
    (["compare-architectures", "--seeds", "0", "--variants", "causal,causal"], r"an arm is listed twice"),
    (["attribute", "The capital of France is", "--answer", " Paris", "--distractor", " Paris", *T],
     r"--distractor ' Paris' is the answer itself"),
    (["train", "--preset", "huge"], r"unknown training preset 'huge'"),
    (["train", "--steps", "5", "--epochs", "2"], r"give --steps or --epochs, not both"),
    (["train", "--facts", "empty_dir"], r"empty_dir is not a fact corpus"),
    (["exposure", "--run", "empty_dir"], r"empty_dir"),
    (["run", "bad.toml"], r"bad.toml:1: not UTF-8 text"),
    (["run", "missing.toml"], r"batch file missing.toml does not exist"),
    (["run", "binary.bin"], r"binary.bin:\d+: not UTF-8 text"),
    (["run", "empty_dir"], r"empty_dir: Is a directory"),
    (["run", "a_file"], r"a_file: malformed TOML"),
    (["report", "a_file"], r"a_file is not an ffnmem run folder"),
    (["claims", "--probes", "empty_dir", "--runs", "empty_dir"], r"no claim files in empty_dir"),
    (["neuron", "0", "3", *T, "--triggers", "empty_dir"], r"empty_dir is not an ffnmem result"),
    (["neuron", "5", "3", *T], r"layer 5 is out of range"),
    (["sae", *T, "--layer", "9"], r"layer 9 is out of range"),
    # an output folder below a regular file: the boundary names the path (toy models train in ms)
    (["toy-superposition", "--n-features", "3", "--n-hidden", "1", "--steps", "1", "--grid", "2",
      "-o", "a_file/toy"], r"a_file.*(Not a directory|File exists)"),
]


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _survivors(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


@pytest.mark.parametrize("argv, pattern", USAGE, ids=[" ".join(a)[:60] for a, _ in USAGE])
def test_usage_error_is_usage_and_one_error_line(cli, hostile, argv, pattern):
    before = _survivors(hostile)
    r = cli(*argv)
    lines = _lines(r.stderr)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), r.stderr
    assert lines[0].startswith("Usage:") and len(lines) <= 3, r.stderr  # usage, "Try ... --help", the error
    assert _survivors(hostile) == before


@pytest.mark.parametrize("argv, pattern", USER, ids=[" ".join(a)[:60] for a, _ in USER])
def test_user_error_is_one_line(cli, hostile, argv, pattern):
    before = _survivors(hostile)
    r = cli(*argv)
    lines = _lines(r.stderr)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), r.stderr
    assert _survivors(hostile) == before  # inputs named on the command line are never touched


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a missing GPU")
def test_cuda_without_gpu_is_one_line(cli, hostile):
    r = cli("capture", "-m", "tiny-2l", "--device", "cuda:1")
    assert r.returncode == 2 and _lines(r.stderr) == [
        "error: device 'cuda:1' was asked for but no CUDA GPU is visible; use --device cpu"], r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(cli, hostile):
    ro = hostile / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = cli("facts", "make", "--entities", "4", "-o", ro / "facts")
    finally:
        ro.chmod(0o755)
    assert r.returncode == 2 and len(_lines(r.stderr)) == 1, r.stderr
    assert re.match(r"error: .*ro.*Permission denied", r.stderr), r.stderr


def test_triggers_of_another_model_are_refused(cli, hostile):
    r = cli("keys", *T, "--layers", "0", "--window", "32", "--max-tokens", "256", "--cards", "0", "-o", "k")
    assert r.returncode == 0, r.stderr
    r = cli("neuron", "0", "3", "-m", "tiny-2l@seed=1", "--device", "cpu", "--triggers", "k/triggers")
    assert r.returncode == 2 and len(_lines(r.stderr)) == 1, r.stderr
    assert re.match(r"error: k/triggers was mined on tiny-2l@seed=0 .* not on tiny-2l@seed=1", r.stderr), r.stderr
    r = cli("neuron", "0", "3", *T, "--triggers", "k/agreement")
    assert r.returncode == 2 and "holds a 'key_agreement' result, not triggers" in r.stderr, r.stderr


def test_internal_error_is_one_line_unless_debugging(cli, hostile, monkeypatch):
    import ffnmem.core.models

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line [red]")

    monkeypatch.setattr(ffnmem.core.models, "load_model", broken)
    r = cli("capture", *T)
    assert r.returncode == 1 and _lines(r.stderr) == [
        "internal error: RuntimeError: boom second line [red] (set FFNMEM_DEBUG=1 for the traceback)"], r.stderr
    monkeypatch.setenv("FFNMEM_DEBUG", "1")
    r = cli("capture", *T)
    assert r.returncode == 1 and "Traceback" in r.stderr and _lines(r.stderr)[-1].startswith("internal error:")


def test_ctrl_c_in_process_exits_130(cli, hostile, monkeypatch):
    """Typer turns KeyboardInterrupt into a *returned* 130 in non-standalone mode; main must exit 130."""
    import ffnmem.core.models

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ffnmem.core.models, "load_model", interrupted)
    r = cli("capture", *T)
    assert r.returncode == 130 and _lines(r.stderr) == [
        "interrupted: stopped by Ctrl-C; results already written are intact"], r.stderr


def _ffnmem(*args, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # A shell's background job starts with SIGINT ignored; give the child the default disposition,
    # as an interactive terminal would, so Python installs its KeyboardInterrupt handler.
    return subprocess.Popen([sys.executable, "-m", "ffnmem", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_usage_error_through_the_console_entry_point(tmp_path):
    p = _ffnmem("capture", "--bogus", cwd=tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "Traceback" not in err
    errors = [line for line in _lines(err) if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: No such option: --bogus"), err


def test_sigint_during_run_exits_130_with_one_line(tmp_path):
    """Ctrl-C while `ffnmem run` works (progress bar on stderr): exit 130, one line, no traceback."""
    p = _ffnmem("run", str(ROOT / "probes" / "tiny-smoke.toml"), "--out", str(tmp_path / "run"), cwd=tmp_path)
    seen, deadline = "", time.monotonic() + 120
    while "unit" not in seen and time.monotonic() < deadline:  # the batch progress bar has started
        ch = p.stderr.read(1)
        if not ch:
            break
        seen += ch
    time.sleep(1.0)  # inside the first unit: model loaded, analyses running
    p.send_signal(signal.SIGINT)
    _out, err = p.communicate(timeout=60)
    err = seen + err
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in _lines(err) if "unit" not in line] == [
        "interrupted: stopped by Ctrl-C; results already written are intact"], err


def test_user_text_is_printed_literally(cli, hostile):
    """Paths and names are not Rich markup: "[b]x[/b]" and "[/x]" come out as typed."""
    r = cli("facts", "make", "--entities", "4", "--bins", "1", "-o", "[b]x[/b] [/x]")
    assert r.returncode == 0, r.stderr
    assert "[b]x[/b] [/x]" in r.stdout and (hostile / "[b]x[/b] [/x]" / "facts.jsonl").exists()


def test_permission_error_while_writing_is_one_line(cli, hostile, monkeypatch):
    """What a read-only output folder raises (root, who runs CI here, can write into one)."""
    import errno

    from ffnmem.data.synthetic import FactCorpus

    def denied(self, path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(FactCorpus, "save", denied)
    r = cli("facts", "make", "--entities", "4", "--bins", "1", "-o", "locked/facts")
    assert r.returncode == 2 and _lines(r.stderr) == [
        "error: locked/facts: Permission denied (check the path and its permissions)"], r.stderr


@pytest.mark.parametrize("spec, n, layers", [
    ("all", 3, [0, 1, 2]), ("-1", 3, [2]), ("-3", 3, [0]), ("0-3,10", 12, [0, 1, 2, 3, 10]),
    ("-2--1", 4, [2, 3]), (" 1 , 0 ", 2, [0, 1]), ("1-1", 2, [1]),
])
def test_parse_layers_reads_what_it_should(spec, n, layers):
    from ffnmem.cli import parse_layers

    assert parse_layers(spec, n) == layers


@pytest.mark.parametrize("spec, message", [
    ("-4", "layer -4 is out of range"), ("3", "layer 3 is out of range"), ("0-99999999999", "99999999999"),
    ("", "cannot read layers"), ("1,,2", "cannot read layers"), ("2-1", "is empty"), ("a-b", "cannot read"),
])
def test_parse_layers_refuses_before_building(spec, message):
    from ffnmem.cli import parse_layers
    from ffnmem.core.errors import BadInput

    with pytest.raises(BadInput, match=re.escape(message)):
        parse_layers(spec, 3)


def test_a_job_parameter_out_of_range_is_one_line(cli, tmp_path):
    r = cli("trace", "-m", "tiny-2l", "--device", "cpu", "--facts", "capital_of.jsonl", "--limit", "1",
            "--first-token", "sometimes", "-o", tmp_path / "t")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "first_token" in r.stderr
