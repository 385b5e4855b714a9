"""Batches: resumable runs, reports, the claims registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, no_type_check

import typer
from rich.table import Table

from ffnmem.batch import claims as CL
from ffnmem.batch import runner as B
from ffnmem.batch.claims_report import GENERATED, render, summary_counts
from ffnmem.cli.app import ForceOpt, app, out
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import Lock, claim
from ffnmem.core.paths import atomic_write_text
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


claims_app = typer.Typer(
    help="Test-backed claims: each defined once in probes/claims/*.toml with its null, effect size and negative "
         "control. `ffnmem claims` lists them, `claims run` runs them, `claims report` writes docs/CLAIMS.md.",
    invoke_without_command=True, no_args_is_help=False)
app.add_typer(claims_app, name="claims")

RunsOpt = Annotated[Path, typer.Option(help="Folder holding the claims' run folders (RUNS/NAME/HASH).")]
ProbesOpt = Annotated[Path, typer.Option(help="Folder of claim files.")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="The quick versions (the files' [quick] tables: smaller "
                                                        "samples, same statistics), as CI runs them.")]


@claims_app.callback()
@no_type_check  # typer passes its bundled click Context, not the typer.Context class a type checker expects
def claims_list(ctx: typer.Context, runs: RunsOpt = CL.RUNS, probes: ProbesOpt = CL.PROBES, quick: QuickOpt = False) -> None:
    """List every claim: status, estimate [95% CI], value vs null, p, n and its control's estimate and p."""
    if ctx.invoked_subcommand is not None:
        return
    rows = CL.claims_table(probes, runs, quick=quick)
    table = Table(title="claims" + (" (quick versions)" if quick else ""))
    for col in ("claim", "status", "estimate [95% CI]", "value vs null", "p", "n", "control (estimate, p)", "run time"):
        table.add_column(col)
    for r in rows:
        e, k = r.result, r.control
        table.add_row(r.claim.id, r.status,
                      "-" if e is None else f"{e.estimate:.3g} [{e.ci[0]:.3g}, {e.ci[1]:.3g}]",
                      "-" if e is None else f"{e.value:.3g} vs {e.null:.3g}",
                      "-" if e is None else f"{e.p_value:.2g}", "-" if e is None else str(e.n),
                      "-" if k is None else f"{k.estimate:.3g}, p={k.p_value:.2g}",
                      "-" if r.seconds is None else f"{r.seconds:.0f} s")
    out.print(table)
    for r in rows:
        if r.status in ("ERROR", "BROKEN"):
            out.print(f"{r.claim.id}: {r.status}: {r.why}")
    if all(r.status == "NOT RUN" for r in rows):
        out.print("no claim has been run yet: `ffnmem claims run" + (" --quick" if quick else "") + "`")


@claims_app.command("run")
def claims_run(
    only: Annotated[list[str] | None, typer.Option("--only", help="A claim id or claim file name (repeatable).")] = None,
    quick: QuickOpt = False,
    runs: RunsOpt = CL.RUNS,
    probes: ProbesOpt = CL.PROBES,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (tasks on a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray address (default: start or join a local instance).")] = None,
) -> None:
    """Run the claims' batches (resumable: finished units are kept), then list the claims.

    The full run of every claim takes under an hour on a 2-core CPU (time per claim in docs/CLAIMS.md).
    """
    failed = {p: e for p, e in CL.run_claims(probes, runs, only=only, quick=quick, executor=executor,
                                             address=address).items() if e}
    rows = [r for r in CL.claims_table(probes, runs, quick=quick) if not only or r.claim.id in only
            or r.claim.path.stem in only]
    for r in rows:
        e = r.result
        numbers = "" if e is None else f": estimate {e.estimate:.3g} [{e.ci[0]:.3g}, {e.ci[1]:.3g}], p = {e.p_value:.2g}, n = {e.n}"
        out.print(f"{r.claim.id}: {r.status}{numbers}")
    for path, err in failed.items():
        out.print(f"{path}: {err}")
    if failed:
        raise typer.Exit(1)


@claims_app.command("report")
def claims_report(
    out_path: Annotated[Path, typer.Option("--out", help="The Markdown file to write.")] = Path("docs/CLAIMS.md"),
    runs: RunsOpt = CL.RUNS,
    probes: ProbesOpt = CL.PROBES,
    quick: QuickOpt = False,
    machine: Annotated[str | None, typer.Option(help="The machine the runs used, in words (default: this one).")] = None,
    force: ForceOpt = False,
) -> None:
    """Write docs/CLAIMS.md: claim, paper, value [CI], null, p, n, control, status, time, rerun command."""
    if out_path.is_dir():
        raise BadInput(f"{out_path} is a folder; give a file name such as docs/CLAIMS.md")
    if out_path.exists() and not force and GENERATED not in read_utf8_lines(out_path)[:4]:
        raise BadInput(f"{out_path} exists and was not written by `ffnmem claims report`; choose another --out, "
                       "or pass --force to replace it")
    rows = CL.claims_table(probes, runs, quick=quick)
    atomic_write_text(out_path, render(rows, machine=machine))
    counts = ", ".join(f"{n} {s}" for s, n in summary_counts(rows).items())
    out.print(f"{out_path}: {len(rows)} claims ({counts})")
