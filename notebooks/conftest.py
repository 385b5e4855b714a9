"""Notebook runs (nbmake): the kernel starts in notebooks/, so a relative PYTHONPATH such as
``PYTHONPATH=src`` would point at notebooks/src and the kernel would import another installed
ffnmem. Make the entries absolute (relative to where pytest was started) before kernels start."""

import os

_entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
if _entries:
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(e) for e in _entries)
