"""The ``ffnmem`` command line (Typer). ``main`` is the console-script entry point.

One module per part of the workbench registers its commands on the shared ``app``; the import
order below is the order of ``ffnmem --help``.
"""

from ffnmem.cli import (
    architectures,  # noqa: F401  (architectures and objectives)
    batch,  # noqa: F401  (batches and claims)
    browse,  # noqa: F401  (an offline site of a run's memories and facts)
    core,  # noqa: F401  (foundation: models, demo, capture)
    facts,  # noqa: F401  (where facts live)
    keys,  # noqa: F401  (key-value memories)
    locate,  # noqa: F401  (where a fact lives, validated: fact cards, method comparison, ablation)
    lossy,  # noqa: F401  (what a small model loses and what it answers instead)
    probes,  # noqa: F401  (probes and superposition)
    synthetic,  # noqa: F401  (frequency and recall)
)
from ffnmem.cli.app import app, console_main, main, parse_layers

__all__ = ["app", "console_main", "main", "parse_layers"]
