"""Training objectives that differ in attention mask and loss: causal, prefix, masked LM, encoder-decoder.

Every variant is the same TL-native model (same shapes, same word-level vocabulary with a
``<mask>`` token), so parameter counts match; only the mask and the loss change:

* ``causal``: causal attention, next-token loss at every position;
* ``prefix``: attention bidirectional over a prefix of P tokens and causal after it (UniLM /
  T5 prefix LM); loss only on the continuation (targets at positions ≥ P). P is drawn per row
  uniformly in ``[1, len − 1]`` (or fixed with ``prefix_len``); a query prompt is its own prefix;
* ``mlm``: bidirectional attention; a share ``mask_rate`` of the real tokens is replaced by
  ``<mask>`` and the loss is on those positions only (BERT-style, always-replace).

The model is booted with ``attention_dir="bidirectional"`` for prefix/mlm and the structure is
given as a 4-D boolean mask ``[batch, 1, q, k]`` (True = blocked), which TL-native ORs with its
own mask. ``positions="none"`` zeroes the learned positional table and freezes it.

* ``encdec``: not a mask on the same model but :class:`ffnmem.core.encdec.EncDecTransformer`
  (half the layers as a bidirectional encoder, half as a causal decoder with cross-attention, FFN
  width matched so the parameter count is the decoder-only one). Trained on (prompt, answer) pairs
  cut from the documents sentence by sentence (:func:`ffnmem.methods.packing.sentence_pairs`): the
  encoder reads ``BOS prompt``, the decoder writes ``value . EOS`` after its BOS, and only those
  three targets carry loss. Pairs, not T5 span corruption, because the test-time query is exactly
  ``prompt -> value``: a pair is that query with its answer, while span corruption would train the
  decoder to emit sentinel-delimited spans and need a sentinel in the query. The cost: the encoder
  never sees the biography's other sentences (the decoder-only model does, as context).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from ffnmem.core.encdec import ARCHITECTURE as ENCDEC
from ffnmem.core.encdec import position_tables
from ffnmem.core.errors import BadInput

MASK_TOKEN = "<mask>"
OBJECTIVES = ("causal", "prefix", "mlm", "encdec")
POSITION_ENCODINGS = ("learned", "rotary", "none")


@dataclass(frozen=True, kw_only=True)
class Objective:
    """A mask/objective variant. ``name`` reads e.g. ``mlm`` or ``prefix-nopos``."""

    kind: str = "causal"
    positions: str = "learned"
    mask_rate: float = 0.15
    prefix_len: int | None = None  # None: random per row
    mask_suffix: str = ""  # masked-LM queries: text after <mask> (e.g. "." closes the sentence)

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise BadInput(f"unknown objective {self.kind!r}; choose from {', '.join(OBJECTIVES)}")
        if self.positions not in POSITION_ENCODINGS:
            raise BadInput(f"unknown positions {self.positions!r}; choose from {', '.join(POSITION_ENCODINGS)}")
        if not 0 < self.mask_rate < 1:
            raise BadInput(f"masking rate {self.mask_rate} is outside (0, 1); use e.g. 0.15")
        if self.kind == "encdec" and self.positions == "rotary":
            raise BadInput("the encoder-decoder has learned or no positions (encdec, encdec-nopos), not rotary")
        if self.prefix_len is not None and self.prefix_len < 1:
            raise BadInput(f"prefix length {self.prefix_len} must be at least 1 token")

    @property
    def name(self) -> str:
        return self.kind + {"learned": "", "rotary": "-rope", "none": "-nopos"}[self.positions]

    @property
    def attention_dir(self) -> str:
        return "causal" if self.kind in ("causal", "encdec") else "bidirectional"

    def tl_overrides(self) -> dict:
        if self.kind == "encdec":  # the decoder-only shape, split and width-matched by ffnmem.core.encdec
            return {"architecture": ENCDEC, "positional_embedding_type": "standard"}
        return {"attention_dir": self.attention_dir,
                "positional_embedding_type": "rotary" if self.positions == "rotary" else "standard"}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse(name: str, **kw) -> Objective:
    """``causal``, ``prefix-nopos``, ``mlm-rope`` ... -> :class:`Objective`."""
    kind, _, pos = name.partition("-")
    pos = {"": "learned", "nopos": "none", "rope": "rotary", "learned": "learned"}.get(pos)
    if pos is None:
        raise BadInput(f"unknown variant {name!r}; use KIND[-nopos|-rope] with KIND in {', '.join(OBJECTIVES)}")
    return Objective(kind=kind, positions=pos, **kw)


def prepare(model: torch.nn.Module, obj: Objective) -> None:
    """Zero and freeze the positional table(s) when ``positions == 'none'`` (idempotent)."""
    if obj.positions == "none":
        for pos in position_tables(model):
            with torch.no_grad():
                pos.weight.zero_()
            pos.weight.requires_grad_(False)


def core_params(model: torch.nn.Module) -> int:
    """Parameter count without the positional table(s) (what matching compares)."""
    return sum(p.numel() for p in model.parameters()) - sum(t.weight.numel() for t in position_tables(model))


def trainable_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def padding_mask(tokens: Int[Tensor, "batch pos"], pad_id: int) -> Bool[Tensor, "batch 1 pos pos"]:
    """Block attention to padding keys (True = blocked)."""
    seq = tokens.shape[1]
    return (tokens == pad_id)[:, None, None, :].expand(-1, 1, seq, -1)


def prefix_mask(lengths: Int[Tensor, " batch"], prefix: Int[Tensor, " batch"], seq: int) -> Bool[Tensor, "batch 1 pos pos"]:
    """Prefix-LM mask: query q sees key k iff k < len and (k ≤ q or k < prefix)."""
    if bool((prefix > lengths).any()) or bool((prefix < 1).any()):
        bad = int(prefix[(prefix > lengths) | (prefix < 1)][0])
        raise BadInput(f"prefix of {bad} tokens does not fit a sequence of {int(lengths.max())}; use 1..sequence length")
    ar = torch.arange(seq, device=lengths.device)
    q, k = ar[:, None], ar[None, :]
    allowed = (k <= q)[None] | (k[None] < prefix[:, None, None])
    allowed &= k[None] < lengths[:, None, None]
    return ~allowed[:, None]


def attention_mask(obj: Objective, tokens: Tensor, pad_id: int, prefix: Tensor | None = None) -> Tensor | None:
    """The 4-D mask for a forward pass of ``obj`` (None for causal: TL's own mask suffices)."""
    if obj.kind == "causal":
        return None
    if obj.kind == "mlm":
        return padding_mask(tokens, pad_id)
    lengths = (tokens != pad_id).sum(1)
    return prefix_mask(lengths, lengths if prefix is None else prefix, tokens.shape[1])


def draw_prefix(lengths: Tensor, obj: Objective, gen: torch.Generator) -> Tensor:
    """Per-row prefix length: fixed ``prefix_len`` or uniform in [1, len − 1]."""
    if obj.prefix_len is not None:
        return torch.full_like(lengths, obj.prefix_len)
    u = torch.rand(lengths.shape, generator=gen)
    return 1 + (u * (lengths - 1).clamp(min=1).float().cpu()).long().to(lengths.device)


def objective_loss(model, obj: Objective, batch: Tensor, pad_id: int, mask_id: int | None,
                   gen: torch.Generator, decoder_tokens: Tensor | None = None) -> tuple[Tensor, int]:
    """Loss (nats, mean over signal positions) and the number of positions giving a signal.

    ``encdec``: ``batch`` holds the encoder rows and ``decoder_tokens`` the decoder rows
    ``BOS value . EOS`` (targets: the last three, padding ignored).
    """
    real = batch != pad_id
    if obj.kind == "encdec":
        if decoder_tokens is None:
            raise BadInput("the encoder-decoder objective needs decoder rows (prompt, answer pairs)")
        logits = model(batch, decoder_tokens[:, :-1])
        tgt = decoder_tokens[:, 1:].masked_fill(decoder_tokens[:, 1:] == pad_id, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        return loss, int((tgt != -100).sum())
    if obj.kind == "causal":
        logits = model(batch)
        tgt = batch[:, 1:].masked_fill(~real[:, 1:], -100)
    elif obj.kind == "prefix":
        lengths = real.sum(1)
        prefix = draw_prefix(lengths, obj, gen)
        logits = model(batch, attention_mask=attention_mask(obj, batch, pad_id, prefix))
        pos = torch.arange(batch.shape[1], device=batch.device)[None, 1:]
        tgt = batch[:, 1:].masked_fill(~real[:, 1:] | (pos < prefix[:, None]), -100)
    else:
        if mask_id is None:
            raise BadInput(f"the masked-LM objective needs a {MASK_TOKEN} token in the vocabulary")
        chosen = (torch.rand(batch.shape, generator=gen) < obj.mask_rate).to(batch.device) & real
        chosen[:, 0] = False  # never the BOS
        inp = batch.masked_fill(chosen, mask_id)
        logits = model(inp, attention_mask=attention_mask(obj, batch, pad_id))
        tgt = batch.masked_fill(~chosen, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        return loss, int(chosen.sum())
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
    return loss, int((tgt != -100).sum())


def query_batch(obj: Objective | None, rows: list[list[int]], pad_id: int, mask_id: int | None,
                suffix: list[int] = ()):
    """Right-padded query tokens, the read-out index per row and the attention mask.

    For ``mlm`` a ``<mask>`` is appended and read; otherwise the last prompt token predicts the
    next. A prefix-LM query is its own prefix (fully bidirectional over the prompt). ``suffix``
    ids follow the ``<mask>`` (masked LM only). ``encdec``: the rows are the encoder's input, the
    read-out is decoder position 0 and there is no mask (:func:`query_logits` runs either).
    """
    if obj is not None and obj.kind == "mlm":
        if mask_id is None:
            raise BadInput(f"the masked-LM objective needs a {MASK_TOKEN} token in the vocabulary")
        last = torch.tensor([len(r) for r in rows])
        rows = [r + [mask_id, *suffix] for r in rows]
    else:
        last = torch.tensor([len(r) - 1 for r in rows])
    width = max(len(r) for r in rows)
    toks = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        toks[i, : len(r)] = torch.tensor(r)
    if obj is not None and obj.kind == "encdec":  # the encoder reads the prompt, decoder position 0 answers
        return toks, torch.zeros(len(rows), dtype=torch.long), None
    mask = None if obj is None else attention_mask(obj, toks, pad_id)
    return toks, last, mask


def query_logits(model, obj: Objective | None, toks: Tensor, mask: Tensor | None, bos_id: int) -> Tensor:
    """All-position logits of a :func:`query_batch` (encoder-decoder: the decoder fed only its BOS)."""
    if obj is not None and obj.kind == "encdec":
        return model(toks, torch.full((toks.shape[0], 1), bos_id, dtype=torch.long, device=toks.device))
    return model(toks) if mask is None else model(toks, attention_mask=mask)
