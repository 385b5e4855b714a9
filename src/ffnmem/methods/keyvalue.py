"""Values in vocabulary space (Geva et al. 2021, 2022).

A value vector ``v_i`` is read as a distribution over the vocabulary by projecting it through the
final norm and the unembedding: ``scores = (g ⊙ v_i) W_U`` (centred first for LayerNorm).
Approximation, stated: the final norm's per-position scale ``1/s`` is left out. It is a positive
number per position, so it changes no ranking of tokens, only the size of the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ffnmem.core.workbench import Workbench


def project_to_vocab(
    vectors: Float[Tensor, "n d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    norm_weight: Float[Tensor, " d_model"] | None = None,
    center: bool = False,
) -> Float[Tensor, "n d_vocab"]:
    """Vocabulary scores of residual-stream vectors: ``(g ⊙ v) W_U``, centred for LayerNorm."""
    x = vectors if norm_weight is None else vectors * norm_weight
    if center:
        x = x - x.mean(-1, keepdim=True)
    return x @ W_U


@dataclass(frozen=True)
class VocabProjection:
    """Top and bottom tokens of some value vectors (``[n, k]`` ids and scores)."""

    top_ids: Int[Tensor, "n k"]
    top_scores: Float[Tensor, "n k"]
    bottom_ids: Int[Tensor, "n k"]
    bottom_scores: Float[Tensor, "n k"]
    scores: Float[Tensor, "n d_vocab"]

    def rank_of(self, token: int) -> list[int]:
        """1-based rank of ``token`` among each value's promoted tokens."""
        return ((self.scores > self.scores[:, token : token + 1]).sum(-1) + 1).tolist()


@torch.inference_mode()
def value_tokens(wb: Workbench, layer: int, neurons: list[int] | Tensor, k: int = 10,
                 signs: Tensor | None = None) -> VocabProjection:
    """Top-``k`` promoted and suppressed tokens of the value vectors of ``neurons`` in ``layer``.

    ``signs`` (±1 per neuron, e.g. the sign of the coefficient in context) flips values whose
    memory is written with a negative coefficient, so "top" is what the memory actually promotes.
    """
    values = wb.ffn(layer).values[torch.as_tensor(neurons, device=wb.device)]
    if signs is not None:
        values = values * signs.to(values).reshape(-1, 1)
    scores = project_to_vocab(values, wb.W_U, wb.final_norm_weight(), wb.final_norm_centers())
    top, bottom = scores.topk(k, dim=-1), (-scores).topk(k, dim=-1)
    return VocabProjection(top.indices.cpu(), top.values.float().cpu(),
                           bottom.indices.cpu(), (-bottom.values).float().cpu(), scores.float().cpu())


@torch.inference_mode()
def value_top_ids(wb: Workbench, layer: int, k: int = 10, *, sign: float = 1.0,
                  chunk: int = 256) -> Int[Tensor, "d_mlp k"]:
    """Top-``k`` promoted token ids of every value of ``layer`` (``sign · v_i``), in chunks of
    ``chunk`` values so the ``[d_mlp, d_vocab]`` score matrix is never held at once."""
    values = wb.ffn(layer).values
    g, center = wb.final_norm_weight(), wb.final_norm_centers()
    out = [project_to_vocab(values[s : s + chunk] * sign, wb.W_U, g, center).topk(k, dim=-1).indices.cpu()
           for s in range(0, values.shape[0], chunk)]
    return torch.cat(out)


def agreement(
    value_ids: Int[Tensor, "d_mlp k"],
    next_ids: Int[Tensor, "d_mlp n"],
    perm: Int[Tensor, " d_mlp"] | None = None,
) -> Tensor:
    """Per key: does value ``i``'s top-k contain the next token of any of its top-``n`` triggers?

    With ``perm``, value ``i`` is paired with the triggers of key ``perm[i]`` instead (the
    shuffled-pairing baseline). Next ids of ``-1`` (window end) never match. Returns ``[d_mlp]`` bool.
    """
    nxt = next_ids if perm is None else next_ids[perm]
    hit = (value_ids.unsqueeze(-1) == nxt.unsqueeze(1)) & (nxt.unsqueeze(1) >= 0)  # (d_mlp, k, n)
    return hit.flatten(1).any(-1)


def derangement(n: int, seed: int) -> Tensor:
    """A random permutation of ``range(n)`` with no fixed point (seeded): one random n-cycle,
    ``d[s[i]] = s[i + 1]`` for a random ordering ``s``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randperm(n, generator=g)
    perm = torch.empty(n, dtype=torch.long)
    perm[s] = s.roll(-1)
    return perm
