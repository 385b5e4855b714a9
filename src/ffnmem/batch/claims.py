"""The claims registry: ``probes/claims/*.toml`` batches with a ``[claim]`` table, checked on their runs.

A claim batch adds::

    [claim]
    id = "ablation-topk"
    statement = "ablating the top-20 DLA neurons removes most of p(answer); 20 random ones do not"
    sql = "SELECT avg((p_clean - p_top) / p_clean) AS value FROM ablation_topk_vs_random_prompts"
    min = 0.5          # pass when min <= value <= max (either bound optional)

``sql`` runs on the claim's latest complete run (:func:`ffnmem.store.catalog.query`) and returns one value.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from ffnmem.batch.runner import Batch, load_batch
from ffnmem.core.errors import BadInput, FfnmemError
from ffnmem.store import catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    sql: str
    min: float | None
    max: float | None
    batch: Batch

    def expected(self) -> str:
        lo = "" if self.min is None else f"≥ {self.min:g}"
        hi = "" if self.max is None else f"≤ {self.max:g}"
        return " and ".join(x for x in (lo, hi) if x)

    def passes(self, value: float) -> bool:
        return not math.isnan(value) and (self.min is None or value >= self.min) and (
            self.max is None or value <= self.max)


def load_claim(path: str | Path) -> Claim:
    batch = load_batch(path)
    c = batch.spec.claim
    if not c or not {"id", "statement", "sql"} <= set(c) or not ({"min", "max"} & set(c)):
        raise BadInput(f"{path}: a claim batch needs [claim] with id, statement, sql and min and/or max")
    bound = {k: None if c.get(k) is None else float(c[k]) for k in ("min", "max")}
    return Claim(c["id"], c["statement"], c["sql"], bound["min"], bound["max"], batch)


def measure(claim: Claim, run_dir: str | Path) -> float:
    """The claim's value on a run (first column of the first row of its SQL)."""
    df = catalog.query(run_dir, claim.sql)
    if df.empty or df.shape[1] == 0:
        raise BadInput(f"claim {claim.id}: its query returned no rows on {run_dir}")
    value = df.iloc[0, 0]
    number = None if isinstance(value, (str, bytes, bool)) else _number(value)
    if number is None or math.isnan(number):
        import pandas as pd

        shown = "NULL" if number is not None or pd.isna(value) else repr(str(value)[:40])
        raise BadInput(f"claim {claim.id}: its query returned {shown}, not a number, on {run_dir}; "
                       "fix the claim's sql or check that the run has the rows it reads")
    return number


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def latest_run(claim: Claim, runs: Path) -> Path | None:
    """The newest complete run folder under ``runs`` (or the batch's own output folder) of this claim's batch."""
    candidates = [p.parent for p in runs.glob("*/run.json")]
    if claim.batch.spec.outputs.dir:
        candidates.append(Path(claim.batch.spec.outputs.dir))
    best = None
    for run in set(candidates):
        try:
            m = catalog.read_manifest(run)
        except FfnmemError:
            continue
        done = all(catalog.is_done(run, u["unit_id"]) for u in m["units"])
        if m.get("batch_hash") == claim.batch.hash and done:
            if best is None or _mtime(run) > _mtime(best):
                best = run
    return best


def _mtime(run: Path) -> float:
    """When the run's catalogue was last written (0 when it is missing: that run is oldest)."""
    path = run / "catalog.parquet"
    return path.stat().st_mtime if path.exists() else 0.0


def claims_table(probes: str | Path = "probes/claims", runs: str | Path = "runs") -> list[dict]:
    """One row per claim batch: measured value, expectation, PASS/FAIL/NOT RUN/ERROR, run folder.

    ERROR rows (the claim's SQL failed or gave no number) carry the one-line reason in ``error``.
    """
    paths = sorted(Path(probes).glob("*.toml"))
    if not paths:
        raise BadInput(f"no claim batches in {probes}")
    rows = []
    for path in paths:
        claim = load_claim(path)
        run = latest_run(claim, Path(runs))
        row = {"claim": f"{claim.id}: {claim.statement}", "expected": claim.expected(), "run": str(run or "-"),
               "measured": "-", "status": "NOT RUN", "value": None, "batch": str(path)}
        if run is not None:
            try:
                value = measure(claim, run)
            except FfnmemError as exc:  # one broken claim must not hide the others
                log.warning("%s", exc)
                row.update(status="ERROR", error=str(exc))
            else:
                row.update(value=value, measured=f"{value:.4g}", status="PASS" if claim.passes(value) else "FAIL")
        rows.append(row)
    return rows
