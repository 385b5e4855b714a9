"""The ``ffnmem`` command line (Typer). ``main`` is the console-script entry point.

One module per part of the workbench registers its commands on the shared ``app``; the import
order below is the order of ``ffnmem --help``.
"""

from ffnmem.cli import core  # noqa: F401  (foundation: models, demo, capture)
from ffnmem.cli import keys  # noqa: F401  (key-value memories)
from ffnmem.cli import facts  # noqa: F401  (where facts live)
from ffnmem.cli import synthetic  # noqa: F401  (frequency and recall)
from ffnmem.cli import probes  # noqa: F401  (probes and superposition)
from ffnmem.cli import architectures  # noqa: F401  (architectures and objectives)
from ffnmem.cli import batch  # noqa: F401  (batches and claims)
from ffnmem.cli.app import app, main, parse_layers

__all__ = ["app", "main", "parse_layers"]
