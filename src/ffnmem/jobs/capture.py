"""Streaming capture of FFN activations over a corpus: the job behind ``ffnmem capture``.

:func:`compute` folds every requested hook into per-unit statistics and each unit's top-``k``
examples (:func:`ffnmem.methods.capture.stats_and_top`, bounded memory whatever the corpus size)
and returns a ``capture`` Result whose tensors are ``HOOK/STAT`` and ``HOOK/topk_values|index``,
plus the streamed ``tokens``.
"""

from __future__ import annotations

from pathlib import Path

from jaxtyping import Int
from torch import Tensor

from ffnmem.core.workbench import Workbench
from ffnmem.methods.capture import stats_and_top
from ffnmem.store.provenance import make_provenance, tokens_hash
from ffnmem.store.results import Result


def compute(wb: Workbench, tokens: Int[Tensor, "n pos"], names: list[str], k: int = 20, *, batch_size: int = 8,
            corpus: str | list[str] = "stdlib-docstrings", progress: bool = True) -> Result:
    """Statistics and top-``k`` examples of every hook in ``names`` over ``tokens``."""
    stats, top = stats_and_top(wb, tokens, names, k, batch_size=batch_size, progress=progress)
    tensors = {"tokens": tokens}
    for name, d in stats.result().items():
        tensors.update({f"{name}/{key}": v for key, v in d.items()})
    for name, d in top.result().items():
        tensors.update({f"{name}/topk_{key}": v for key, v in d.items()})
    return Result(kind="capture", tensors=tensors,
                  meta={"hooks": list(names), "window": tokens.shape[1], "k": k, "n_tokens": tokens.numel()},
                  provenance=make_provenance(wb, data_hash=tokens_hash(tokens), corpus=corpus))


def write(result: Result, out_dir: str | Path) -> Path:
    """The Result itself is the output folder."""
    return result.save(out_dir)
