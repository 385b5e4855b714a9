"""Training rows from a document corpus: packed causal-LM rows, or one padded document per row.

Both orders are pure functions of ``(seed, step)``: an epoch is one pass over the documents in a
permutation drawn from a generator seeded with ``seed`` and the epoch number, and a step takes the
next rows of that stream. The permutation is computed once per epoch and cached, so a step costs a
slice, not a ``randperm`` of the whole corpus.

* :class:`PackedRows` (causal LM, the default): every document becomes ``BOS doc EOS``; an epoch
  concatenates them in its permuted order and the stream of epochs is cut into rows of ``n_ctx``
  tokens, as GPT-2 and Allen-Zhu & Li ("Physics of Language Models", part 3.x) pack their training
  data. Attention crosses document boundaries inside a row (the model learns to reset at BOS) and a
  document cut by a row boundary loses its earlier context in the second row. No token is padding,
  and within an epoch every token is trained on exactly once (the tail of epoch e shares a row with
  the head of epoch e+1).
* :func:`batch_indices` over :func:`encode_documents` (objectives path: prefix / masked LM need
  per-document masks): one ``BOS doc EOS`` per row, right-padded to the corpus' longest document.
"""

from __future__ import annotations

import math

import torch

from ffnmem.core.errors import BadInput


def tokenize_documents(tokenizer, documents: list[str]) -> list[list[int]]:
    """``BOS doc EOS`` ids per document (one batched tokenizer call)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return [[bos, *ids, eos] for ids in tokenizer(list(documents), add_special_tokens=False)["input_ids"]]


def encode_documents(tokenizer, documents: list[str], n_ctx: int) -> torch.Tensor:
    """``[n_docs, length]`` ids: BOS doc EOS, right-padded with the pad id."""
    return pad_rows(tokenize_documents(tokenizer, documents), n_ctx, tokenizer.pad_token_id)


def pad_rows(rows: list[list[int]], n_ctx: int, pad_id: int) -> torch.Tensor:
    """``[n, longest]`` right-padded rows; refuses a row longer than ``n_ctx``."""
    longest = max(len(r) for r in rows)
    if longest > n_ctx:
        raise BadInput(f"a document has {longest} tokens but the model reads {n_ctx}; raise n_ctx or use fewer attributes")
    out = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class _EpochCache:
    """The last two epochs' permutations (a batch spans at most the current and the next)."""

    def __init__(self, n: int, seed: int, build=None):
        self.n, self.seed, self.build, self._cache = n, seed, build, {}

    def __call__(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            perm = epoch_permutation(self.n, self.seed, epoch)
            self._cache[epoch] = self.build(perm) if self.build is not None else perm
        return self._cache[epoch]


def batch_indices(step: int, n_docs: int, batch_size: int, seed: int, cache: _EpochCache | None = None) -> torch.Tensor:
    """Documents of the batch for ``step`` (one per row): a stream of per-epoch permutations."""
    cache = cache if cache is not None else _EpochCache(n_docs, seed)
    start, parts, need = step * batch_size, [], batch_size
    while need:
        epoch, offset = divmod(start + batch_size - need, n_docs)
        part = cache(epoch)[offset: offset + need]
        parts.append(part)
        need -= len(part)
    return torch.cat(parts)


class PackedRows:
    """Causal-LM training rows of ``n_ctx`` tokens packed from whole-corpus epochs (see module doc)."""

    def __init__(self, docs: list[list[int]], n_ctx: int, seed: int):
        if not docs:
            raise BadInput("the corpus holds no documents to train on")
        self.n_ctx = n_ctx
        self.lengths = torch.tensor([len(d) for d in docs])
        self.flat = torch.tensor([t for d in docs for t in d], dtype=torch.long)
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths
        self.tokens_per_epoch = int(self.lengths.sum())
        self._epochs = _EpochCache(len(docs), seed, build=self._stream)

    def _stream(self, perm: torch.Tensor) -> torch.Tensor:
        """The epoch's token stream: documents concatenated in ``perm`` order."""
        lens = self.lengths[perm]
        shift = torch.repeat_interleave(self.starts[perm] - (torch.cumsum(lens, 0) - lens), lens)
        return self.flat[torch.arange(self.tokens_per_epoch) + shift]

    def steps_per_epoch(self, batch_size: int) -> float:
        return self.tokens_per_epoch / (batch_size * self.n_ctx)

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        """``[batch_size, n_ctx]`` rows of ``step``: tokens ``[step·B·n_ctx, (step+1)·B·n_ctx)`` of the stream."""
        size = batch_size * self.n_ctx
        start, parts, need = step * size, [], size
        while need:
            epoch, offset = divmod(start + size - need, self.tokens_per_epoch)
            part = self._epochs(epoch)[offset: offset + need]
            parts.append(part)
            need -= len(part)
        return torch.cat(parts).view(batch_size, self.n_ctx)


def steps_per_epoch(tokenizer, documents: list[str], batch_size: int, n_ctx: int, packed: bool = True) -> float:
    """Optimizer steps in one pass over ``documents``: packed tokens / (B·n_ctx), else documents / B."""
    if not packed:
        return len(documents) / batch_size
    return sum(len(d) for d in tokenize_documents(tokenizer, documents)) / (batch_size * n_ctx)


def epochs_to_steps(per_epoch: float, epochs: float) -> int:
    if not (epochs > 0 and math.isfinite(epochs)):
        raise BadInput(f"number of passes over the corpus must be > 0, got {epochs}")
    return max(1, math.ceil(epochs * per_epoch - 1e-9))
