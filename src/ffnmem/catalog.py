"""The run folder and its results catalogue, queried with SQL (DuckDB over the Parquet results).

Layout of a run folder::

    RUN/
      run.json               manifest: catalogue schema, batch text and hash, every unit (written first)
      units/UNIT_ID/         one Result per finished unit (atomic: present = finished, never partial)
      catalog.parquet        one row per unit: status, seconds, error (rewritten atomically)

A unit's tables carry ``unit_id``, ``model``, ``seed`` and ``shard`` columns, so
``query(run, "SELECT ...")`` sees one view per ``ANALYSIS_TABLE`` (e.g. ``recall_facts``) over every
finished unit, plus ``units`` (the catalogue). Only finished units are read: an interrupted unit
leaves at most a hidden temp folder, which is never counted. The writer holds ``.RUN.lock`` beside
the folder (:func:`ffnmem.outputs.claim`: an flock the kernel drops when the process dies).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ffnmem.errors import BadInput
from ffnmem.outputs import OutputLocked, claim
from ffnmem.paths import atomic_write_json

CATALOG_SCHEMA = 1


RunLocked = OutputLocked  # the name older code and tests use


def read_manifest(run_dir: str | Path) -> dict:
    """``run.json`` of a run folder, checked against this ffnmem's catalogue schema."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise BadInput(f"{run_dir} is not an ffnmem run folder (no run.json); run `ffnmem run BATCH.toml` first")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"{path} is damaged ({exc}); remove the run folder and run the batch again") from None
    if manifest.get("catalog_schema", 0) > CATALOG_SCHEMA:
        raise BadInput(f"{run_dir} was written by a newer ffnmem (catalogue schema {manifest['catalog_schema']} > "
                       f"{CATALOG_SCHEMA}); upgrade ffnmem to read it")
    return manifest


def write_manifest(run_dir: Path, manifest: dict) -> None:
    atomic_write_json(run_dir / "run.json", {"catalog_schema": CATALOG_SCHEMA, **manifest})


def unit_dir(run_dir: str | Path, unit_id: str) -> Path:
    return Path(run_dir) / "units" / unit_id


def is_done(run_dir: str | Path, unit_id: str) -> bool:
    return (unit_dir(run_dir, unit_id) / "header.json").exists()


def unit_rows(run_dir: str | Path, manifest: dict | None = None, errors: dict[str, str] | None = None) -> list[dict]:
    """The catalogue: one row per unit of the manifest, with status read from the unit folders."""
    manifest = manifest or read_manifest(run_dir)
    errors = _recorded_errors(run_dir) if errors is None else errors
    rows = []
    for u in manifest["units"]:
        done = is_done(run_dir, u["unit_id"])
        seconds = None
        if done:
            header = json.loads((unit_dir(run_dir, u["unit_id"]) / "header.json").read_text())
            seconds = header.get("meta", {}).get("seconds")
        rows.append({**{k: u[k] for k in ("unit_id", "model", "analysis", "shard", "n_shards", "seed")},
                     "params": json.dumps(u["params"], sort_keys=True),
                     "status": "done" if done else ("failed" if u["unit_id"] in errors else "pending"),
                     "seconds": seconds, "error": errors.get(u["unit_id"]),
                     "path": str(Path("units") / u["unit_id"]) if done else None})
    return rows


def _recorded_errors(run_dir: str | Path) -> dict[str, str]:
    """Failures recorded by the last run (a failed unit has no folder, only a catalogue row)."""
    path = Path(run_dir) / "catalog.parquet"
    if not path.exists():
        return {}
    rows = pq.read_table(path, columns=["unit_id", "status", "error"]).to_pylist()
    return {r["unit_id"]: r["error"] for r in rows if r["status"] == "failed"}


def write_catalog(run_dir: Path, manifest: dict, errors: dict[str, str] | None = None) -> None:
    """Rewrite ``catalog.parquet`` atomically from the unit folders (the source of truth)."""
    table = pa.Table.from_pylist(unit_rows(run_dir, manifest, errors))
    tmp = run_dir / f".catalog.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, run_dir / "catalog.parquet")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock while writing; refuse (one line) a live holder or a folder ffnmem did not write."""
    with claim(run_dir):
        yield


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete temp folders/files a killed run left (call with the lock held); they were never counted."""
    import shutil

    gone = [*(run_dir / "units").glob(".*.tmp"), *(run_dir / "units").glob(".*.old-*"), *run_dir.glob(".catalog.*.tmp")]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return gone


def views(run_dir: str | Path) -> dict[str, list[str]]:
    """View name (``ANALYSIS_TABLE``) -> Parquet files of the finished units that have that table."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    out: dict[str, list[str]] = {}
    for u in manifest["units"]:
        folder = unit_dir(run_dir, u["unit_id"])
        if (folder / "header.json").exists():
            for p in sorted((folder / "tables").glob("*.parquet")):
                out.setdefault(f"{u['analysis']}_{p.stem}", []).append(str(p))
    return out


def connect(run_dir: str | Path):
    """A DuckDB connection with ``units`` and one view per analysis table of the run."""
    import duckdb

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    con = duckdb.connect()
    units = pa.Table.from_pylist(unit_rows(run_dir, manifest))
    con.register("_units_arrow", units)
    con.execute("CREATE VIEW units AS SELECT * FROM _units_arrow")
    for name, files in views(run_dir).items():
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}], union_by_name=true)')
    return con


def query(run_dir: str | Path, sql: str):
    """Run ``sql`` on a run's catalogue; returns a pandas DataFrame.

    >>> query("runs/demo", "SELECT relation, avg(top1) FROM recall_facts GROUP BY relation")  # doctest: +SKIP
    """
    import duckdb

    con = connect(run_dir)
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        known = ", ".join(["units", *sorted(views(run_dir))])
        raise BadInput(f"query failed: {str(exc).splitlines()[0]} (tables: {known})") from None
    finally:
        con.close()
