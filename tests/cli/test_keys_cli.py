"""`ffnmem keys` / `ffnmem neuron`: outputs on a tiny model, one clear line for each bad input."""

from __future__ import annotations

import pytest


@pytest.fixture
def run(cli):
    def go(*args) -> tuple[int, str]:
        r = cli(*args)
        return r.returncode, r.stdout + r.stderr

    return go


def test_keys_and_neuron_on_tiny(run, tmp_path):
    code, text = run("keys", "-m", "tiny-2l", "--device", "cpu", "--window", "32",
                     "--max-tokens", "640", "--k", "5", "--cards", "1", "-o", tmp_path / "k")
    assert code == 0, text
    for f in ("report.md", "report.html", "agreement.png", "triggers/header.json", "agreement/header.json",
              "prediction/header.json", "memories/header.json"):
        assert (tmp_path / "k" / f).exists(), f
    assert len(list((tmp_path / "k" / "cards").glob("*.html"))) == 2
    code, text = run("neuron", "1", "7", "-m", "tiny-2l", "--device", "cpu",
                     "--triggers", tmp_path / "k" / "triggers", "--k", "3", "-o", tmp_path / "n.html")
    assert code == 0, text
    page = (tmp_path / "n.html").read_text()
    assert "<mark>" in page and "data:image/png;base64," in page and "neuron 7" in page


@pytest.mark.parametrize("extra, msg", [
    (["--layers", "7"], "layer 7 is out of range"),
    (["--window", "4096"], "longer than the context"),
    (["--k", "100000"], "larger than the corpus"),
    (["--text", "EMPTY"], "the corpus is empty"),
    (["--text", "BINARY"], "is not UTF-8 text"),
    (["--text", "MISSING"], "does not exist"),
])
def test_keys_bad_input_one_line(run, tmp_path, extra, msg):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    files = {"EMPTY": tmp_path / "empty.txt", "BINARY": tmp_path / "bin.txt", "MISSING": tmp_path / "nope.txt"}
    extra = [files.get(x, x) for x in extra]
    code, text = run("keys", "-m", "tiny-2l", "--device", "cpu", "--window", "32",
                     "--max-tokens", "320", "-o", tmp_path / "k", *extra)
    assert code != 0
    err = [l for l in text.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and msg in err[0], text
    assert "Traceback" not in text


def test_neuron_out_of_range(run, tmp_path):
    code, text = run("neuron", "0", "9999", "-m", "tiny-2l", "--device", "cpu",
                     "--window", "32", "--max-tokens", "320", "-o", tmp_path / "n.html")
    assert code != 0 and "neuron 9999 is out of range" in text
