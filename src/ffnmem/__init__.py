"""ffnmem: feed-forward layers of causal transformers read as key-value memories.

Start with :func:`load_model`; everything else reads the model through the returned
:class:`Workbench` and its FFN views (:class:`FFNView`).
"""

from ffnmem.core.errors import FfnmemError
from ffnmem.core.ffn import FFNView
from ffnmem.core.hooks import hook_name
from ffnmem.core.models import (
    DEFAULT_MODEL,
    PRESETS,
    list_models,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from ffnmem.core.workbench import Workbench
from ffnmem.store.results import Result

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL", "PRESETS", "FFNView", "FfnmemError", "Result", "Workbench", "hook_name",
    "list_models", "load_checkpoint", "load_model", "save_checkpoint",
]
