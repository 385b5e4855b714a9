"""Sparse dictionaries over FFN activations with EleutherAI's ``sparsify`` (``eai-sparsify``).

We do not write an SAE trainer: ``sparsify.Trainer`` trains a ``SparseCoder`` (TopK SAE, or a
transcoder with ``transcode=True``) by hooking a module of a Hugging Face model. To use it on any
ffnmem model (TransformerLens bridge, native tiny models) we first capture activation pairs with
:mod:`ffnmem.methods.capture` — ``(x, y)`` = (FFN input, FFN output) for a transcoder, ``(a, a)`` for an
SAE on coefficients ``post`` or on ``out`` — and hand the Trainer a *replay model* whose one
module returns ``y`` for input ``x``. Token positions are shuffled with a seeded generator and
grouped into pseudo-sequences of row indices; the Trainer sees them as ``input_ids``.

Evaluation (:func:`evaluate`): FVU = Σ‖y − ŷ‖² / Σ‖y − ȳ‖², L0 = mean number of non-zero
latents per token, dead latents = never non-zero on the evaluation set.
Monosemanticity proxy (:func:`token_entropy`): for each unit (neuron or latent), the entropy in
bits of the token distribution of its top-``k`` activating positions; lower = fewer distinct
token contexts drive it. The same :class:`ffnmem.methods.capture.TopK` reducer as trigger mining is used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from types import SimpleNamespace

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ffnmem.core.errors import BadInput, MissingPackage
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods import capture as cap

log = logging.getLogger(__name__)


class _Pair(nn.Module):
    """The module the Trainer hooks: its input is ``x`` and its output ``y``."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return y


class _ReplayModel(nn.Module):
    """Just enough of a ``PreTrainedModel`` for ``sparsify.Trainer``: replays cached pairs."""

    def __init__(self, x: Tensor, y: Tensor):
        super().__init__()
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.ffn = _Pair()
        self.config = SimpleNamespace(num_hidden_layers=1)

    @property
    def base_model(self):
        return self

    @property
    def device(self):
        return self.x.device

    @property
    def dummy_inputs(self):
        return {"input_ids": torch.zeros(1, 2, dtype=torch.long)}

    def forward(self, input_ids: Tensor, **_) -> SimpleNamespace:
        self.ffn(self.x[input_ids], self.y[input_ids])
        return SimpleNamespace(logits=None, loss=None)


def capture_pairs(wb: Workbench, tokens: Int[Tensor, "n pos"], layer: int, *, target: str = "transcoder",
                  batch_size: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """``(x [rows d_in], y [rows d_out], token ids [rows])`` at ``layer``, BOS positions left out.

    ``target``: ``"transcoder"`` (x = FFN input ``mlp_in``, y = FFN output ``out``), ``"post"``
    (SAE on coefficients) or ``"out"`` (SAE on the FFN output).
    """
    kinds = {"transcoder": ("mlp_in", "out"), "post": ("post", "post"), "out": ("out", "out")}
    if target not in kinds:
        raise BadInput(f"target must be one of {sorted(kinds)}, got {target!r}")
    names = [hook_name(k, wb.check_layer(layer)) for k in dict.fromkeys(kinds[target])]
    acts = cap.collect(wb, tokens, names, batch_size=batch_size, progress=False)
    x, y = (acts[hook_name(k, layer)][:, 1:].reshape(-1, acts[hook_name(k, layer)].shape[-1]).float()
            for k in kinds[target])
    return x, y, tokens[:, 1:].reshape(-1).cpu()


def train(x: Float[Tensor, "rows d_in"], y: Float[Tensor, "rows d_out"], *, transcode: bool, expansion: int = 8,
          k: int = 16, epochs: int = 4, batch_rows: int = 256, lr: float | None = None, seed: int = 0):
    """Train one ``sparsify.SparseCoder`` on the pairs with ``sparsify.Trainer`` (Adam, FVU loss).

    Returns the trained coder. Deterministic for a seed on CPU (the Trainer seeds torch itself).
    """
    try:
        from sparsify import SaeConfig, TrainConfig, Trainer
    except ImportError:
        raise MissingPackage("sparse dictionaries need eai-sparsify: pip install eai-sparsify") from None
    if len(x) != len(y) or len(x) < 2 * batch_rows:
        raise BadInput(f"need at least {2 * batch_rows} activation rows (x and y equal), got {len(x)} and {len(y)}")
    seq = 64
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(epochs)])
    order = order[: len(order) // seq * seq].reshape(-1, seq)
    data = [{"input_ids": row} for row in order]
    cfg = TrainConfig(SaeConfig(expansion_factor=expansion, k=k, transcode=transcode, normalize_decoder=not transcode),
                      batch_size=max(1, batch_rows // seq), loss_fn="fvu", optimizer="adam", lr=lr,
                      lr_warmup_steps=10, hookpoints=["ffn"], init_seeds=[seed], log_to_wandb=False,
                      save_every=10**9, dead_feature_threshold=10**9)
    model = _ReplayModel(x, y)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()) as out:
        cfg.save_dir = tmp
        trainer = Trainer(cfg, data, model)
        trainer.fit()
    log.debug(out.getvalue())
    coder = trainer.saes["ffn"]
    coder.requires_grad_(False)
    return coder


@torch.no_grad()
def encode(coder, x: Float[Tensor, "rows d_in"], chunk: int = 4096) -> Float[Tensor, "rows latents"]:
    """Dense latent activations (zeros except each row's top-k)."""
    outs = []
    for part in x.split(chunk):
        enc = coder.encode(part)
        dense = torch.zeros(len(part), coder.num_latents)
        outs.append(dense.scatter_(1, enc.top_indices.long(), enc.top_acts.float()))
    return torch.cat(outs)


@torch.no_grad()
def evaluate(coder, x: Float[Tensor, "rows d_in"], y: Float[Tensor, "rows d_out"]) -> dict:
    """FVU, L0, dead latents (count and share) on ``(x, y)``."""
    z = encode(coder, x)
    recon = torch.cat([coder(part).sae_out.float() for part in x.split(4096)])
    fvu = ((y - recon) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    alive = (z != 0).any(0)
    return {"fvu": float(fvu), "l0": float((z != 0).sum(1).float().mean()), "dead": int((~alive).sum()),
            "dead_frac": float((~alive).float().mean()), "n_latents": int(coder.num_latents), "rows": len(x)}


def top_examples(acts: Float[Tensor, "rows units"], k: int = 10) -> tuple[Tensor, Tensor]:
    """``(values [k units], rows [k units])`` of each unit's largest activations (capture.TopK)."""
    top = cap.TopK(k=k)
    top.update("u", acts[None], 0)
    res = top.result()["u"]
    return res["values"], res["index"]


def token_entropy(token_ids: Int[Tensor, "k units"], alive: Tensor | None = None) -> Float[Tensor, " units"]:
    """Entropy (bits) of the token distribution over each unit's top-k examples."""
    k, units = token_ids.shape
    ent = torch.empty(units)
    for u in range(units):
        _, counts = token_ids[:, u].unique(return_counts=True)
        p = counts.float() / k
        ent[u] = -(p * p.log2()).sum()
    if alive is not None:
        ent[~alive] = float("nan")
    return ent


def monosemanticity(neuron_acts: Tensor, latent_acts: Tensor, token_ids: Int[Tensor, " rows"], k: int = 10) -> dict:
    """Median top-k token entropy (bits) and distinct tokens for neurons vs alive latents."""
    out = {}
    for name, acts in (("neurons", neuron_acts), ("latents", latent_acts)):
        vals, rows = top_examples(acts, k)
        alive = (vals > 0).all(0)
        ids = token_ids[rows]
        ent = token_entropy(ids, alive)
        distinct = torch.tensor([len(ids[:, u].unique()) for u in range(ids.shape[1])], dtype=torch.float)
        out[name] = {"median_entropy_bits": float(ent.nanmedian()), "median_distinct_tokens":
                     float(distinct[alive].median()) if alive.any() else float("nan"), "units": int(alive.sum())}
    return out


def neuron_polysemanticity(tr, layer: int) -> dict[str, Tensor]:
    """Per neuron, from mined trigger examples (:func:`ffnmem.methods.triggers.mine`): the number of
    distinct trigger tokens and distinct next tokens among its top-k, and the trigger-token
    entropy (bits). A neuron whose top examples are one token in one kind of context scores low."""
    trig = tr.trigger_ids(layer)
    nxt = tr.next_ids(layer)
    distinct = torch.tensor([len(trig[:, u].unique()) for u in range(trig.shape[1])])
    distinct_next = torch.tensor([len(nxt[:, u].unique()) for u in range(nxt.shape[1])])
    return {"distinct_triggers": distinct, "distinct_next": distinct_next, "entropy_bits": token_entropy(trig)}
