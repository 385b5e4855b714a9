"""CLI: recall / attribute / trace write results and plots; bad input is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from ffnmem.cli import app
from ffnmem.store.results import Result

runner = CliRunner()


def test_recall_and_attribute_on_tiny(tmp_path, tiny):
    r = runner.invoke(app, ["recall", "--model", "tiny-2l", "--scoring", "sequence", "--limit", "1",
                            "--out", str(tmp_path / "rec")])
    assert r.exit_code == 0, r.output
    assert Result.load(tmp_path / "rec" / "result").meta["scoring"] == "sequence"
    assert (tmp_path / "rec" / "recall.png").exists()
    r = runner.invoke(app, ["attribute", "The cat sat on", "--answer", " ", "--model", "tiny-2l",
                            "--corrupt", "The dog sat on", "--ig-steps", "2", "--out", str(tmp_path / "att")])
    assert r.exit_code == 0, r.output
    res = Result.load(tmp_path / "att" / "result")
    assert {"neuron_dla", "integrated_gradients", "attribution_patching"} <= set(res.tensors)
    # the saved numbers are the methods' own on this prompt, answer and corruption (tiny-2l is seed 0)
    from ffnmem.methods.attribution import direct_effects
    from ffnmem.methods.knowledge_neurons import integrated_gradients
    from ffnmem.methods.patching import attribution_patching

    a = tiny.answer_token(" ")
    torch.testing.assert_close(res.tensors["neuron_dla"], direct_effects(tiny, ["The cat sat on"], [a]).neurons[0])
    torch.testing.assert_close(res.tensors["attribution_patching"],
                               attribution_patching(tiny, "The cat sat on", "The dog sat on", a)[0])
    torch.testing.assert_close(res.tensors["integrated_gradients"], integrated_gradients(tiny, "The cat sat on", a, steps=2))


@pytest.mark.slow
def test_trace_on_smollm2_writes_each_fact(tmp_path):
    r = runner.invoke(app, ["trace", "--facts", "capital_of.jsonl", "--limit", "1", "--samples", "1",
                            "--kind", "resid", "--out", str(tmp_path / "tr")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tr" / "average.png").exists() and len(list((tmp_path / "tr" / "facts").glob("*.png"))) == 1
    assert "peak" in r.output


@pytest.mark.parametrize("args,msg", [
    (["recall", "--model", "tiny-2l", "--facts", "missing.jsonl"], "does not exist"),
    (["recall", "--model", "tiny-2l", "--limit", "1"], "bare-space"),
    (["recall", "--model", "tiny-2l", "--relation", "nope"], "unknown relation"),
])
def test_bad_input_is_one_line(args, msg):
    p = subprocess.run([sys.executable, "-m", "ffnmem", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr
