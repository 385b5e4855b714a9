"""Shared by the make_*.py notebook generators: write cells to an .ipynb without outputs."""

from pathlib import Path

import nbformat as nbf


def write_notebook(cells: list[tuple[str, str]], path: Path) -> None:
    """``cells`` are ("md" | "code", source) pairs; the notebook runs on a plain python3 kernel."""
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)
