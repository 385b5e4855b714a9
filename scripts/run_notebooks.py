"""Re-execute the notebooks in place with the full setting and normalise them for readable diffs.

    python scripts/run_notebooks.py                 # every notebooks/*.ipynb, full setting, written back
    python scripts/run_notebooks.py 03 05           # only the notebooks whose names start with these
    python scripts/run_notebooks.py --quick         # the CI setting: time it, write nothing back
    python scripts/run_notebooks.py --normalise     # no execution: normalise after editing markdown

The .ipynb files with their outputs are the source. Normalising keeps outputs and figures and drops
what changes from run to run without the results changing: execution timings, widget state, the
kernel's version, transient display data, progress bars on stderr; it renumbers execution counts
1, 2, ... and merges consecutive stream outputs. ``tests/unit/test_notebooks.py`` checks that the committed notebooks
are normalised. Progress bars are disabled (``TQDM_DISABLE=1``) so outputs stay readable.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
QUICK_FLAG = "FFNMEM_NOTEBOOK_QUICK"
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
CELL_METADATA_KEPT = ("tags",)


def normalise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with volatile metadata stripped and execution counts renumbered (in place)."""
    nb.metadata = nbformat.from_dict({"kernelspec": KERNEL, "language_info": {"name": "python"}})
    count = 0
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in CELL_METADATA_KEPT})
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            continue
        if cell.execution_count is None:  # never executed: stays so, and the test says so
            continue
        count += 1
        cell.execution_count = count
        cell.outputs = _outputs(cell.outputs, count)
    return nb


def _outputs(outputs: list, count: int) -> list:
    out: list = []
    for o in outputs:
        o.pop("transient", None)
        if o.output_type == "execute_result":
            o.execution_count = count
        if o.output_type == "stream" and out and out[-1].output_type == "stream" and out[-1].name == o.name:
            out[-1].text += o.text  # the kernel splits a stream wherever it flushed
            continue
        out.append(o)
    for o in out:
        if o.output_type == "stream" and o.name == "stderr":
            o.text = strip_progress(o.text)
    return [o for o in out if not (o.output_type == "stream" and not o.text)]


# a tqdm bar's tail: "[00:12<00:03, 1.52s/it]" or "[01:12, 12.3it/s]"
_BAR = re.compile(r"\[\d+:\d+(?:<[\d:?]+)?, +[\d.?]+ ?(?:s/it|it/s)\]")


def strip_progress(text: str) -> str:
    """stderr without progress bars (libraries that ignore TQDM_DISABLE draw them anyway): each line as
    a terminal shows it (after its last carriage return), bar lines dropped; their timings change
    from run to run."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join(line for line in lines if not _BAR.search(line))


def execute(path: Path, *, quick: bool, timeout: int) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ[QUICK_FLAG] = "1" if quick else "0"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"  # tqdm.auto's note that ipywidgets is absent
    src = str(ROOT / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                         if p and os.path.abspath(p) != src]])
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="name prefixes (e.g. 03); default: every notebook")
    ap.add_argument("--quick", action="store_true", help="the CI setting; times the run, writes nothing back")
    ap.add_argument("--normalise", action="store_true", help="normalise in place without executing")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if not args.only or p.name.startswith(tuple(args.only))]
    if not paths:
        print("no notebook matches", args.only, file=sys.stderr)
        return 2
    total, failed = 0.0, []
    for path in paths:
        t0 = time.perf_counter()
        try:
            nb = nbformat.read(path, as_version=4) if args.normalise else execute(path, quick=args.quick,
                                                                                timeout=args.timeout)
        except Exception as exc:  # a failing cell: report it, leave the file as it was, go on
            print(f"{path.name}: FAILED\n{exc}", file=sys.stderr, flush=True)
            failed.append(path.name)
            continue
        seconds = time.perf_counter() - t0
        total += seconds
        if not args.quick:
            nbformat.write(normalise(nb), path)
        size = path.stat().st_size / 1e6
        print(f"{path.name:<36} {seconds:7.1f} s  {size:5.2f} MB", flush=True)
    print(f"{'total':<36} {total:7.1f} s  {sum(p.stat().st_size for p in paths) / 1e6:5.2f} MB")
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
