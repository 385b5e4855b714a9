"""One key-value view of a feed-forward layer, whatever the architecture.

Glossary (Geva et al. 2021), for layer ``l`` with input ``x`` (the normalised residual stream):

* **keys** ``K`` (d_mlp × d_model): rows of W_in; key ``i`` scores the input, ``k_i · x + b_in_i``.
* **gates** ``G`` (d_mlp × d_model): gated MLPs only (Llama's SiLU gate); ``g_i · x``.
* **coefficients** ``m`` (d_mlp): the post-activation, hook ``blocks.{l}.mlp.hook_post``;
  ``m = act(K x + b_in)`` for plain MLPs, ``m = act(G x) ⊙ (K x)`` for gated ones.
* **values** ``V`` (d_mlp × d_model): rows of W_out; memory ``i`` writes ``m_i · v_i``.

The FFN output is ``Σ_i m_i · v_i + b_out`` (hook ``blocks.{l}.hook_mlp_out``). Every analysis in
ffnmem reads FFNs through :class:`FFNView`, never through architecture-specific attribute names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.hooks import hook_name

_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
}


@dataclass(frozen=True, eq=False)
class FFNView:
    """Keys, gates, values and biases of one FFN layer (views of the live weights, no copies)."""

    layer: int
    keys: Float[Tensor, "d_mlp d_model"]
    values: Float[Tensor, "d_mlp d_model"]
    gates: Float[Tensor, "d_mlp d_model"] | None
    b_in: Float[Tensor, " d_mlp"] | None
    b_out: Float[Tensor, " d_model"] | None
    act_fn: str

    @property
    def d_mlp(self) -> int:
        return self.keys.shape[0]

    @property
    def gated(self) -> bool:
        return self.gates is not None

    @property
    def coeff_hook(self) -> str:
        return hook_name("post", self.layer)

    @property
    def out_hook(self) -> str:
        return hook_name("out", self.layer)

    def coefficients(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_mlp"]:
        """m from the normalised FFN input x: ``act(Kx + b)`` or ``act(Gx) ⊙ Kx``."""
        act = _ACTIVATIONS.get(self.act_fn)
        if act is None:
            raise ValueError(f"activation {self.act_fn!r} is not supported; known: {sorted(_ACTIVATIONS)}")
        pre = x @ self.keys.T
        if self.b_in is not None:
            pre = pre + self.b_in
        if self.gates is None:
            return act(pre)
        return act(x @ self.gates.T) * pre

    def output(self, coeffs: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_model"]:
        """The FFN update ``Σ_i m_i v_i + b_out``."""
        out = coeffs @ self.values
        return out if self.b_out is None else out + self.b_out

    @classmethod
    def from_bridge(cls, bridge, layer: int) -> FFNView:
        """Read layer ``layer`` of a TransformerBridge (TL orientation: W_in is d_model × d_mlp)."""
        mlp = bridge.blocks[layer].mlp
        w_gate = mlp.W_gate
        return cls(
            layer=layer,
            keys=mlp.W_in.T,
            values=mlp.W_out,
            gates=None if w_gate is None else w_gate.T,
            b_in=_bias(mlp, "b_in"),
            b_out=_bias(mlp, "b_out"),
            act_fn=(bridge.cfg.act_fn or "gelu").lower(),
        )


def _bias(mlp, name: str) -> Tensor | None:
    try:
        value = getattr(mlp, name)
    except AttributeError:
        return None
    if value is None or not torch.is_tensor(value):
        return None
    return value
