"""A small hooked encoder-decoder (T5 layout) built from the same pieces as the TL-native decoder.

TransformerLens 4 has no encoder-decoder bridge for a native model, and its bridge components
need an original module to wrap, so this is one :class:`transformer_lens.HookedRootModule` whose
sub-modules mirror TL-native's NativeModel (pre-LN, LayerNorm, GELU MLP with biases, split QKV with
biases, learned absolute positions, GPT-2 init) with TL-named :class:`HookPoint` s:

* ``encoder``: a shared token embedding + its own positional table, ``n_enc`` bidirectional blocks
  (padding keys blocked), ``encoder.ln_final``. Its output is the memory the decoder reads.
* ``decoder``: the shared token embedding + its own positional table, ``n_dec`` blocks of causal
  self-attention -> cross-attention (queries from the decoder, keys/values from the encoder output,
  padding keys blocked) -> MLP, ``decoder.ln_final`` and an untied unembedding ``W_U`` (no bias),
  as the decoder-only variant.

Hook names are TransformerLens' with the stack as prefix: ``encoder.blocks.{l}.mlp.hook_post``
(FFN coefficients), ``decoder.blocks.{l}.hook_attn_out`` / ``hook_cross_attn_out`` /
``hook_mlp_out`` / ``hook_resid_pre|mid|post``, ``decoder.blocks.{l}.cross_attn.hook_pattern`` /
``hook_z``, ``{stack}.ln_final.hook_scale``, ``{stack}.hook_embed`` / ``hook_pos_embed``.
``hook_resid_mid`` is the MLP's input residual (after the cross-attention). Each stack's blocks
expose ``mlp.W_in`` (d_model × d_mlp), ``W_out``, ``b_in``, ``b_out`` in TL orientation and the stack a
``cfg.act_fn``, so :meth:`ffnmem.core.ffn.FFNView.from_bridge` reads either stack (:func:`ffn_views`).

Parameter matching (:func:`matched_d_mlp`): a decoder-only model of ``L`` blocks becomes ``L // 2``
encoder and ``L − L // 2`` decoder blocks; the cross-attention (4·(d² + d) + 2d per decoder block)
and the encoder's final LayerNorm (2d) are paid for by a narrower FFN (``2d + 1`` parameters per
neuron) in every block, so the non-embedding parameters match to within one neuron per block. The
token embedding is shared by both stacks (as in T5) and the unembedding is untied, as in the
decoder-only model, so the embedding parameters are equal too, bar the second positional table.
Not supported: rotary positions, gated MLPs, RMSNorm, KV caches, TransformerBridge features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from ffnmem.core.errors import BadInput
from ffnmem.core.ffn import _ACTIVATIONS, FFNView

ARCHITECTURE = "ffnmem-encdec"
STACKS = ("encoder", "decoder")


@dataclass(frozen=True, kw_only=True)
class EncDecConfig:
    n_enc: int
    n_dec: int
    d_model: int
    n_heads: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    act_fn: str = "gelu"
    seed: int = 0
    bos_id: int = 2  # the decoder's start token (the tokenizer's BOS)
    matched_from: int = 0  # the decoder-only d_mlp the width was matched to (0: not matched)

    def __post_init__(self) -> None:
        if self.act_fn not in _ACTIVATIONS:
            raise BadInput(f"unknown activation {self.act_fn!r}; choose from {', '.join(sorted(_ACTIVATIONS))}")
        if min(self.n_enc, self.n_dec) < 1 or self.d_model % self.n_heads or self.d_mlp < 1:
            raise BadInput(f"invalid encoder-decoder shape: {self.n_enc}+{self.n_dec} layers, d_model {self.d_model}, "
                           f"{self.n_heads} heads, d_mlp {self.d_mlp}; need ≥ 1 layer each and d_model % n_heads == 0")

    @property
    def n_layers(self) -> int:
        return self.n_enc + self.n_dec

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **{f.name: getattr(self, f.name) for f in fields(self)}}


def block_params(d_model: int, d_mlp: int, cross: bool = False) -> int:
    """Parameters of one pre-LN block: attention 4(d² + d), 2 LayerNorms, MLP 2·d·d_mlp + d_mlp + d."""
    attn = 4 * (d_model * d_model + d_model)
    return attn + 4 * d_model + 2 * d_model * d_mlp + d_mlp + d_model + (attn + 2 * d_model if cross else 0)


def matched_d_mlp(n_layers: int, d_model: int, d_mlp: int) -> int:
    """FFN width that gives ``n_layers // 2`` encoder + the rest decoder blocks (and the encoder's
    final LayerNorm) the non-embedding parameters of ``n_layers`` decoder-only blocks."""
    if n_layers < 2:
        raise BadInput(f"an encoder-decoder splits the decoder-only model's layers: need n_layers ≥ 2, got {n_layers}")
    n_dec = n_layers - n_layers // 2
    target = n_layers * block_params(d_model, d_mlp)
    fixed = n_layers * block_params(d_model, 0) + n_dec * (block_params(d_model, 0, True) - block_params(d_model, 0))
    width = round((target - fixed - 2 * d_model) / (n_layers * (2 * d_model + 1)))
    if width < 1:
        raise BadInput(f"d_mlp {d_mlp} is too narrow to pay for the cross-attention; use a wider FFN")
    return width


def config_from(tl: dict) -> EncDecConfig:
    """The encoder-decoder config for a decoder-only TL config dict (``architecture`` = ffnmem-encdec)."""
    if "n_enc" in tl:  # already resolved (a saved checkpoint)
        return EncDecConfig(**{k: v for k, v in tl.items() if k != "architecture"})
    if tl.get("gated_mlp") or str(tl.get("normalization_type", "LN")).upper() != "LN":
        raise BadInput("the encoder-decoder supports LayerNorm and plain MLPs only (no gated MLP, no RMSNorm)")
    if str(tl.get("positional_embedding_type", "standard")) != "standard":
        raise BadInput("the encoder-decoder has learned or no positions (encdec, encdec-nopos), not rotary")
    n = int(tl["n_layers"])
    return EncDecConfig(n_enc=n // 2, n_dec=n - n // 2, d_model=tl["d_model"], n_heads=tl["n_heads"],
                        d_mlp=matched_d_mlp(n, tl["d_model"], tl["d_mlp"]), d_vocab=tl["d_vocab"], n_ctx=tl["n_ctx"],
                        act_fn=tl.get("act_fn", "gelu"), seed=tl.get("seed", 0), bos_id=tl.get("bos_id", 2),
                        matched_from=tl["d_mlp"])


class LayerNorm(nn.Module):
    """LayerNorm with TL's ``hook_scale`` / ``hook_normalized`` (needed to freeze scales in DLA)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.w, self.b, self.eps = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d)), eps
        self.hook_scale, self.hook_normalized = HookPoint(), HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale) * self.w + self.b


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``kv`` is None, cross-attention otherwise."""

    def __init__(self, cfg: EncDecConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.d_model, cfg.d_model) for _ in range(4))
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
            setattr(self, name, HookPoint())

    @property
    def W_O(self) -> Float[Tensor, "n_heads d_head d_model"]:
        return self.o.weight.T.reshape(self.n_heads, self.d_head, -1)

    @property
    def b_O(self) -> Float[Tensor, " d_model"]:
        return self.o.bias

    def forward(self, x: Float[Tensor, "batch q d_model"], blocked: Bool[Tensor, "#batch 1 #q k"],
                kv: Float[Tensor, "batch k d_model"] | None = None) -> Float[Tensor, "batch q d_model"]:
        src = x if kv is None else kv
        split = lambda t: t.view(t.shape[0], t.shape[1], self.n_heads, self.d_head).transpose(1, 2)
        q, k, v = self.hook_q(split(self.q(x))), self.hook_k(split(self.k(src))), self.hook_v(split(self.v(src)))
        scores = self.hook_attn_scores((q @ k.transpose(-1, -2) / math.sqrt(self.d_head)).masked_fill(blocked, -torch.inf))
        # a fully blocked row (padding query) gives NaN: zero it so it adds nothing downstream
        pattern = self.hook_pattern(torch.softmax(scores, -1).masked_fill(blocked, 0.0))
        z = self.hook_z((pattern @ v).transpose(1, 2))  # (batch, q, n_heads, d_head)
        return self.o(z.reshape(z.shape[0], z.shape[1], -1))


class MLP(nn.Module):
    """``W_out · act(W_in x + b_in) + b_out``; coefficients at ``hook_post``."""

    def __init__(self, cfg: EncDecConfig):
        super().__init__()
        self.fc_in, self.fc_out = nn.Linear(cfg.d_model, cfg.d_mlp), nn.Linear(cfg.d_mlp, cfg.d_model)
        self.act_fn = cfg.act_fn
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    W_in = property(lambda self: self.fc_in.weight.T)  # (d_model, d_mlp), TL orientation
    W_out = property(lambda self: self.fc_out.weight.T)  # (d_mlp, d_model)
    b_in = property(lambda self: self.fc_in.bias)
    b_out = property(lambda self: self.fc_out.bias)
    W_gate = None

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        return self.fc_out(self.hook_post(_ACTIVATIONS[self.act_fn](self.hook_pre(self.fc_in(x)))))


class Block(nn.Module):
    """Pre-LN block: self-attention, (decoder) cross-attention, MLP, each added to the residual."""

    def __init__(self, cfg: EncDecConfig, cross: bool):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = LayerNorm(cfg.d_model), Attention(cfg), LayerNorm(cfg.d_model), MLP(cfg)
        self.cross = cross
        if cross:
            self.ln_cross, self.cross_attn = LayerNorm(cfg.d_model), Attention(cfg)
            self.hook_cross_attn_out = HookPoint()
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, HookPoint())

    def forward(self, x, self_blocked, memory=None, cross_blocked=None):
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.attn(self.ln1(x), self_blocked))
        if self.cross:
            x = x + self.hook_cross_attn_out(self.cross_attn(self.ln_cross(x), cross_blocked, memory))
        x = self.hook_resid_mid(x)
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))


class _StackCfg:
    def __init__(self, cfg: EncDecConfig, n_layers: int):
        self.n_layers, self.d_model, self.d_mlp, self.act_fn = n_layers, cfg.d_model, cfg.d_mlp, cfg.act_fn


class Stack(nn.Module):
    """Positional table, blocks and final LayerNorm of one side (the token embedding is shared)."""

    def __init__(self, cfg: EncDecConfig, n_layers: int, cross: bool):
        super().__init__()
        self.cfg = _StackCfg(cfg, n_layers)
        self.pos = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, cross) for _ in range(n_layers))
        self.ln_final = LayerNorm(cfg.d_model)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()

    def forward(self, tok_embed: Tensor, self_blocked: Tensor, memory=None, cross_blocked=None) -> Tensor:
        pos = torch.arange(tok_embed.shape[1], device=tok_embed.device)
        x = self.hook_embed(tok_embed) + self.hook_pos_embed(self.pos(pos))[None]
        for block in self.blocks:
            x = block(x, self_blocked, memory, cross_blocked)
        return self.ln_final(x)


class EncDecTransformer(HookedRootModule):
    """``model(enc_tokens, dec_tokens) -> decoder logits [batch, dec_pos, d_vocab]`` (module doc)."""

    def __init__(self, cfg: EncDecConfig, pad_id: int = 0):
        super().__init__()
        self.cfg, self.pad_id = cfg, pad_id
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.encoder, self.decoder = Stack(cfg, cfg.n_enc, False), Stack(cfg, cfg.n_dec, True)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)
        self._init(torch.Generator().manual_seed(cfg.seed))
        self.setup()

    @property
    def original_model(self) -> EncDecTransformer:
        return self  # what a Workbench trains and saves (a bridge's wrapped model)

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.unembed.weight.T

    @property
    def blocks(self):
        raise BadInput("an encoder-decoder has two stacks: read model.encoder.blocks or model.decoder.blocks "
                       "(ffnmem.core.encdec.ffn_views); decoder-only analyses do not apply")

    def _init(self, g: torch.Generator) -> None:
        """GPT-2 init as TL-native: N(0, 0.8/√d), output projections scaled by 1/√(2·n_layers)."""
        std = 0.8 / math.sqrt(self.cfg.d_model)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith((".b", "bias")):
                    p.zero_()
                elif name.endswith(".w"):
                    p.fill_(1.0)
                else:
                    out = name.endswith((".o.weight", ".fc_out.weight"))
                    p.normal_(0.0, std / math.sqrt(2 * self.cfg.n_layers) if out else std, generator=g)

    def encode(self, enc_tokens: Int[Tensor, "batch src"]) -> tuple[Tensor, Tensor]:
        """Encoder output ``[batch, src, d_model]`` and the key-padding mask ``[batch, 1, 1, src]``."""
        pad = (enc_tokens == self.pad_id)[:, None, None, :]
        return self.encoder(self.embed(enc_tokens), pad), pad

    def forward(self, enc_tokens: Int[Tensor, "batch src"],
                dec_tokens: Int[Tensor, "batch tgt"]) -> Float[Tensor, "batch tgt d_vocab"]:
        if max(enc_tokens.shape[1], dec_tokens.shape[1]) > self.cfg.n_ctx:
            raise BadInput(f"input of {max(enc_tokens.shape[1], dec_tokens.shape[1])} tokens exceeds n_ctx {self.cfg.n_ctx}")
        memory, pad = self.encode(enc_tokens)
        t = dec_tokens.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=dec_tokens.device).triu(1)[None, None]
        causal = causal | (dec_tokens == self.pad_id)[:, None, None, :]
        return self.unembed(self.decoder(self.embed(dec_tokens), causal, memory, pad))


def ffn_views(model: EncDecTransformer) -> dict[str, list[FFNView]]:
    """The key-value view of every FFN, per stack (coefficients at ``{stack}.blocks.{l}.mlp.hook_post``)."""
    return {s: [FFNView.from_bridge(getattr(model, s), layer) for layer in range(getattr(model, s).cfg.n_layers)]
            for s in STACKS}


def position_tables(model: nn.Module) -> list[nn.Module]:
    """The learned positional tables of a model (TL-native: ``pos``; encoder-decoder: one per stack)."""
    if isinstance(model, EncDecTransformer):
        return [model.encoder.pos, model.decoder.pos]
    pos = getattr(model, "pos", None)
    return [] if pos is None else [pos]
