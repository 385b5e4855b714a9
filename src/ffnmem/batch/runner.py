"""Batch files (``probes/*.toml``): validated before anything runs, split into units, run resumably.

A batch file::

    name = "recall-small"
    models = ["tiny-2l"]
    seeds = [0]
    [data]
    facts = "capital_of.jsonl"     # file, folder, list, 'all' (data/facts) or 'demo'
    limit_per_relation = 8
    shards = 2
    [[analysis]]
    name = "recall"                # see ffnmem.batch.registry.ANALYSES
    k = 5
    [outputs]
    dir = "runs/recall-small"

Units are model x data shard x analysis x seed; each unit's Result lands atomically in
``RUN/units/UNIT_ID`` and a rerun of the same command skips finished units (see ffnmem.store.catalog).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ffnmem.batch.executors import RayExecutor, executor_for
from ffnmem.batch.registry import ANALYSES, Params, UnitData
from ffnmem.batch.toml_lines import line_of as _line
from ffnmem.core.errors import BadInput, FfnmemError
from ffnmem.core.models import load_model, resolve_spec
from ffnmem.core.workbench import resolve_device
from ffnmem.data.corpus import default_corpus, read_texts
from ffnmem.data.facts import Fact, load_facts
from ffnmem.jobs.demo import demo_facts
from ffnmem.store import catalog
from ffnmem.store.provenance import facts_hash
from ffnmem.store.results import Result, check_finite

log = logging.getLogger(__name__)


class UnitsFailed(FfnmemError):
    """Some units of a batch failed (each one's error is in the catalogue); the rest are kept."""

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    facts: str | list[str] | None = None
    relations: list[str] | None = None
    limit_per_relation: int | None = Field(None, ge=1)
    sample_seed: int | None = None  # with limit_per_relation: a seeded random sample per relation
    shards: int = Field(1, ge=1)
    corpus: str | list[str] | None = None  # 'default' (stdlib docstrings) or text files
    window: int = Field(64, ge=2)
    max_windows: int | None = Field(32, ge=1)


class Outputs(_Strict):
    dir: str | None = None
    report: bool = True


class BatchSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    models: list[str] = Field(min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    data: DataSpec = DataSpec()
    outputs: Outputs = Outputs()
    claim: list[dict[str, Any]] | None = None  # [[claim]] tables, read by ffnmem.batch.claims
    quick: dict[str, Any] | None = None  # overrides applied by load_batch(quick=True)

    @field_validator("models", "seeds")
    @classmethod
    def _once_each(cls, values: list) -> list:
        # a repeated entry would give two units one id (and count their rows twice)
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once; list each once")
        return values


@dataclass(frozen=True)
class Batch:
    path: Path
    text: str
    spec: BatchSpec
    analyses: list[tuple[str, Params]]

    @property
    def hash(self) -> str:
        """Hash of what the units compute (not comments, not the [claim] table or outputs)."""
        import json

        what = {"spec": self.spec.model_dump(exclude={"claim", "quick", "outputs", "description"}),
                "analyses": [(name, p.model_dump()) for name, p in self.analyses]}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Unit:
    unit_id: str
    model: str
    analysis: str
    index: int
    params: dict
    shard: int
    n_shards: int
    seed: int


def load_batch(path: str | Path, *, quick: bool = False) -> Batch:
    """Read and validate a batch file; every error is one line naming the file and line.

    ``quick``: apply the file's ``[quick]`` table first (a smaller version of the same batch, e.g. for
    CI): its ``data`` entries replace those of ``[data]``, its ``analysis`` list updates the
    ``[[analysis]]`` tables by position, any other key replaces the top-level one (``seeds``). A
    batch without ``[quick]`` is its own quick version.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"batch file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = "" if "line" in str(exc) else f" (line {len(text.splitlines())})"
        raise BadInput(f"{path}: malformed TOML: {exc}{where}") from None  # message has (at line L, column C)
    if quick:
        raw = _quick(path, raw)
    entries = raw.pop("analysis", None)
    if not isinstance(entries, list) or not entries:
        raise BadInput(f"{path}: no [[analysis]] tables; add one, e.g. name = \"recall\" "
                       f"(choose from {', '.join(sorted(ANALYSES))})")
    try:
        spec = BatchSpec.model_validate(raw)
    except ValidationError as exc:
        raise _error(path, text, exc.errors()[0], None) from None
    analyses = [_analysis(path, text, i, dict(entry)) for i, entry in enumerate(entries)]
    batch = Batch(path, text, spec, analyses)
    _check_data(batch)
    units(batch)  # unit ids must be unique: refuse names that collide once made file-safe
    return batch


def _quick(path: Path, raw: dict) -> dict:
    over = raw.get("quick")
    if over is None:
        return raw  # a batch small enough already: its quick version is itself
    if not isinstance(over, dict):
        raise BadInput(f"{path}: [quick] must be a table (e.g. [quick] data = {{ limit_per_relation = 2 }})")
    raw = {**raw, "data": dict(raw.get("data", {}))}
    for key, value in over.items():
        if key == "data" and isinstance(value, dict):
            raw["data"].update(value)
        elif key == "analysis" and isinstance(value, list):
            entries = [dict(e) for e in raw.get("analysis", [])]
            if len(value) > len(entries):
                raise BadInput(f"{path}: [quick] analysis lists {len(value)} tables but the batch has {len(entries)}")
            for entry, change in zip(entries, value, strict=False):
                entry.update(change)
            raw["analysis"] = entries
        else:
            raw[key] = value
    return raw


def _analysis(path: Path, text: str, i: int, entry: dict) -> tuple[str, Params]:
    name = entry.pop("name", None)
    if name not in ANALYSES:
        line = _line(text, ("analysis", i, "name"))
        raise BadInput(f"{path}:{line}: unknown analysis {name!r}; choose from {', '.join(sorted(ANALYSES))}")
    try:
        return name, ANALYSES[name].params.model_validate(entry)
    except ValidationError as exc:
        raise _error(path, text, exc.errors()[0], (i, name)) from None


def _error(path: Path, text: str, err: dict, analysis: tuple[int, str] | None) -> BadInput:
    loc = tuple(err["loc"])
    if analysis is not None:
        i, name = analysis
        line = _line(text, ("analysis", i, *loc[:1]))
        allowed = ", ".join(ANALYSES[name].params.model_fields)
        what = f"analysis {name!r}"
    else:
        line = _line(text, loc[:2] if len(loc) > 1 and loc[0] in ("data", "outputs") else loc[:1])
        model = {"data": DataSpec, "outputs": Outputs}.get(loc[0], BatchSpec) if len(loc) > 1 else BatchSpec
        allowed = ", ".join(model.model_fields)
        what = f"[{loc[0]}]" if model is not BatchSpec else "the batch"
    key = str(loc[-1]) if analysis is not None or len(loc) > 1 else str(loc[0])
    if err["type"] == "extra_forbidden":
        return BadInput(f"{path}:{line}: {what} has no parameter {key!r}; allowed: {allowed}")
    return BadInput(f"{path}:{line}: {what} parameter {'.'.join(map(str, loc))!r}: {err['msg']}")


def _check_data(batch: Batch) -> None:
    d = batch.spec.data
    kinds = {ANALYSES[name].data for name, _ in batch.analyses}
    if "facts" in kinds:
        if d.facts is None:
            raise BadInput(f"{batch.path}: [data] needs facts = \"FILE\" for the fact analyses")
        n = len(_facts(batch))
        if d.shards > n:
            line = _line(batch.text, ("data", "shards"))
            raise BadInput(f"{batch.path}:{line}: [data] shards = {d.shards} but the facts hold only {n}; "
                           f"use shards = {n} or fewer")
    if "corpus" in kinds and d.corpus is None:
        raise BadInput(f"{batch.path}: [data] needs corpus = \"default\" (or text files) for key_agreement")


def _resolve(batch: Batch, spec: str) -> str:
    p = batch.path.parent / spec
    return str(p) if p.exists() else spec


def _facts(batch: Batch) -> list:

    d = batch.spec.data
    if d.facts == "demo":

        return [Fact(**f) for f in demo_facts()]
    spec = [_resolve(batch, s) for s in d.facts] if isinstance(d.facts, list) else _resolve(batch, d.facts)
    try:
        return load_facts(spec, relations=d.relations, limit_per_relation=d.limit_per_relation,
                          sample_seed=d.sample_seed)
    except FfnmemError as exc:
        raise BadInput(f"{batch.path}: [data] facts: {exc}") from None


def units(batch: Batch) -> list[Unit]:
    """Every unit of the batch, ordered by model (so each model loads once per worker)."""
    out = []
    for model in batch.spec.models:
        for i, (name, params) in enumerate(batch.analyses):
            if ANALYSES[name].data == "none" and model != batch.spec.models[0]:
                continue  # builds its own model: once per seed, not once per listed model
            n = batch.spec.data.shards if ANALYSES[name].data == "facts" else 1
            unit_model = "none" if ANALYSES[name].data == "none" else model
            for seed in batch.spec.seeds:
                for shard in range(n):
                    slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", unit_model)
                    uid = f"{slug}__{i:02d}-{name}__shard{shard}of{n}__seed{seed}"
                    out.append(Unit(uid, unit_model, name, i, params.model_dump(), shard, n, seed))
    seen: dict[str, str] = {}
    for u in out:
        if seen.setdefault(u.unit_id, u.model) != u.model:
            raise BadInput(f"{batch.path}: models {seen[u.unit_id]!r} and {u.model!r} give the same unit id "
                           f"{u.unit_id!r}; list one of them under another path")
    return out


def unit_data(batch: Batch, unit: Unit) -> UnitData:
    d = batch.spec.data
    if ANALYSES[unit.analysis].data in ("none", "model"):
        return UnitData()
    if ANALYSES[unit.analysis].data == "corpus":

        texts = default_corpus() if d.corpus == "default" else read_texts(
            [_resolve(batch, c) for c in ([d.corpus] if isinstance(d.corpus, str) else d.corpus)])
        return UnitData(texts=texts, window=d.window, max_windows=d.max_windows)

    facts = _facts(batch)[unit.shard::unit.n_shards]
    return UnitData(facts=facts, data_hash=facts_hash(facts))


_MODELS: dict[tuple[str, str], Any] = {}


def get_model(spec: str, device: str):
    """Load a model once per process (the Ray executor relies on this per-worker cache)."""

    key = (spec, device)
    if key not in _MODELS:
        _MODELS.clear()  # one model at a time keeps memory bounded; units are ordered by model
        _MODELS[key] = load_model(spec, device=device)
    return _MODELS[key]


def run_unit(batch: Batch, unit: Unit):
    """Run one unit; returns its Result with unit columns added to every table (``model``, ``seed``,
    ``shard``; as ``unit_model`` etc. where the analysis' table already has a column of that name, e.g.
    the lossy job's ``model`` = width label)."""
    import pyarrow as pa


    a = ANALYSES[unit.analysis]
    wb = None if a.data == "none" else get_model(unit.model, batch.spec.device)
    t0 = time.perf_counter()
    res = a.fn(wb, unit_data(batch, unit), a.params.model_validate(unit.params), unit.seed)
    tables = {}
    for name, t in res.tables.items():
        for col, val in (("unit_id", unit.unit_id), ("model", unit.model), ("seed", unit.seed), ("shard", unit.shard)):
            column = col if col not in t.column_names else f"unit_{col}"
            t = t.append_column(column, pa.array([val] * t.num_rows))
        tables[name] = t
    meta = {**res.meta, "unit": unit.__dict__, "seconds": round(time.perf_counter() - t0, 3)}
    return Result(kind=res.kind, tables=tables, tensors=res.tensors, meta=meta, provenance=res.provenance)


def check_batch(batch: Batch, *, local: bool = True) -> list[Unit]:
    """Check what loading the batch cannot: models resolvable offline (no weights loaded) and the
    device present. ``local=False`` (Ray) skips both: the workers, not this machine, must have them.
    Returns the units."""

    found = units(batch)
    if not local:
        return found
    try:
        resolve_device(batch.spec.device)
    except FfnmemError as exc:
        raise BadInput(f"{batch.path}:{_line(batch.text, ('device',))}: {exc}") from None
    for model in dict.fromkeys(u.model for u in found if u.model != "none"):
        try:
            resolve_spec(model)
        except FfnmemError as exc:
            raise BadInput(f"{batch.path}:{_line(batch.text, ('models',))}: {exc}") from None
    return found


def run_dir_for(batch: Batch, out: str | Path | None) -> Path:
    if out is not None:
        return Path(out)
    return Path(batch.spec.outputs.dir or f"runs/{batch.spec.name}")


def run_batch(batch: Batch, out: str | Path | None = None, *, executor="local", address: str | None = None,
              progress: bool = True) -> Path:
    """Run every unfinished unit of ``batch`` into its run folder; returns the folder.

    ``executor``: ``local``, ``ray`` (at ``address``) or an executor object (:mod:`ffnmem.batch.executors`).
    Raises :class:`FfnmemError` at the end if any unit failed (finished units stay recorded).
    """
    runner = executor_for(executor, address) if isinstance(executor, str) else executor
    check_batch(batch, local=not isinstance(runner, RayExecutor))
    run_dir = run_dir_for(batch, out)
    with catalog.run_lock(run_dir):
        all_units = units(batch)
        manifest = _manifest(batch, run_dir, all_units)
        for p in catalog.remove_leftovers(run_dir):
            log.info("removed %s, left by an interrupted run", p)
        todo = [u for u in all_units if not catalog.is_done(run_dir, u.unit_id)]
        log.info("%s: %d units, %d to run", run_dir, len(all_units), len(todo))
        errors: dict[str, str] = {}

        def save(unit: Unit, result) -> None:
            check_finite(result)  # a unit with NaN numbers fails; it is never marked done
            result.save(catalog.unit_dir(run_dir, unit.unit_id))
            catalog.write_catalog(run_dir, manifest, errors)

        def fail(unit: Unit, message: str) -> None:
            errors[unit.unit_id] = message
            log.error("unit %s failed: %s", unit.unit_id, message)
            catalog.write_catalog(run_dir, manifest, errors)

        runner(todo, functools.partial(run_unit, batch), save, fail, desc=batch.spec.name, progress=progress)
        catalog.write_catalog(run_dir, manifest, errors)
    if errors:
        first = next(iter(errors.items()))
        raise UnitsFailed(f"{len(errors)} of {len(todo)} units failed (first: {first[0]}: {first[1]}); "
                          f"finished units are kept: rerun the same command to redo the rest")
    return run_dir


def _manifest(batch: Batch, run_dir: Path, all_units: list[Unit]) -> dict:
    if (run_dir / "run.json").exists():
        old = catalog.read_manifest(run_dir)
        if old.get("batch_hash") != batch.hash:
            raise BadInput(f"run folder {run_dir} holds another version of the batch ({old.get('batch_file')}); "
                           "use a new --out, or delete the folder to start over")
        return old
    manifest = {"batch_name": batch.spec.name, "batch_file": str(batch.path), "batch_hash": batch.hash,
                "batch_text": batch.text, "units": [u.__dict__ for u in all_units],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    catalog.write_manifest(run_dir, manifest)
    return catalog.read_manifest(run_dir)
