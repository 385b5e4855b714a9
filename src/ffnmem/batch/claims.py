"""The claims registry: each ``probes/claims/*.toml`` is a batch plus one or more ``[[claim]]`` tables.

A claim is defined once, in its file, before it is run::

    [[claim]]
    id = "kv-agreement-upper"
    statement = "..."           # what is claimed, in words
    paper = "..."               # the paper's figure or number it reproduces
    data = "..."                # the data and sample it is measured on
    statistic = "..."           # what the estimate is
    null = "..."                # the null model it is tested against
    test = "paired"             # paired | proportion | correlation (ffnmem.stats.claim_test)
    alternative = "greater"     # the claimed direction
    effect = 0.005              # the smallest effect (estimate) the claim asserts, >= 0
    alpha = 0.05                # significance level
    sql = "SELECT ... AS value, ... AS null FROM ..."   # one row per item, on the run's catalogue
    [claim.control]
    description = "the same pipeline on a random-init model"   # where the effect must be absent
    sql = "SELECT ... WHERE model = 'smollm2-135m@init=random'"

Status: **PASS** when the claim is significant (p < alpha) with an estimate at least ``effect`` in
its direction and the control is not significant; **BROKEN** when the control is significant (the
pipeline finds the effect where it cannot be); **NOT REPRODUCED** otherwise, a finding, not an
error; **NOT RUN** when the file's current version has no finished run; **ERROR** when its query fails.

Runs live in ``RUNS/NAME/HASH`` (``HASH``: what the units compute, :attr:`Batch.hash`), so a claim
file edited after a run is NOT RUN until rerun, and the older run stays on disk.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ffnmem.batch.runner import Batch, load_batch, run_batch
from ffnmem.core.errors import BadInput, FfnmemError
from ffnmem.stats import Estimate, claim_test
from ffnmem.store import catalog

log = logging.getLogger(__name__)

RUNS = Path("runs/claims")
PROBES = Path("probes/claims")
STATUSES = ("PASS", "NOT REPRODUCED", "BROKEN", "NOT RUN", "ERROR")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControlSpec(_Strict):
    description: str = Field(min_length=1)
    sql: str = Field(min_length=1)


class ClaimSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    statement: str = Field(min_length=1)
    paper: str = Field(min_length=1)
    data: str = Field(min_length=1)
    statistic: str = Field(min_length=1)
    null: str = Field(min_length=1)
    test: Literal["paired", "proportion", "correlation"]
    alternative: Literal["greater", "less"] = "greater"
    effect: float = Field(ge=0)
    alpha: float = Field(0.05, gt=0, le=0.5)
    sql: str = Field(min_length=1)
    control: ControlSpec


@dataclass(frozen=True)
class Claim:
    spec: ClaimSpec
    path: Path
    batch: Batch

    @property
    def id(self) -> str:
        return self.spec.id

    def significant(self, e: Estimate) -> bool:
        return not math.isnan(e.p_value) and e.p_value < self.spec.alpha

    def effect_met(self, e: Estimate) -> bool:
        if math.isnan(e.estimate):
            return False
        return e.estimate >= self.spec.effect if self.spec.alternative == "greater" else e.estimate <= -self.spec.effect


@dataclass
class ClaimResult:
    """A claim's latest measurement: the claim's and the control's estimates, status and where from."""

    claim: Claim
    status: str = "NOT RUN"
    result: Estimate | None = None
    control: Estimate | None = None
    seeds: list[int] = field(default_factory=list)
    seconds: float | None = None
    run: Path | None = None
    error: str | None = None
    quick: bool = False

    @property
    def why(self) -> str:
        """The status in words: which condition decided it."""
        c, r, k = self.claim, self.result, self.control
        if self.status == "ERROR":
            return self.error or ""
        if r is None or k is None:
            return "no finished run of this version of the claim file"
        if self.status == "BROKEN":
            return f"the control is significant (p = {k.p_value:.3g} < {c.spec.alpha}): the pipeline finds the effect where it must be absent"
        if self.status == "PASS":
            return f"p = {r.p_value:.3g} < {c.spec.alpha} and effect {r.estimate:.3g} beyond {c.spec.effect:g}; control p = {k.p_value:.3g}"
        if not c.significant(r):
            return f"not significant: p = {r.p_value:.3g} >= {c.spec.alpha}"
        return f"significant but the effect {r.estimate:.3g} is smaller than the {c.spec.effect:g} claimed"


def claim_files(probes: str | Path = PROBES) -> list[Path]:
    paths = sorted(Path(probes).glob("*.toml"))
    if not paths:
        raise BadInput(f"no claim files in {probes}")
    return paths


def load_claims(path: str | Path, *, quick: bool = False) -> list[Claim]:
    """Every ``[[claim]]`` of a claim file, with its batch (the ``[quick]`` version when ``quick``)."""
    path = Path(path)
    batch = load_batch(path, quick=quick)
    tables = batch.spec.claim
    if not tables:
        raise BadInput(f"{path}: a claim file needs at least one [[claim]] table (id, statement, paper, data, "
                       "statistic, null, test, effect, sql and [claim.control])")
    out = []
    for i, table in enumerate(tables):
        try:
            spec = ClaimSpec.model_validate(table)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"])) or "?"
            allowed = ", ".join(ClaimSpec.model_fields)
            what = f"has no field {where!r} (allowed: {allowed})" if err["type"] == "extra_forbidden" \
                else f"field {where!r}: {err['msg']}"
            raise BadInput(f"{path}: [[claim]] #{i + 1} {what}") from None
        out.append(Claim(spec, path, batch))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise BadInput(f"{path}: two [[claim]] tables share an id; give each its own")
    return out


def all_claims(probes: str | Path = PROBES, *, quick: bool = False) -> list[Claim]:
    claims = [c for path in claim_files(probes) for c in load_claims(path, quick=quick)]
    seen: dict[str, Path] = {}
    for c in claims:
        if c.id in seen and seen[c.id] != c.path:
            raise BadInput(f"claim id {c.id!r} is defined in both {seen[c.id]} and {c.path}; ids are unique")
        seen[c.id] = c.path
    return claims


def run_dir(batch: Batch, runs: str | Path = RUNS) -> Path:
    """Where this version of a claim file's batch runs: ``RUNS/NAME/HASH``."""
    return Path(runs) / batch.spec.name / batch.hash


def finished(run: Path) -> bool:
    try:
        m = catalog.read_manifest(run)
    except FfnmemError:
        return False
    return all(catalog.is_done(run, u["unit_id"]) for u in m["units"])


def run_claims(probes: str | Path = PROBES, runs: str | Path = RUNS, *, only: list[str] | None = None,
               quick: bool = False, executor="local", address: str | None = None,
               progress: bool = True) -> dict[Path, str | None]:
    """Run the batch of every claim file (or of those holding a claim in ``only``), resumably.

    Returns ``{claim file: None or the one-line error}``; one failing file does not stop the others.
    """
    claims = all_claims(probes, quick=quick)
    if only:
        unknown = sorted(set(only) - {c.id for c in claims} - {c.path.stem for c in claims})
        if unknown:
            raise BadInput(f"no claim {', '.join(map(repr, unknown))}; known: {', '.join(c.id for c in claims)}")
    files = dict.fromkeys(c.path for c in claims if not only or c.id in only or c.path.stem in only)
    outcome: dict[Path, str | None] = {}
    for path in files:
        batch = next(c.batch for c in claims if c.path == path)
        folder = run_dir(batch, runs)
        try:
            run_batch(batch, folder, executor=executor, address=address, progress=progress)
            outcome[path] = None
        except FfnmemError as exc:
            log.error("%s: %s", path, exc)
            outcome[path] = str(exc)
    return outcome


def _columns(claim: Claim, run: Path, sql: str, what: str) -> dict[str, np.ndarray]:
    df = catalog.query(run, sql)
    if df.empty:
        raise BadInput(f"claim {claim.id}: its {what} query returned no rows on {run}")
    cols = {}
    for name in df.columns:
        try:
            values = df[name].astype(float).to_numpy()
        except (TypeError, ValueError):
            continue  # a label column (relation, fact): not a test input
        if np.isnan(values).any():
            raise BadInput(f"claim {claim.id}: its {what} query returned {int(np.isnan(values).sum())} NULL/NaN "
                           f"values in {name!r} on {run}; filter the items that have no value in the sql")
        cols[str(name)] = values
    return cols


def evaluate(claim: Claim, run: Path, *, quick: bool = False) -> ClaimResult:
    """The claim's and its control's estimates on a finished run, and the status they give."""
    res = ClaimResult(claim, run=run, quick=quick)
    seed = claim.batch.spec.seeds[0]
    try:
        res.result = claim_test(claim.spec.test, _columns(claim, run, claim.spec.sql, "claim"),
                                alternative=claim.spec.alternative, rng=seed)
        res.control = claim_test(claim.spec.test, _columns(claim, run, claim.spec.control.sql, "control"),
                                 alternative=claim.spec.alternative, rng=seed)
    except FfnmemError as exc:
        res.status, res.error = "ERROR", str(exc)
        return res
    units = catalog.unit_rows(run)
    res.seeds = sorted({int(u["seed"]) for u in units})
    res.seconds = float(sum(u["seconds"] or 0.0 for u in units))
    if claim.significant(res.control):
        res.status = "BROKEN"
    elif claim.significant(res.result) and claim.effect_met(res.result):
        res.status = "PASS"
    else:
        res.status = "NOT REPRODUCED"
    return res


def claims_table(probes: str | Path = PROBES, runs: str | Path = RUNS, *, quick: bool = False) -> list[ClaimResult]:
    """Every claim with its latest measurement (NOT RUN where this version of its file has no finished run)."""
    rows = []
    for claim in all_claims(probes, quick=quick):
        folder = run_dir(claim.batch, runs)
        if not finished(folder):
            rows.append(ClaimResult(claim, quick=quick))
            continue
        row = evaluate(claim, folder, quick=quick)
        if row.status == "ERROR":
            log.warning("%s", row.error)
        rows.append(row)
    return rows
