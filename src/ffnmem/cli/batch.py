"""Batches: resumable runs, reports, the claims registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.batch import runner as B
from ffnmem.batch.claims import claims_table
from ffnmem.cli.app import ForceOpt, app, out
from ffnmem.core.outputs import Lock, claim
from ffnmem.data.corpus import read_utf8_lines
from ffnmem.jobs.report import write_report
from ffnmem.store import catalog as C
from ffnmem.store.catalog import read_manifest


@app.command("run")
def run_cmd(
    batch: Annotated[Path, typer.Argument(help="A batch file, e.g. probes/tiny-smoke.toml.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder (default: [outputs] dir, else runs/NAME).")] = None,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (tasks on a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray address (default: start or join a local instance).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the batch (models resolvable offline, device, facts, parameters) and list its units; load and run nothing.")] = False,
    force: ForceOpt = False,
) -> None:
    """Run a batch: validate it, split it into units, run the unfinished ones, record them in the catalogue.

    Rerunning the same command resumes: finished units are kept, the rest run.
    """
    if batch.is_file():  # a non-UTF-8 batch file: one line naming the file and line (load_batch would not)

        read_utf8_lines(batch)
    b = B.load_batch(batch)
    units = B.check_batch(b, local=executor == "local")  # models resolvable, device present; nothing loaded
    if check:
        for u in units:
            out.print(u.unit_id)
        out.print(f"{batch}: valid, {len(units)} units")
        return
    run_dir = B.run_dir_for(b, out_dir)
    claim(run_dir, force=force)
    B.run_batch(b, run_dir, executor=executor, address=address)
    done = C.query(run_dir, "SELECT count(*) AS n FROM units WHERE status = 'done'")["n"][0]
    out.print(f"{run_dir}: {done}/{len(units)} units done; query with ffnmem.store.catalog.query({str(run_dir)!r}, sql)")
    if b.spec.outputs.report:

        out.print(f"report: {write_report(run_dir)}")


@app.command()
def report(run: Annotated[Path, typer.Argument(help="A run folder written by `ffnmem run`.")]) -> None:
    """Write RUN/report.html: a self-contained HTML report (plots, tables, provenance)."""
    read_manifest(run)  # a run folder, or one clear line
    Lock(run)  # not while `ffnmem run` writes it
    out.print(str(write_report(run)))


@app.command()
def claims(
    runs: Annotated[Path, typer.Option(help="Folder holding run folders.")] = Path("runs"),
    probes: Annotated[Path, typer.Option(help="Folder of claim batches.")] = Path("probes/claims"),
) -> None:
    """List every claim with its last measured value, the run it came from, and pass/fail."""
    table = Table(title="claims")
    for col in ("claim", "measured", "expected", "status", "run"):
        table.add_column(col)
    rows = claims_table(probes, runs)
    for row in rows:
        table.add_row(row["claim"], row["measured"], row["expected"], row["status"], row["run"])
    out.print(table)
    for row in rows:
        if row["status"] == "ERROR":
            out.print(f"{row['batch']}: {row['error']}")
