"""Direct logit attribution: how much each FFN memory writes toward an answer.

For a component that adds ``c`` to the final residual stream, its direct effect on the logit of
token ``a`` is ``(g ⊙ c') · u_a / s`` where ``u_a = W_U[:, a]``, ``g`` is the final norm's weight,
``s`` the final norm's scale at that position (frozen, as in TransformerLens' DLA), and ``c'`` is
``c`` minus its mean for LayerNorm (no centring for RMSNorm). For memory ``i`` of a layer,
``c = m_i v_i``, so its effect is ``m_i (v_i · d) / s`` with ``d`` the *effective direction*
(:func:`answer_directions`). Summed over a layer's memories plus ``b_out`` it equals the direct
effect of ``hook_mlp_out`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench


def neuron_logit_attribution(
    coeffs: Float[Tensor, "batch d_mlp"],
    values: Float[Tensor, "d_mlp d_model"],
    direction: Float[Tensor, "batch d_model"],
    final_scale: Float[Tensor, "batch 1"] | None = None,
) -> Float[Tensor, "batch d_mlp"]:
    """Direct effect of each FFN memory on the answer logit: ``m_i <v_i, d> / s``."""
    proj = einsum(values, direction, "d_mlp d_model, batch d_model -> batch d_mlp")
    dla = coeffs * proj
    return dla if final_scale is None else dla / final_scale


def vector_logit_attribution(
    vectors: Float[Tensor, "batch d_model"],
    direction: Float[Tensor, "batch d_model"],
    final_scale: Float[Tensor, "batch 1"] | None = None,
) -> Float[Tensor, " batch"]:
    """Direct effect of whole residual-stream writes (a layer's output, a bias)."""
    out = (vectors * direction).sum(-1)
    return out if final_scale is None else out / final_scale.squeeze(-1)


def head_logit_attribution(
    z: Float[Tensor, "batch n_heads d_head"],
    W_O: Float[Tensor, "n_heads d_head d_model"],
    direction: Float[Tensor, "batch d_model"],
    final_scale: Float[Tensor, "batch 1"] | None = None,
) -> Float[Tensor, "batch n_heads"]:
    """Direct effect of each attention head: ``<z_h W_O[h], d> / s`` (W_O projected onto d first)."""
    proj = einsum(W_O, direction, "n_heads d_head d_model, batch d_model -> batch n_heads d_head")
    out = (z * proj).sum(-1)
    return out if final_scale is None else out / final_scale


def answer_directions(
    wb: Workbench, answers: Int[Tensor, " batch"], distractors: Int[Tensor, "batch *k"] | None = None
) -> Float[Tensor, "batch d_model"]:
    """Effective residual directions ``d`` for answer logits (or answer − distractor logit diffs).

    ``distractors[b]`` may be one token or ``k`` tokens; with ``k`` the contrast is the answer's logit
    minus the *mean* logit of those tokens (e.g. the other values an attribute can take).
    """
    u = wb.W_U[:, answers].T
    if distractors is not None:
        u = u - (wb.W_U[:, distractors].T if distractors.dim() == 1 else wb.W_U[:, distractors].mean(-1).T)
    d = u * wb.final_norm_weight()
    if wb.final_norm_centers():
        d = d - d.mean(-1, keepdim=True)
    return d


@dataclass(frozen=True)
class DirectEffects:
    """Direct effects at the last position of each prompt.

    ``neurons[b, l, i]`` is memory ``i`` of layer ``l``; ``mlp[b, l]`` / ``attn[b, l]`` whole layers;
    ``mlp_bias[b, l]`` the ``b_out`` part; ``logit[b]`` the answer logit (minus the distractor's);
    ``coeffs[b, l, i]`` the coefficient m_i itself (its sign says which way the value is written);
    ``heads[b, l, h]`` attention head ``h`` of layer ``l``, and ``attn_bias[b, l]`` the ``b_O`` part,
    so that ``heads.sum(-1) + attn_bias == attn``.
    """

    neurons: Float[Tensor, "batch n_layers d_mlp"]
    coeffs: Float[Tensor, "batch n_layers d_mlp"]
    mlp: Float[Tensor, "batch n_layers"]
    attn: Float[Tensor, "batch n_layers"]
    mlp_bias: Float[Tensor, "batch n_layers"]
    heads: Float[Tensor, "batch n_layers n_heads"]
    attn_bias: Float[Tensor, "batch n_layers"]
    logit: Float[Tensor, " batch"]
    probs: Float[Tensor, " batch"]
    top_pred: Int[Tensor, " batch"]

    def top(self, b: int, k: int = 10) -> list[tuple[int, int, float]]:
        """The ``k`` memories (layer, neuron, effect) with the largest direct effect for prompt ``b``."""
        flat = self.neurons[b].flatten()
        vals, idx = flat.topk(k)
        d_mlp = self.neurons.shape[-1]
        return [(int(i) // d_mlp, int(i) % d_mlp, float(v)) for v, i in zip(vals, idx)]


@torch.inference_mode()
def direct_effects(wb: Workbench, prompts: list[str], answers: list[int],
                   distractors: list[int] | list[list[int]] | None = None, *, progress: bool = False) -> DirectEffects:
    """Per-neuron, per-layer direct effects toward ``answers`` at each prompt's last token.

    With ``distractors`` the target is the logit difference answer − distractor; a list of tokens per
    prompt contrasts the answer with their mean logit.
    """
    L = wb.n_layers
    names = {hook_name(kind, l) for l in range(L) for kind in ("post", "out", "attn_out", "z")}
    names.add("ln_final.hook_scale")
    rows = {k: [] for k in ("neurons", "coeffs", "mlp", "attn", "bias", "heads", "attn_bias", "logit", "prob", "pred")}
    for b, prompt in enumerate(tqdm(prompts, desc="direct effects", unit="prompt", disable=not progress)):
        tokens = wb.to_tokens(prompt)
        logits, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
        ans = torch.tensor([answers[b]], device=wb.device)
        dis = None if distractors is None else torch.tensor([distractors[b]], device=wb.device)
        if dis is not None and dis.dim() == 2 and dis.shape[1] == 0:
            raise BadInput(f"prompt {b}: an empty list of distractors; give at least one token to contrast with")
        d = answer_directions(wb, ans, dis)
        scale = cache["ln_final.hook_scale"][:, -1]
        rows["neurons"].append(torch.stack([
            neuron_logit_attribution(cache[hook_name("post", l)][:, -1], wb.ffn(l).values, d, scale)[0]
            for l in range(L)]))
        rows["coeffs"].append(torch.stack([cache[hook_name("post", l)][0, -1] for l in range(L)]))
        rows["mlp"].append(torch.stack([vector_logit_attribution(cache[hook_name("out", l)][:, -1], d, scale)[0]
                                        for l in range(L)]))
        rows["attn"].append(torch.stack([vector_logit_attribution(cache[hook_name("attn_out", l)][:, -1], d, scale)[0]
                                         for l in range(L)]))
        rows["bias"].append(torch.stack([
            vector_logit_attribution(_bias_vec(wb, l).expand(1, -1), d, scale)[0] for l in range(L)]))
        rows["heads"].append(torch.stack([
            head_logit_attribution(cache[hook_name("z", l)][:, -1], wb.bridge.blocks[l].attn.W_O, d, scale)[0]
            for l in range(L)]))
        rows["attn_bias"].append(torch.stack([
            vector_logit_attribution(_attn_bias_vec(wb, l).expand(1, -1), d, scale)[0] for l in range(L)]))
        last = logits[0, -1]
        rows["logit"].append(last[answers[b]] - (0 if dis is None else last[dis[0]].mean()))
        rows["prob"].append(last.softmax(-1)[answers[b]])
        rows["pred"].append(last.argmax())
    return DirectEffects(
        neurons=torch.stack(rows["neurons"]).float().cpu(), coeffs=torch.stack(rows["coeffs"]).float().cpu(), mlp=torch.stack(rows["mlp"]).float().cpu(),
        attn=torch.stack(rows["attn"]).float().cpu(), mlp_bias=torch.stack(rows["bias"]).float().cpu(),
        heads=torch.stack(rows["heads"]).float().cpu(), attn_bias=torch.stack(rows["attn_bias"]).float().cpu(),
        logit=torch.stack(rows["logit"]).float().cpu(), probs=torch.stack(rows["prob"]).float().cpu(),
        top_pred=torch.stack(rows["pred"]).cpu(),
    )


def _bias_vec(wb: Workbench, layer: int) -> Tensor:
    b = wb.ffn(layer).b_out
    return torch.zeros(wb.d_model, device=wb.device, dtype=wb.dtype) if b is None else b


def _attn_bias_vec(wb: Workbench, layer: int) -> Tensor:
    b = getattr(wb.bridge.blocks[layer].attn, "b_O", None)
    return torch.zeros(wb.d_model, device=wb.device, dtype=wb.dtype) if b is None else b
