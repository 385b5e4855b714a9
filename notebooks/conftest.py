"""Notebook runs (nbmake).

The kernel starts in notebooks/, so a relative PYTHONPATH such as ``PYTHONPATH=src`` would point at
notebooks/src and the kernel would import another installed ffnmem: make the entries absolute
(relative to where pytest was started) before kernels start. Kernels inherit this environment, so
``FFNMEM_NOTEBOOK_QUICK=1`` makes each notebook pick its small parameters (the committed outputs come
from the full setting: ``scripts/run_notebooks.py``), and ``TQDM_DISABLE=1`` keeps progress bars out."""

import os

_entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
if _entries:
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(e) for e in _entries)
os.environ.setdefault("FFNMEM_NOTEBOOK_QUICK", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
