"""How an FFN update builds a prediction (Geva et al. 2022).

Layer ``l``'s FFN adds ``Σ_i m_i v_i (+ b_out)`` to the residual stream. Reading the stream through
the logit lens (final norm with its own scale, then ``W_U``) before the FFN (``resid_mid``) and
after it (``resid_post``) says which token the model would predict at that point. For each
(position, layer) the update is put in one of three cases:

* **keep**: the top token after the FFN is the one before it;
* **single**: it changed, and the new top token is the top token of the *dominant memory* (the
  sub-update ``m_i v_i`` with the largest norm ``|m_i|·‖v_i‖``, read as ``sign(m_i) v_i``);
* **compose**: it changed into a token that the dominant memory alone does not predict.

The top sub-updates by their direct effect on the model's final prediction come from
:func:`ffnmem.methods.attribution.neuron_logit_attribution` (final-norm scale frozen, as in DLA).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods.attribution import answer_directions, neuron_logit_attribution
from ffnmem.methods.keyvalue import project_to_vocab
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows

CASES = ("keep", "single", "compose")


def lens_logits(
    resid: Float[Tensor, "pos d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    norm_weight: Float[Tensor, " d_model"],
    norm_bias: Float[Tensor, " d_model"] | None = None,
    b_U: Float[Tensor, " d_vocab"] | None = None,
    *,
    center: bool = False,
    eps: float = 1e-5,
) -> Float[Tensor, "pos d_vocab"]:
    """Logit lens: the final norm (LayerNorm if ``center`` else RMSNorm) with the stream's own
    scale, then the unembedding. On the last ``resid_post`` it reproduces the model's logits."""
    x = resid - resid.mean(-1, keepdim=True) if center else resid
    x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * norm_weight
    if norm_bias is not None:
        x = x + norm_bias
    logits = x @ W_U
    return logits if b_U is None else logits + b_U


def classify(before: int, after: int, dominant: int) -> str:
    """``keep`` / ``single`` / ``compose`` for one update (see the module docstring)."""
    if after == before:
        return "keep"
    return "single" if after == dominant else "compose"


@dataclass(frozen=True)
class PredictionBuild:
    """Per (position, layer) lens predictions and cases, and the top sub-updates of the last position."""

    layers: list[dict]  # rows: pos, layer, before, after, dominant neuron/token, case
    updates: list[dict]  # rows: layer, neuron, coeff, effect, value top token (last position)
    final_token: int

    def shares(self) -> dict[str, float]:
        """Share of (position, layer) updates in each case."""
        c = Counter(r["case"] for r in self.layers)
        n = max(1, sum(c.values()))
        return {k: c[k] / n for k in CASES}

    def shares_by_layer(self) -> list[dict]:
        out = []
        for l in sorted({r["layer"] for r in self.layers}):
            c = Counter(r["case"] for r in self.layers if r["layer"] == l)
            n = sum(c.values())
            out.append({"layer": l, **{k: c[k] / n for k in CASES}})
        return out


def _lens(wb: Workbench, resid: Tensor) -> Tensor:
    return lens_logits(resid, wb.W_U, wb.final_norm_weight(), getattr(wb.bridge.ln_final, "bias", None),
                       getattr(wb.bridge, "b_U", None), center=wb.final_norm_centers(),
                       eps=float(getattr(wb.cfg, "eps", 1e-5)))


@torch.inference_mode()
def build_prediction(wb: Workbench, prompt: str, *, top: int = 10, positions: str = "all") -> PredictionBuild:
    """Trace how each FFN changes the lens prediction of ``prompt`` (``positions``: ``all`` or
    ``last``; BOS is skipped) and rank the last position's sub-updates by their effect on the
    final top token."""
    tokens = wb.to_tokens(prompt)
    L = wb.n_layers
    keep = {hook_name(kind, l) for l in range(L) for kind in ("resid_mid", "resid_post", "post")}
    keep.add("ln_final.hook_scale")
    logits, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in keep)
    n = tokens.shape[1]
    pos = list(range(1 if n > 1 else 0, n)) if positions == "all" else [n - 1]
    final = int(logits[0, -1].argmax())
    g, center = wb.final_norm_weight(), wb.final_norm_centers()
    rows, updates = [], []
    for l in range(L):
        ffn = wb.ffn(l)
        m = cache[hook_name("post", l)][0]  # (pos, d_mlp)
        before = _lens(wb, cache[hook_name("resid_mid", l)][0]).argmax(-1)
        after = _lens(wb, cache[hook_name("resid_post", l)][0]).argmax(-1)
        size = m.abs() * ffn.values.norm(dim=-1)
        dom = size.argmax(-1)  # (pos,)
        dvec = ffn.values[dom] * m.gather(-1, dom[:, None]).sign()
        dtok = project_to_vocab(dvec, wb.W_U, g, center).argmax(-1)
        for p in pos:
            rows.append({"pos": p, "token": wb.decode(int(tokens[0, p])), "layer": l,
                         "before": wb.decode(int(before[p])), "after": wb.decode(int(after[p])),
                         "dominant_neuron": int(dom[p]), "dominant_token": wb.decode(int(dtok[p])),
                         "case": classify(int(before[p]), int(after[p]), int(dtok[p]))})
        d = answer_directions(wb, torch.tensor([final], device=wb.device))
        eff = neuron_logit_attribution(m[-1:], ffn.values, d, cache["ln_final.hook_scale"][:, -1])[0]
        for i in eff.abs().topk(min(top, eff.shape[0])).indices.tolist():
            updates.append({"layer": l, "neuron": i, "coeff": float(m[-1, i]), "effect": float(eff[i])})
    updates = sorted(updates, key=lambda r: -abs(r["effect"]))[:top]
    for r in updates:
        v = wb.ffn(r["layer"]).values[r["neuron"]] * (1.0 if r["coeff"] >= 0 else -1.0)
        r["value_top_token"] = wb.decode(int(project_to_vocab(v[None], wb.W_U, g, center)[0].argmax()))
    return PredictionBuild(rows, updates, final)


def to_result(wb: Workbench, builds: dict[str, PredictionBuild]) -> Result:
    """Several prompts' builds as one :class:`Result` (tables ``layers``, ``updates``, ``shares``)."""
    lay = [{"prompt": p, **r} for p, b in builds.items() for r in b.layers]
    upd = [{"prompt": p, **r} for p, b in builds.items() for r in b.updates]
    c = Counter(r["case"] for r in lay)
    shares = [{"case": k, "share": c[k] / max(1, len(lay))} for k in CASES]
    return Result(kind="prediction_build", tables={"layers": table_from_rows(lay), "updates": table_from_rows(upd),
                                                   "shares": table_from_rows(shares)},
                  provenance=make_provenance(wb), meta={"prompts": list(builds)})
