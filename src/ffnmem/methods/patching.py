"""Attribution patching: a first-order estimate of activation patching for every FFN neuron at once.

Activation patching puts neuron ``i``'s clean coefficients (all positions) into the corrupted run
and measures the change of a metric (the answer logit, or answer − distractor logit). Attribution
patching estimates all those changes from one corrupted forward + backward pass:

    Δmetric_i ≈ Σ_pos ∂metric/∂m_i(corrupt) · (m_i(clean) − m_i(corrupt)),

exact when the metric is linear in the coefficients. :func:`compare` measures how well the
estimate tracks true activation patching on a sample of neurons.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods.interventions import AnswerLogit, LogitDiff, Restore


def attribution_core(grad: Float[Tensor, "... pos d_mlp"], clean: Float[Tensor, "... pos d_mlp"],
                     corrupt: Float[Tensor, "... pos d_mlp"]) -> Float[Tensor, "... d_mlp"]:
    """Gradient × activation difference, summed over positions (pure)."""
    return (grad * (clean - corrupt)).sum(-2)


def _metric(logits: Tensor, answer: int, distractor: int | None) -> Tensor:
    """The answer's logit, or its difference to ``distractor``'s, at the last position of each row."""
    metric = AnswerLogit() if distractor is None else LogitDiff(distractor)
    return metric(logits[:, -1], torch.full((logits.shape[0],), answer, device=logits.device))


def _check(wb: Workbench, clean: str, corrupt: str) -> tuple[Tensor, Tensor]:
    a, b = wb.to_tokens(clean), wb.to_tokens(corrupt)
    if a.shape != b.shape:
        raise BadInput(f"clean and corrupted prompts must have the same token length ({a.shape[1]} vs {b.shape[1]})")
    return a, b


def attribution_patching(wb: Workbench, clean: str, corrupt: str, answer: int, distractor: int | None = None,
                         ) -> tuple[Float[Tensor, "n_layers d_mlp"], float, float]:
    """Estimated effect of patching each neuron clean→corrupt; also (metric clean, metric corrupt)."""
    ct, xt = _check(wb, clean, corrupt)
    names = [hook_name("post", l) for l in range(wb.n_layers)]
    with torch.inference_mode():
        logits_c, cache = wb.bridge.run_with_cache(ct, names_filter=lambda n: n in names)
    acts: dict[str, Tensor] = {}

    def keeper(name):  # keyed by the requested name: the bridge reports canonical names for aliases
        def keep(act, hook=None):
            act.retain_grad()
            acts[name] = act
            return act
        return keep

    with torch.enable_grad(), wb.bridge.hooks(fwd_hooks=[(n, keeper(n)) for n in names]):
        m = _metric(wb.bridge(xt), answer, distractor)
        m.sum().backward()
    attr = torch.stack([attribution_core(acts[n].grad[0].float(), cache[n][0].float(), acts[n][0].detach().float())
                        for n in names])
    wb.bridge.zero_grad(set_to_none=True)
    return attr.cpu(), float(_metric(logits_c, answer, distractor)[0]), float(m.detach()[0])


@torch.inference_mode()
def activation_patching(wb: Workbench, clean: str, corrupt: str, answer: int, neurons: list[tuple[int, int]],
                        distractor: int | None = None, batch_size: int = 64) -> Float[Tensor, " n"]:
    """True change of the metric when each neuron's clean coefficients are patched into the corrupt run.

    One row per neuron, ``batch_size`` neurons per forward pass.
    """
    ct, xt = _check(wb, clean, corrupt)
    layers = sorted({l for l, _ in neurons})
    names = {hook_name("post", l): l for l in layers}
    _, cache = wb.bridge.run_with_cache(ct, names_filter=lambda n: n in names)
    base = float(_metric(wb.bridge(xt), answer, distractor)[0])
    out = []
    for s in range(0, len(neurons), batch_size):
        chunk = neurons[s: s + batch_size]
        hooks = []
        for name, layer in names.items():
            mask = torch.zeros(len(chunk), xt.shape[1], wb.d_mlp, dtype=torch.bool)
            for r, (l, n) in enumerate(chunk):
                if l == layer:
                    mask[r, :, n] = True
            if mask.any():
                hooks.append((name, Restore(cache[name][:1], mask)))
        with wb.bridge.hooks(fwd_hooks=hooks):
            out.append(_metric(wb.bridge(xt.expand(len(chunk), -1)), answer, distractor) - base)
    return torch.cat(out).cpu()


def compare(wb: Workbench, clean: str, corrupt: str, answer: int, *, n_sample: int = 64, seed: int = 0,
            distractor: int | None = None) -> dict:
    """Attribution vs activation patching on ``n_sample`` neurons: half the largest |estimates|, half random."""
    attr, m_clean, m_corrupt = attribution_patching(wb, clean, corrupt, answer, distractor)
    flat = attr.flatten()
    top = flat.abs().argsort(descending=True)[: n_sample // 2]
    g = torch.Generator().manual_seed(seed)
    rest = torch.randperm(len(flat), generator=g)
    rest = rest[~torch.isin(rest, top)][: n_sample - len(top)]
    idx = torch.cat([top, rest])
    neurons = [(int(i) // wb.d_mlp, int(i) % wb.d_mlp) for i in idx]
    true = activation_patching(wb, clean, corrupt, answer, neurons, distractor)
    est = flat[idx]
    corr = float(torch.corrcoef(torch.stack([est, true]))[0, 1])
    return {"neurons": neurons, "estimate": est, "true": true, "pearson": corr,
            "metric_clean": m_clean, "metric_corrupt": m_corrupt, "attribution": attr}
