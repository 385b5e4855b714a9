"""The run folder and its results catalogue, queried with SQL (DuckDB over the Parquet results).

Layout of a run folder::

    RUN/
      run.json               manifest: catalogue schema, batch text and hash, every unit (written first)
      units/UNIT_ID/         one Result per finished unit (atomic: present = finished, never partial)
      catalog.parquet        one row per unit: status, seconds, error (rewritten atomically)

A unit's tables carry ``unit_id``, ``model``, ``seed`` and ``shard`` columns, so
``query(run, "SELECT ...")`` sees one table per ``ANALYSIS_TABLE`` (e.g. ``recall_facts``) over every
finished unit, plus ``units`` (the catalogue). Only finished units are read: an interrupted unit
leaves at most a hidden temp folder, which is never counted. The writer holds ``.RUN.lock`` beside
the folder (:func:`ffnmem.core.outputs.claim`: an flock the kernel drops when the process dies).

A run folder may come from someone else, so nothing in it is trusted: names from ``run.json`` that
become SQL identifiers or paths must match strict patterns, and SQL runs on a DuckDB connection
that has loaded the run's tables and then lost all file access (no ``read_text``, ``COPY TO``,
``ATTACH``), its configuration locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import OutputLocked, claim
from ffnmem.core.paths import atomic_write_json

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
    if not isinstance(manifest, dict) or not isinstance(manifest.get("units"), list) or not isinstance(
            manifest.get("catalog_schema", 0), int):
        raise BadInput(f"{path} is damaged (no unit list); remove the run folder and run the batch again")
    if manifest.get("catalog_schema", 0) > CATALOG_SCHEMA:
        raise BadInput(f"{run_dir} was written by a newer ffnmem (catalogue schema {manifest['catalog_schema']} > "
                       f"{CATALOG_SCHEMA}); upgrade ffnmem to read it")
    _check_names(Path(run_dir), manifest)
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
            seconds = _unit_seconds(run_dir, u["unit_id"])
        rows.append({**{k: u[k] for k in ("unit_id", "model", "analysis", "shard", "n_shards", "seed")},
                     "params": json.dumps(u["params"], sort_keys=True),
                     "status": "done" if done else ("failed" if u["unit_id"] in errors else "pending"),
                     "seconds": seconds, "error": errors.get(u["unit_id"]),
                     "path": str(Path("units") / u["unit_id"]) if done else None})
    return rows


def _unit_seconds(run_dir: str | Path, unit_id: str) -> float | None:
    path = unit_dir(run_dir, unit_id) / "header.json"
    try:
        return json.loads(path.read_text()).get("meta", {}).get("seconds")
    except (OSError, ValueError, AttributeError) as exc:
        raise BadInput(f"{path} is damaged ({type(exc).__name__}); delete {path.parent} and rerun the batch "
                       "to redo that unit") from None


def _recorded_errors(run_dir: str | Path) -> dict[str, str]:
    """Failures recorded by the last run (a failed unit has no folder, only a catalogue row)."""
    path = Path(run_dir) / "catalog.parquet"
    if not path.exists():
        return {}
    try:
        rows = pq.read_table(path, columns=["unit_id", "status", "error"]).to_pylist()
        return {r["unit_id"]: r["error"] for r in rows if r["status"] == "failed"}
    except Exception as exc:  # noqa: BLE001 - truncated file, not Parquet, missing columns
        raise BadInput(f"{path} is damaged ({type(exc).__name__}); rerun the batch (`ffnmem run BATCH --out "
                       f"{run_dir}`) to rebuild it: finished units are kept") from None


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


# Names that reach SQL as identifiers come from run.json, a file anyone could have written.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_UNIT_ID = re.compile(r"^[A-Za-z0-9_=-][A-Za-z0-9._=-]{0,199}$")


def _check_names(run_dir: Path, manifest: dict) -> None:
    for u in manifest.get("units", []):
        if not isinstance(u, dict) or not _UNIT_ID.match(str(u.get("unit_id", ""))) or not _IDENT.match(
                str(u.get("analysis", ""))):
            raise BadInput(f"{run_dir}/run.json lists a unit with an invalid id or analysis name "
                           f"({str(u)[:80]!r}); it was not written by ffnmem: rerun the batch into a new folder")


def views(run_dir: str | Path) -> dict[str, list[str]]:
    """View name (``ANALYSIS_TABLE``) -> Parquet files of the finished units that have that table."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    out: dict[str, list[str]] = {}
    for u in manifest["units"]:
        folder = unit_dir(run_dir, u["unit_id"])
        if (folder / "header.json").exists():
            for p in sorted((folder / "tables").glob("*.parquet")):
                if _IDENT.match(f"{u['analysis']}_{p.stem}"):  # other file names are not ffnmem tables
                    out.setdefault(f"{u['analysis']}_{p.stem}", []).append(str(p))
    return out


def connect(run_dir: str | Path):
    """An in-memory DuckDB connection holding ``units`` and one table per analysis table of the run.

    The run's tables are loaded first; then file access is switched off and the configuration
    locked, so SQL from a claim file or a user (``read_text``, ``COPY ... TO``, ``ATTACH``) can
    neither read nor write files.
    """
    import duckdb

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    con = duckdb.connect(":memory:")
    try:
        con.register("_units_arrow", pa.Table.from_pylist(unit_rows(run_dir, manifest)))
        con.execute("CREATE TABLE units AS SELECT * FROM _units_arrow")
        con.unregister("_units_arrow")
        for name, files in views(run_dir).items():
            _load_table(con, run_dir, name, files)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _load_table(con, run_dir: Path, name: str, files: list[str]) -> None:
    import duckdb

    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    try:
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM read_parquet([{listing}], union_by_name=true)')
    except duckdb.Error as exc:
        raise BadInput(f"{run_dir}: a unit table of {name} is damaged ({str(exc).splitlines()[0][:160]}); "
                       "delete that unit's folder under units/ and rerun the batch") from None


def query(run_dir: str | Path, sql: str):
    """Run ``sql`` on a run's catalogue (no file access from SQL); returns a pandas DataFrame.

    >>> query("runs/demo", "SELECT relation, avg(top1) FROM recall_facts GROUP BY relation")  # doctest: +SKIP
    """
    import duckdb

    con = connect(run_dir)
    try:
        return con.execute(sql).df()
    except duckdb.PermissionException:
        raise BadInput("query refused: SQL on a run may not read or write files (read_text, COPY, ATTACH, ...); "
                       "query the run's tables only") from None
    except duckdb.Error as exc:
        known = ", ".join(["units", *sorted(views(run_dir))])
        raise BadInput(f"query failed: {str(exc).splitlines()[0]} (tables: {known})") from None
    finally:
        con.close()
