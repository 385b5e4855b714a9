"""The FFN view of an encoder-decoder (:mod:`ffnmem.core.encdec`): coefficients, attribution, probes.

What works on both stacks, and how:

* **FFN coefficients** (:func:`capture_coefficients`): ``{stack}.blocks.{l}.mlp.hook_post`` for
  the encoder (over the prompt) and the decoder (over its rows), one ``run_with_cache``.
* **Direct logit attribution** of the decoder's answer at decoder position 0
  (:func:`answer_attribution`): the decoder's residual there is ``embed + pos + Σ_j (self_j +
  cross_j + ffn_j)``, each term read through ``decoder.ln_final`` with its scale frozen (as
  :mod:`ffnmem.methods.attribution` does for decoder-only models); per decoder FFN neuron
  ``m_i (v_i · d) / s``. The parts sum to the logit minus the decoder embeddings' share.
* **Encoder components have no direct path** to the logits: they reach the decoder only through
  the cross-attention's keys and values. They are attributed *through the cross-attention's value
  path* with the cross-attention patterns and both LayerNorm scales (encoder final, decoder final)
  frozen at their clean values: an encoder write ``c`` at key position ``k`` contributes
  ``c · w_k`` with ``w_k = P(γ_enc ⊙ Σ_{j,h} A_jh[0, k] W_V^{jh} W_O^{jh} u) / s_k`` (``u`` the
  decoder-side answer direction, ``P`` the centring projection). Summed over every encoder
  component plus the encoder LN bias and the value / output biases it equals the cross-attention's
  direct effect exactly (a test checks it). It ignores what the encoder changes in the *patterns*
  (the keys) and what the cross-attention's output changes in later decoder layers, as DLA ignores
  composition.
* **Position probe and attention rank**: on the encoder's residual stream (``encoder.hook_embed +
  pos`` and every ``resid_post``) and its self-attention patterns, over unpadded prompts.

Not supported: decoder-only analyses that read ``wb.bridge.blocks`` (they raise), activation
patching, knowledge neurons, SAEs and the batch registry's analyses on an encoder-decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ffnmem.core.encdec import STACKS, EncDecTransformer, ffn_views
from ffnmem.core.errors import BadInput
from ffnmem.methods.positions import effective_rank, position_probe_error


def _model(wb) -> EncDecTransformer:
    model = wb.bridge.original_model
    if not isinstance(model, EncDecTransformer):
        raise BadInput(f"{wb.model_id} is not an encoder-decoder; use the decoder-only analyses")
    return model


def post_hook(stack: str, layer: int) -> str:
    """The coefficient hook of FFN ``layer`` of ``stack`` (``encoder`` or ``decoder``)."""
    if stack not in STACKS:
        raise BadInput(f"unknown stack {stack!r}; choose encoder or decoder")
    return f"{stack}.blocks.{layer}.mlp.hook_post"


@torch.inference_mode()
def capture_coefficients(wb, enc_tokens: Int[Tensor, "batch src"],
                         dec_tokens: Int[Tensor, "batch tgt"]) -> dict[str, Float[Tensor, "n_layers batch pos d_mlp"]]:
    """FFN coefficients of every layer of both stacks (CPU tensors)."""
    model = _model(wb)
    names = {s: [post_hook(s, l) for l in range(getattr(model, s).cfg.n_layers)] for s in STACKS}
    wanted = set(names["encoder"] + names["decoder"])
    _, cache = model.run_with_cache(enc_tokens.to(wb.device), dec_tokens.to(wb.device), names_filter=lambda n: n in wanted)
    return {s: torch.stack([cache[n] for n in names[s]]).float().cpu() for s in STACKS}


@dataclass(frozen=True)
class EncDecEffects:
    """Attribution of the answer logit at decoder position 0 (see the module doc), per query ``b``.

    ``dec_self``, ``dec_cross``, ``dec_ffn``: ``[b, n_dec]`` direct effects of the decoder's layers;
    ``dec_neurons``: ``[b, n_dec, d_mlp]``; ``enc_attn``, ``enc_ffn``: ``[b, n_enc]`` effects through
    the cross-attention's value path; ``enc_neurons``: ``[b, n_enc, d_mlp]``; ``enc_rest``: the
    encoder embeddings' path plus the LN bias, value and output biases, computed on their own, so
    ``enc_attn + enc_ffn + enc_rest`` summed over layers equals ``dec_cross`` summed (a check);
    ``logit``, ``top_pred``.
    """

    dec_self: Tensor
    dec_cross: Tensor
    dec_ffn: Tensor
    dec_neurons: Tensor
    enc_attn: Tensor
    enc_ffn: Tensor
    enc_neurons: Tensor
    enc_rest: Tensor
    logit: Tensor
    top_pred: Tensor


def _cross_pullback(model, cache, u: Float[Tensor, " d_model"], b: int) -> Float[Tensor, "src d_model"]:
    """``w_k`` of the module doc: the encoder-side direction whose dot with a write at key k is its effect."""
    dec, enc = model.decoder, model.encoder
    acc = 0.0
    for j, block in enumerate(dec.blocks):
        attn = block.cross_attn
        pattern = cache[f"decoder.blocks.{j}.cross_attn.hook_pattern"][b, :, 0]  # (heads, src)
        w_v = attn.v.weight.T.reshape(-1, attn.n_heads, attn.d_head)  # (d_model, heads, d_head)
        ou = attn.W_O @ u  # (heads, d_head)
        acc = acc + torch.einsum("hk,dhe,he->kd", pattern, w_v, ou)
    w = acc * enc.ln_final.w
    w = w - w.mean(-1, keepdim=True)
    return w / cache["encoder.ln_final.hook_scale"][b]  # (src, 1) scale per key position


def _cross_constant(model, cache, u: Float[Tensor, " d_model"], b: int) -> Tensor:
    """The cross-attention's direct effect that no encoder write carries: the encoder LN bias read
    through the values, the value biases and the output bias (patterns frozen)."""
    beta = model.encoder.ln_final.b
    total = 0.0
    for j, block in enumerate(model.decoder.blocks):
        attn = block.cross_attn
        mass = cache[f"decoder.blocks.{j}.cross_attn.hook_pattern"][b, :, 0].sum(-1)  # (heads,): 1 unless all padding
        per_head = (attn.v(beta[None])[0]).view(attn.n_heads, attn.d_head)  # β W_V + b_V, per head
        total = total + (mass[:, None] * per_head * (attn.W_O @ u)).sum() + attn.b_O @ u
    return total


@torch.inference_mode()
def answer_attribution(wb, prompts: list[list[int]], answers: list[int]) -> EncDecEffects:
    """Attribution of each answer token (module doc), one unpadded prompt (``BOS prompt`` ids) at a time."""
    model = _model(wb)
    n_enc, n_dec = model.cfg.n_enc, model.cfg.n_dec
    out: dict[str, list] = {k: [] for k in EncDecEffects.__dataclass_fields__}
    bos = torch.tensor([[model.cfg.bos_id]], device=wb.device)
    views = ffn_views(model)
    for ids, ans in zip(prompts, answers):
        logits, cache = model.run_with_cache(torch.tensor([ids], device=wb.device), bos)
        u = model.decoder.ln_final.w * model.W_U[:, ans]
        u = (u - u.mean()) / cache["decoder.ln_final.hook_scale"][0, 0]

        def dla(x: Tensor, u: Tensor = u) -> Tensor:  # decoder position 0 of a [1, tgt, d] write
            return x[0, 0] @ u
        out["dec_self"].append(torch.stack([dla(cache[f"decoder.blocks.{j}.hook_attn_out"]) for j in range(n_dec)]))
        out["dec_cross"].append(torch.stack([dla(cache[f"decoder.blocks.{j}.hook_cross_attn_out"]) for j in range(n_dec)]))
        out["dec_ffn"].append(torch.stack([dla(cache[f"decoder.blocks.{j}.hook_mlp_out"]) for j in range(n_dec)]))
        out["dec_neurons"].append(torch.stack([cache[post_hook("decoder", j)][0, 0] * (views["decoder"][j].values @ u)
                                               for j in range(n_dec)]))
        w = _cross_pullback(model, cache, u, 0)  # (src, d_model)

        def path(x: Tensor, w: Tensor = w) -> Tensor:  # an encoder write [1, src, d] through the cross-attention
            return (x[0] * w).sum()
        out["enc_attn"].append(torch.stack([path(cache[f"encoder.blocks.{l}.hook_attn_out"]) for l in range(n_enc)]))
        out["enc_ffn"].append(torch.stack([path(cache[f"encoder.blocks.{l}.hook_mlp_out"]) for l in range(n_enc)]))
        out["enc_neurons"].append(torch.stack([(cache[post_hook("encoder", l)][0] * (w @ views["encoder"][l].values.T)).sum(0)
                                               for l in range(n_enc)]))
        embed = cache["encoder.blocks.0.hook_resid_pre"]  # token embedding + position
        out["enc_rest"].append(path(embed) + _cross_constant(model, cache, u, 0))
        out["logit"].append(logits[0, 0, ans])
        out["top_pred"].append(logits[0, 0].argmax())
    return EncDecEffects(**{k: torch.stack(v).float().cpu() for k, v in out.items()})


def dla_rows(wb, queries: list[dict]) -> list[dict]:
    """Per query: the attribution of :func:`answer_attribution` as a flat row, with shares of
    ``Σ|decoder self-attention| + Σ|decoder FFN| + Σ|encoder attention (path)| + Σ|encoder FFN (path)|``:
    ``ffn_share`` (both stacks' FFNs), ``enc_ffn_share_L{l}``, ``dec_ffn_share_L{j}``."""
    if not queries:
        raise BadInput("no query prompts to attribute")
    prompts = [wb.encode(q["prompt"]) for q in queries]
    answers = [wb.answer_token(q["answer"]) for q in queries]
    e = answer_attribution(wb, prompts, answers)
    total = (e.dec_self.abs().sum(1) + e.dec_ffn.abs().sum(1) + e.enc_attn.abs().sum(1) + e.enc_ffn.abs().sum(1)).clamp_min(1e-12)
    rows = []
    for i, q in enumerate(queries):
        row = {"entity": q["entity"], "attribute": q["attribute"], "exposures": int(q["exposures"]),
               "correct": int(e.top_pred[i]) == answers[i], "logit": float(e.logit[i]),
               "ffn_share": float((e.dec_ffn[i].abs().sum() + e.enc_ffn[i].abs().sum()) / total[i]),
               "cross": float(e.dec_cross[i].sum()), "enc_rest": float(e.enc_rest[i])}
        for name, eff in (("enc_attn", e.enc_attn), ("enc_ffn", e.enc_ffn), ("dec_self", e.dec_self), ("dec_ffn", e.dec_ffn)):
            for layer in range(eff.shape[1]):
                row[f"{name}_L{layer}"] = float(eff[i, layer])
                row[f"{name}_share_L{layer}"] = float(eff[i, layer].abs() / total[i])
        rows.append(row)
    return rows


def ffn_share(rows: list[dict], n_enc: int, n_dec: int) -> list[float]:
    """Mean share per FFN layer, encoder layers first, then decoder layers."""
    keys = [f"enc_ffn_share_L{l}" for l in range(n_enc)] + [f"dec_ffn_share_L{j}" for j in range(n_dec)]
    return [float(np.mean([r[k] for r in rows])) for k in keys]


@torch.inference_mode()
def encoder_probe(wb, tokens: Int[Tensor, "n src"], *, folds: int = 5) -> tuple[list[dict], Tensor]:
    """Position-probe error on the encoder's input (embeddings + positions) and every ``resid_post``,
    and the mean effective rank of each encoder self-attention head ``[n_enc, n_heads]``; unpadded rows."""
    model = _model(wb)
    n_enc = model.cfg.n_enc
    names = (["encoder.blocks.0.hook_resid_pre"] + [f"encoder.blocks.{l}.hook_resid_post" for l in range(n_enc)]
             + [f"encoder.blocks.{l}.attn.hook_pattern" for l in range(n_enc)])
    bos = torch.full((tokens.shape[0], 1), model.cfg.bos_id, device=wb.device)
    _, cache = model.run_with_cache(tokens.to(wb.device), bos, names_filter=lambda n: n in names)
    probe = [{"layer": i, **position_probe_error(cache[n].float().cpu().numpy(), folds=folds)}
             for i, n in enumerate(names[: n_enc + 1])]
    ranks = torch.stack([effective_rank(cache[n].float().cpu()).mean(0) for n in names[n_enc + 1:]])
    return probe, ranks
