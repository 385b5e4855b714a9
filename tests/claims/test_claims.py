"""Every shipped claim, in its quick version (the claim file's ``[quick]`` table: smaller samples, the
same statistics): it runs from the claim file alone, reports every number, and its negative control
is NOT significant. A claim whose control comes out significant is BROKEN and fails here.

Whether the claim itself passes is a finding, recorded by the full run in docs/CLAIMS.md
(`ffnmem claims run` then `ffnmem claims report`); the quick samples are too small to decide it, so
this test does not assert it. No threshold is written here: each lives in its claim file.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ffnmem.batch.claims import all_claims, claims_table, run_claims

ROOT = Path(__file__).resolve().parents[2]
PROBES = ROOT / "probes" / "claims"
CLAIMS = all_claims(PROBES, quick=True)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Runs each claim file's quick batch once, on first use; the folder of all quick runs."""
    runs = tmp_path_factory.mktemp("claims-quick")
    done: set[Path] = set()

    def run(path: Path) -> Path:
        if path not in done:
            outcome = run_claims(PROBES, runs, only=[path.stem], quick=True, progress=False)
            assert outcome[path] is None, outcome[path]
            done.add(path)
        return runs

    return run


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_claim_reports_its_numbers_and_its_control_fails(claim, quick_runs):
    runs = quick_runs(claim.path)
    (row,) = [r for r in claims_table(PROBES, runs, quick=True) if r.claim.id == claim.id]
    assert row.status in ("PASS", "NOT REPRODUCED", "BROKEN"), f"{row.status}: {row.why}"
    for e in (row.result, row.control):
        assert e.n >= 2 and 0 < e.p_value <= 1, e
    e = row.result
    assert all(map(math.isfinite, (e.estimate, e.value, e.null, *e.ci))) and e.ci[0] <= e.estimate <= e.ci[1], e
    assert row.seeds and row.seconds is not None
    assert row.control.p_value >= claim.spec.alpha, (
        f"{claim.id} is BROKEN: its control ({claim.spec.control.description}) is significant, "
        f"p = {row.control.p_value:.3g}, estimate {row.control.estimate:.3g}")
