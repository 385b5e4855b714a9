"""CLI: ``ffnmem lossy`` refuses bad input with one line, before any training."""

from __future__ import annotations


def test_lossy_bad_input_is_one_line(tmp_path, cli):
    for args, msg in ((["--preset", "huge"], "unknown lossy preset"), (["--widths", "8,x"], "cannot read --widths"),
                      (["--widths", "6"], "not a positive multiple of the 4 attention heads"),
                      (["--weight", "tokens"], "use mentions or facts")):
        r = cli("lossy", *args, "--out", str(tmp_path / "l"))
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1
