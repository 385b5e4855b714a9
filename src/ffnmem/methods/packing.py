"""Training rows from a document corpus: packed causal-LM rows, or one padded document per row.

Both orders are pure functions of ``(seed, step)``: an epoch is one pass over the documents in a
permutation drawn from a generator seeded with ``seed`` and the epoch number, and a step takes the
next rows of that stream. The permutation is computed once per epoch and cached, so a step costs a
slice, not a ``randperm`` of the whole corpus.

* :class:`PackedRows` (causal LM): every document becomes ``BOS doc EOS``; an epoch concatenates
  them in its permuted order and the stream of epochs is cut into rows of ``n_ctx`` tokens, as
  GPT-2 and Allen-Zhu & Li ("Physics of Language Models", part 3.x) pack their training data. No
  token is padding, and within an epoch every token is trained on exactly once (the tail of epoch
  e shares a row with the head of epoch e+1); a document cut by a row boundary continues at the
  start of the next row without its earlier context. Two ways to read a row:
  ``packing="stream"`` attends across documents with positions running over the row (GPT-2,
  Allen-Zhu & Li); ``packing="documents"`` blocks attention between documents and restarts the
  positions at each BOS (:func:`document_layout`), so each document is seen as if alone in its row,
  as with one padded document per row, and queries read at position 0 are in distribution.
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


def document_layout(rows: torch.Tensor, bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-document attention and positions inside packed rows.

    Returns ``(blocked, position_ids)``: ``blocked[b, 0, q, k]`` is True where key k lies in another
    document than query q (ORed with the causal mask by the model) and positions restart at 0 at
    every BOS (and at the row start, for a document continued from the previous row). A packed row
    then trains each document as if it were alone in its row, without the padding.
    """
    is_bos = rows == bos_id
    segment = torch.cumsum(is_bos, dim=1)
    ar = torch.arange(rows.shape[1], device=rows.device).expand_as(rows)
    start = torch.cummax(torch.where(is_bos, ar, torch.zeros_like(ar)), dim=1).values
    blocked = (segment[:, :, None] != segment[:, None, :])[:, None]
    return blocked, ar - start


def make_batches(tokenizer, documents: list[str], batch_size: int, n_ctx: int, seed: int, packing: str):
    """``step -> (rows, model kwargs, real tokens, loss-bearing tokens)`` and the steps in one epoch.

    ``packing`` is ``documents`` / ``stream`` (packed rows, see the module doc) or ``none`` (one
    padded document per row; its loss-bearing count is every real token but the row's BOS).
    """
    docs = tokenize_documents(tokenizer, documents)
    b, bos = batch_size, tokenizer.bos_token_id
    if packing == "none":
        data = pad_rows(docs, n_ctx, tokenizer.pad_token_id)
        lengths, order = torch.tensor([len(d) for d in docs]), _EpochCache(len(docs), seed)

        def get(step: int):
            idx = batch_indices(step, len(docs), b, seed, order)
            n = int(lengths[idx].sum())
            return data[idx], {}, n, n - b
        return get, len(docs) / b
    longest = max(len(d) for d in docs)
    if longest > n_ctx:  # a fact's document must fit one window to be learnable in context
        raise BadInput(f"a document has {longest} tokens but the model reads {n_ctx}; raise n_ctx or use fewer attributes")
    rows = PackedRows(docs, n_ctx, seed)

    def get_packed(step: int):
        batch = rows.batch(step, b)
        if packing == "stream":
            return batch, {}, batch.numel(), b * (n_ctx - 1)
        blocked, positions = document_layout(batch, bos)
        # BOS targets are dropped: under per-document attention nothing can predict them
        return batch, {"attention_mask": blocked, "position_ids": positions}, batch.numel(), int((batch[:, 1:] != bos).sum())
    return get_packed, rows.steps_per_epoch(b)


def steps_per_epoch(tokenizer, documents: list[str], batch_size: int, n_ctx: int, packed: bool = True) -> float:
    """Optimizer steps in one pass over ``documents``: packed tokens / (B·n_ctx), else documents / B."""
    if not packed:
        return len(documents) / batch_size
    return sum(len(d) for d in tokenize_documents(tokenizer, documents)) / (batch_size * n_ctx)


def epochs_to_steps(per_epoch: float, epochs: float | int) -> int:
    if not (epochs > 0 and math.isfinite(epochs)):
        raise BadInput(f"number of passes over the corpus must be > 0, got {epochs}")
    return max(1, math.ceil(epochs * per_epoch - 1e-9))
