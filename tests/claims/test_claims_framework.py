"""The claims machinery end to end on tiny-2l: one claim file, one run, every status, the CLI, the
report. The statistics are checked against known answers in tests/unit/test_stats.py; here the
question is whether a claim's status follows from its numbers and its control.

Claim file: 20 demo capitals on two native models; the "trained" model is tiny-2l (seed 0), the
control model tiny-2l@seed=1. The claims compare p(answer) with itself, with zero, and with a
large effect size, so each status is known before the run.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ffnmem.batch.claims import claims_table, finished, load_claims, run_dir
from ffnmem.batch.claims_report import recorded_statuses
from ffnmem.cli import app
from ffnmem.jobs.report import write_report

HEAD = """name = "claim-fixture"
models = ["tiny-2l", "tiny-2l@seed=1"]
[data]
facts = "demo"
shards = 2
[[analysis]]
name = "recall"
k = 5
scoring = "sequence"
[quick]
data = { shards = 1 }
"""


def _claim(cid: str, value: str, null: str, control: str, effect: float = 0.0, alternative: str = "greater") -> str:
    return f"""
[[claim]]
id = "{cid}"
statement = "s"
paper = "p"
data = "d"
statistic = "st"
null = "n"
test = "paired"
alternative = "{alternative}"
effect = {effect}
sql = "SELECT {value} AS value, {null} AS null FROM recall_facts WHERE model = 'tiny-2l'"
[claim.control]
description = "c"
sql = "{control}"
"""


OWN = "SELECT p_answer AS value, 0 AS null FROM recall_facts WHERE model = 'tiny-2l@seed=1'"
SAME = "SELECT p_answer AS value, p_answer AS null FROM recall_facts WHERE model = 'tiny-2l@seed=1'"
FILE = HEAD + "".join([
    _claim("fx-pass", "p_answer", "0", SAME),                      # p > 0 everywhere; control: ties
    _claim("fx-wrong-way", "p_answer", "0", SAME, alternative="less"),  # claimed the wrong direction
    _claim("fx-too-small", "p_answer", "0", SAME, effect=1.0),     # significant, but p(answer) < 1
    _claim("fx-broken", "p_answer", "0", OWN),                     # the control has the effect too
])


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    (root / "probes").mkdir()
    (root / "probes" / "fixture.toml").write_text(FILE)
    res = CliRunner().invoke(app, ["claims", "run", "--probes", str(root / "probes"), "--runs", str(root / "runs")])
    assert res.exit_code == 0, res.output
    return root


def test_each_status_follows_from_the_numbers_and_the_control(probes):
    rows = {r.claim.id: r for r in claims_table(probes / "probes", probes / "runs")}
    assert {k: r.status for k, r in rows.items()} == {
        "fx-pass": "PASS", "fx-wrong-way": "NOT REPRODUCED", "fx-too-small": "NOT REPRODUCED", "fx-broken": "BROKEN"}
    ok = rows["fx-pass"]
    assert ok.result.n == 20 and ok.result.p_value < 0.05 and ok.result.null == 0
    assert ok.result.ci[0] <= ok.result.estimate <= ok.result.ci[1] and ok.result.ci[0] > 0
    assert ok.control.p_value == 1.0 and ok.seeds == [0] and ok.seconds > 0
    assert "smaller than the 1 claimed" in rows["fx-too-small"].why
    assert "control is significant" in rows["fx-broken"].why and rows["fx-broken"].control.p_value < 0.05


def test_one_run_serves_every_claim_of_a_file_and_an_edit_makes_it_not_run(probes, tmp_path):
    claims = load_claims(probes / "probes" / "fixture.toml")
    assert len({run_dir(c.batch, probes / "runs") for c in claims}) == 1
    edited = tmp_path / "probes"
    edited.mkdir()
    (edited / "fixture.toml").write_text(FILE.replace("k = 5", "k = 3"))  # the units compute something else
    assert {r.status for r in claims_table(edited, probes / "runs")} == {"NOT RUN"}
    assert finished(run_dir(claims[0].batch, probes / "runs"))  # the older run is still there
    wording = tmp_path / "wording"
    wording.mkdir()
    (wording / "fixture.toml").write_text(FILE.replace('statement = "s"', 'statement = "said otherwise"'))
    assert "NOT RUN" not in {r.status for r in claims_table(wording, probes / "runs")}  # words change no unit


def test_quick_versions_run_apart(probes):
    full = load_claims(probes / "probes" / "fixture.toml")[0]
    quick = load_claims(probes / "probes" / "fixture.toml", quick=True)[0]
    assert full.batch.spec.data.shards == 2 and quick.batch.spec.data.shards == 1
    assert run_dir(full.batch) != run_dir(quick.batch)
    assert {r.status for r in claims_table(probes / "probes", probes / "runs", quick=True)} == {"NOT RUN"}


def test_cli_lists_runs_one_claim_and_reports(probes, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("COLUMNS", "250")
    where = ["--probes", str(probes / "probes"), "--runs", str(probes / "runs")]
    res = CliRunner().invoke(app, ["claims", *where])
    assert res.exit_code == 0, res.output
    assert "fx-pass" in res.output and "PASS" in res.output and "fx-broken: BROKEN: the control is significant" in res.output
    res = CliRunner().invoke(app, ["claims", "run", "--only", "fx-pass", *where])  # finished: nothing reruns
    assert res.exit_code == 0 and "fx-pass: PASS: estimate" in res.output and "fx-broken" not in res.output
    res = cli("claims", "run", "--only", "nope", *where)
    assert res.returncode == 2 and "no claim 'nope'; known: fx-pass" in res.stderr
    doc = tmp_path / "CLAIMS.md"
    res = CliRunner().invoke(app, ["claims", "report", "--out", str(doc), *where])
    assert res.exit_code == 0, res.output
    text = doc.read_text()
    assert "| [fx-pass](#fx-pass) | p | PASS |" in text and "ffnmem claims run --only fx-broken" in text
    assert "## fx-too-small" in text and "Negative control: c" in text
    assert recorded_statuses(text) == {"fx-pass": "PASS", "fx-wrong-way": "NOT REPRODUCED",
                                       "fx-too-small": "NOT REPRODUCED", "fx-broken": "BROKEN"}
    mine = tmp_path / "NOTES.md"
    mine.write_text("my notes\n")
    res = cli("claims", "report", "--out", mine, *where)
    assert res.returncode == 2 and "was not written by `ffnmem claims report`" in res.stderr
    assert mine.read_text() == "my notes\n"


def test_report_renders_in_headless_chromium(probes, screenshot):
    run = run_dir(load_claims(probes / "probes" / "fixture.toml")[0].batch, probes / "runs")
    html = write_report(run).read_text()
    assert "Provenance" in html and "http" not in html.split("<body>")[1][:2000]
    img = screenshot((run / "report.html"))
    assert img.shape[:2] == (1400, 1100) and img[..., :3].std() > 0.05  # not a blank page
