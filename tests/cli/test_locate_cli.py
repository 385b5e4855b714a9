"""`ffnmem locate` (the fact card, checked in headless Chromium), `ffnmem ablate` and their bad input,
on SmolLM2 with the cheapest method so the card builds in well under a minute."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow

FRANCE = "The capital of France is"


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    from typer.testing import CliRunner

    from ffnmem.cli import app

    out = tmp_path_factory.mktemp("card") / "france"
    r = CliRunner().invoke(app, ["locate", FRANCE, "Paris", "--method", "dla", "--k", "5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_card_holds_the_trace_the_memories_and_their_validation(card):
    out, printed = card
    html = (out / "card.html").read_text()
    assert "data:image/png;base64," in html and "Causal tracing" in html
    memories = re.findall(r"<td>L(\d+)\.(\d+)</td>", html)
    assert len(memories) == 5
    # the validation table: target drop, random matched, collateral and paraphrase, as numbers
    row = re.search(r"<th>ablation</th>.*?</tr><tr>(.*?)</tr>", html, re.S)[1]
    cells = re.findall(r"<td class=num>([^<]*)</td>", row)
    assert cells[0] == "zero" and all(re.fullmatch(r"-?\d+\.\d+", c) for c in cells[1:6]), cells
    assert "fact card written to" in printed and "margin" in printed
    from ffnmem import Result

    res = Result.load(out / "result")
    v = res.table("validation").iloc[0]
    assert v["target_drop"] > v["random_drop"]  # DLA's own top 5 vs random matched sets, on France


def test_card_renders_in_headless_chromium(card, screenshot):
    img = screenshot((card[0] / "card.html"))
    assert img.shape[:2] == (1400, 1100) and img[..., :3].std() > 0.05  # not a blank page


def test_ablate_prints_the_drop_against_its_null(cli):
    r = cli("ablate", FRANCE, "27.1392", "25.1120", "--mode", "zero")
    assert r.returncode == 0, r.stderr
    assert "2 memories ablated" in r.stdout and "zero" in r.stdout
    assert len(re.findall(r"\d\.\d\d", r.stdout)) >= 6  # margin, drops: numbers, not dashes


@pytest.mark.parametrize("args,msg", [
    (["locate", "Nobody knows where Xyz is", "Paris"], "give --subject"),
    (["locate", "The capital of Xyz is", "Paris", "--subject", "Xyz", "--relation", "no_such_relation"], "no answer set"),
    (["ablate", FRANCE, "99.1"], "layer 99"),
    (["ablate", FRANCE, "twelve"], "cannot read memory"),
    (["ablate", "Not a shipped prompt", "1.1"], "not a shipped fact"),
])
def test_bad_input_is_one_line(cli, args, msg):
    r = cli(*args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
