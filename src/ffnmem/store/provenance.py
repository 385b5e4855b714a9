"""Provenance of a result: which model and weights, which data (one content hash), seed, versions.

Every data hash has one form, ``sha256:<hex>`` of the data's content: :func:`facts_hash` for fact
sets, :func:`tokens_hash` for token tensors, :func:`texts_hash` for prompts or documents.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from ffnmem.core.workbench import package_versions


def content_hash(parts: Iterable[bytes]) -> str:
    """``sha256:<hex>`` over ``parts`` in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return "sha256:" + h.hexdigest()


def facts_hash(facts: Sequence) -> str:
    """Content hash of a fact set (subject, relation, prompt, target of each fact, in order)."""
    return content_hash(f"{f.subject}\t{f.relation}\t{f.prompt}\t{f.target}\n".encode() for f in facts)


def tokens_hash(tokens: Tensor) -> str:
    """Content hash of a token tensor (its shape and ids)."""
    t = tokens.detach().cpu().to(torch.int64).contiguous()
    return content_hash([str(tuple(t.shape)).encode(), t.numpy().tobytes()])


def texts_hash(texts: Sequence[str]) -> str:
    """Content hash of prompts or documents, in order."""
    return content_hash(["\x00".join(texts).encode()])


def make_provenance(wb=None, *, data_hash: str | None = None, seed: int | None = None, **extra) -> dict:
    """Provenance for a result: model id and weight hash, data hash, seed, versions, time."""
    prov = wb.provenance() if wb is not None else {"versions": package_versions()}
    prov.update(data_hash=data_hash, seed=seed, created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    prov.update(extra)
    return prov
