"""One analysis, one entry point: the CLI command and the batch analysis of the same name run the same
job, so the same facts and seed give the same tables (issue 13)."""

from __future__ import annotations

import pandas as pd
import pytest

from ffnmem.batch.registry import ANALYSES, UnitData
from ffnmem.data.corpus import default_corpus
from ffnmem.data.facts import load_facts
from ffnmem.store.results import Result

T = ["-m", "tiny-2l", "--device", "cpu"]
FACTS = ["--facts", "capital_of.jsonl", "--limit", "2"]


def _batch(tiny, name: str, seed: int, data: UnitData | None = None, **params) -> Result:
    a = ANALYSES[name]
    data = data or UnitData(facts=load_facts("capital_of.jsonl", limit_per_relation=2))
    return a.fn(tiny if a.data != "none" else None, data, a.params(**params), seed)


def _same(cli_result: Result, batch_result: Result, tables: list[str], drop=()) -> None:
    assert cli_result.kind == batch_result.kind
    for t in tables:
        a, b = cli_result.table(t), batch_result.table(t)
        cols = [c for c in b.columns if c in a.columns and c not in drop]
        assert len(cols) >= 3, f"{t}: too few shared columns to compare"
        pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True),
                                      obj=f"{cli_result.kind}/{t}")


def test_recall(cli, tiny, tmp_path):
    r = cli("recall", *T, *FACTS, "--no-popularity", "--scoring", "sequence", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    _same(Result.load(tmp_path / "result"), _batch(tiny, "recall", 0, scoring="sequence"), ["facts", "relations"])


def test_causal_trace(cli, tiny, tmp_path):
    r = cli("trace", *T, *FACTS, "--samples", "2", "--window", "1", "--kind", "resid", "--kind", "mlp",
            "--seed", "3", "--first-token", "any", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    batch = _batch(tiny, "causal_trace", 3, n_samples=2, window=1, kinds=["resid", "mlp"], first_token="any")
    _same(Result.load(tmp_path / "result"), batch, ["facts", "effects"])
    assert (tmp_path / "average.png").exists() and len(list((tmp_path / "facts").glob("*.png"))) == 2


def test_direct_effects(cli, tiny, tmp_path):
    fact = load_facts("capital_of.jsonl", limit_per_relation=1)[0]
    answer = fact.target[:1]  # tiny-2l spells the answer byte by byte: its first token
    r = cli("attribute", fact.prompt, "--answer", answer, *T, "--top", "5", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    batch = _batch(tiny, "direct_effects", 0, UnitData(facts=[fact]), top=5, first_token="any")
    _same(Result.load(tmp_path / "result"), batch, ["layers", "neurons", "heads"], drop=("subject", "relation"))


def test_key_agreement(cli, tiny, tmp_path):
    r = cli("keys", *T, "--window", "32", "--max-tokens", "512", "--k", "5", "--n-triggers", "5", "--cards", "1",
            "--seed", "2", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    data = UnitData(texts=default_corpus(), window=32, max_windows=16)
    batch = _batch(tiny, "key_agreement", 2, data, k=5, n_triggers=5)
    _same(Result.load(tmp_path / "agreement"), batch, ["layers", "bands"])


def test_toy_superposition(cli, tmp_path):
    r = cli("toy-superposition", "--steps", "20", "--grid", "2", "--seed", "4", "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    batch = _batch(None, "toy_superposition", 4, UnitData(), steps=20, phase_grid=2, phase_steps=20)
    _same(Result.load(tmp_path / "result"), batch, ["sweep", "phase"])


@pytest.mark.parametrize("steps", [6])
def test_exposure_recall(cli, tmp_path, steps):
    run = tmp_path / "run"
    r = cli("train", "--preset", "tiny", "--steps", str(steps), "--seed", "1", "--device", "cpu", "-o", run)
    assert r.returncode == 0, r.stderr
    r = cli("exposure", "--run", run, "--seed", "1", "--device", "cpu", "-o", tmp_path / "exp")
    assert r.returncode == 0, r.stderr
    batch = _batch(None, "exposure_recall", 1, UnitData(), preset="tiny", steps=steps, n_boot=1000)
    _same(Result.load(tmp_path / "exp" / "result"), batch, ["facts", "bins", "dla_bins"])


def test_lossy_compression(cli, tmp_path):
    r = cli("lossy", "--preset", "zipf-quick", "--widths", "4,8", "--steps", "2", "--n-boot", "20", "--seed", "2",
            "-o", tmp_path)
    assert r.returncode == 0, r.stderr
    batch = _batch(None, "lossy_compression", 2, UnitData(), preset="zipf-quick", widths=[4, 8], steps=2, n_boot=20)
    _same(Result.load(tmp_path / "result"), batch, ["facts", "substitution", "kl_split", "survival"],
          drop=("seconds", "tokens_per_s"))
