"""``ffnmem browse``: a static, offline site of a run's memories and facts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ffnmem.batch.claims import PROBES, claims_table
from ffnmem.batch.claims_report import table_rows
from ffnmem.cli.app import ForceOpt, app, out
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.jobs import browse as job


@app.command()
def browse(
    run_dir: Annotated[Path, typer.Argument(help="A folder ffnmem wrote: demo, keys, locate, localize, a batch run, "
                                            "or ffnmem-out/ holding several.")],
    site_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Site folder (default RUN_DIR/site).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The model whose results to show, where the "
                                              "folder holds several (its model id).")] = None,
    examples: Annotated[int, typer.Option(min=1, help="Trigger examples kept per memory.")] = 10,
    claims: Annotated[Path | None, typer.Option(help="Claims runs (e.g. runs/claims): add the claims table.")] = None,
    probes: Annotated[Path, typer.Option(help="Claim files read with --claims.")] = PROBES,
    force: ForceOpt = False,
) -> None:
    """A static HTML site, offline (open index.html, or `python -m http.server` in it): memories
    searchable by token, a page per memory (trigger examples, promoted tokens, activation histogram,
    facts it carries), a page per fact (fact cards) and the claims table."""
    site_dir = site_dir or run_dir / "site"
    if not run_dir.is_dir():
        raise BadInput(f"{run_dir} is not a folder; give a folder written by ffnmem (demo, keys, locate, localize, run)")
    job.find_results(run_dir, model)  # refuse a folder with no results before claiming the site folder
    claim(site_dir, force=force)
    rows = table_rows(claims_table(probes, claims)) if claims is not None else None
    site = job.build(run_dir, site_dir, model=model, examples=examples, claims=rows)
    out.print(f"{site.model}: {site.n_memories:,} memories in {site.n_layers} layers, {site.n_facts} facts; "
              f"{site.n_bytes / 1e6:.1f} MB in {site.seconds:.1f} s")
    out.print(f"site written to {site.path}/index.html")
