"""`ffnmem recall --popularity`: extra tables and plots in the same folder; bad input is one line."""

from ffnmem import Result


def test_recall_writes_popularity_results(tmp_path, cli):
    out = tmp_path / "rec"
    r = cli("recall", "-m", "tiny-2l", "--scoring", "sequence", "--relation", "capital_of", "--limit", "4",
            "--bins", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "recall vs subject popularity" in r.stdout and "substitutions:" in r.stdout
    res = Result.load(out / "popularity")
    assert res.kind == "popularity" and res.meta["n_facts"] == 4
    assert res.meta["n_candidates"]["city"] > 100  # pools hold every shipped city, not only these 4 facts
    assert (out / "recall_vs_popularity.png").exists() and (out / "substitutions.png").exists()


def test_no_popularity_skips_it(tmp_path, cli):
    r = cli("recall", "-m", "tiny-2l", "--scoring", "sequence", "--limit", "1", "--no-popularity",
            "--out", tmp_path / "rec")
    assert r.returncode == 0 and not (tmp_path / "rec" / "popularity").exists()


def test_bad_bins_is_one_line(tmp_path, cli):
    r = cli("recall", "-m", "tiny-2l", "--bins", "0", "--out", tmp_path / "rec")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and lines[-1].startswith("Error: Invalid value for '--bins'"), r.stderr  # click usage error
    assert not (tmp_path / "rec").exists()  # checked before any work
