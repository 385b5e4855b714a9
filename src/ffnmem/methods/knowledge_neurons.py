"""Knowledge neurons (Dai et al. 2022): integrated gradients over FFN coefficients.

For layer ``l`` and the last prompt position, scale the coefficients ``m`` by ``α ∈ (0, 1]`` and
integrate the gradient of ``p(answer)`` (or another metric, e.g. the margin) along that path from the zero baseline:

    IG_i = m_i · (1/S) Σ_{k=1..S} ∂p(answer | α_k m) / ∂m_i,   α_k = k / S.

The ``S`` steps of a layer run as one batch (``batch_steps`` rows at a time); gradients flow
through the TransformerBridge. Neurons with ``IG_i ≥ t · max IG`` are the fact's knowledge
neurons; suppressing them (``m_i ← 0``) or amplifying them (``m_i ← 2 m_i``) at the last position
shows their effect on the fact and on unrelated facts.
"""

from __future__ import annotations

import logging

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods.ablation import answer_probs, make_hooks, masks_for
from ffnmem.methods.interventions import AnswerProb

log = logging.getLogger(__name__)


def riemann_alphas(steps: int) -> Float[Tensor, " steps"]:
    """``α_k = k / S`` for ``k = 1..S`` (Dai et al.'s right Riemann sum)."""
    if steps < 1:
        raise BadInput(f"integrated gradients needs at least 1 step, not {steps}")
    return torch.arange(1, steps + 1, dtype=torch.float32) / steps


def _layer_ig(wb: Workbench, tokens: Tensor, answer: int, layer: int, alphas: Tensor,
              batch_steps: int, metric) -> Float[Tensor, " d_mlp"]:
    name = hook_name("post", layer)
    with torch.inference_mode():
        _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n == name)
    base = cache[name][0, -1].detach().clone()
    total = torch.zeros(wb.d_mlp, device=wb.device, dtype=torch.float32)
    for s in range(0, len(alphas), batch_steps):
        a = alphas[s: s + batch_steps].to(wb.device, wb.dtype)
        x = (a[:, None] * base[None]).requires_grad_(True)  # (steps, d_mlp)

        def hook(act, hook=None, x=x):
            return torch.cat([act[:, :-1], x[:, None, :]], dim=1)

        with torch.enable_grad(), wb.bridge.hooks(fwd_hooks=[(name, hook)]):
            logits = wb.bridge(tokens.expand(len(a), -1))
            p = metric(logits[:, -1], torch.full((len(a),), answer, device=logits.device))
            (grad,) = torch.autograd.grad(p.sum(), x)
        total += grad.float().sum(0)
    return (base.float() * total / len(alphas)).cpu()


def integrated_gradients(wb: Workbench, prompt: str, answer: int, *, layers: list[int] | None = None,
                         steps: int = 20, batch_steps: int = 20, metric=None) -> Float[Tensor, "n_layers d_mlp"]:
    """IG attribution of every FFN coefficient at the last position; rows of layers not asked are 0.

    ``metric``: what is integrated, ``metric(last_logits, answers) -> [batch]`` (methods.interventions);
    None is Dai et al.'s ``p(answer)`` (:class:`AnswerProb`); a :class:`Margin` integrates the margin."""
    metric = AnswerProb() if metric is None else metric
    alphas = riemann_alphas(steps)
    layers = list(range(wb.n_layers)) if layers is None else [wb.check_layer(l) for l in layers]
    tokens = wb.to_tokens(prompt)
    out = torch.zeros(wb.n_layers, wb.d_mlp)
    for l in layers:
        out[l] = _layer_ig(wb, tokens, answer, l, alphas, max(1, batch_steps), metric)
    return out


def select_neurons(attr: Float[Tensor, "n_layers d_mlp"], threshold: float = 0.2,
                   max_neurons: int | None = None) -> list[tuple[int, int]]:
    """(layer, neuron) with ``attr ≥ threshold · max(attr)``, largest first (pure)."""
    if not 0 < threshold <= 1:
        raise BadInput(f"threshold must be in (0, 1], not {threshold}")
    top = float(attr.max())
    if top <= 0:
        return []
    flat = attr.flatten()
    idx = (flat >= threshold * top).nonzero().flatten()
    idx = idx[flat[idx].argsort(descending=True)]
    if max_neurons is not None:
        idx = idx[:max_neurons]
    d = attr.shape[1]
    return [(int(i) // d, int(i) % d) for i in idx]


def edit_effects(wb: Workbench, neurons: list[tuple[int, int]], fact: tuple[str, int],
                 unrelated: list[tuple[str, int]] = (), *, amplify: float = 2.0) -> dict:
    """p(answer) of the fact and of unrelated facts: clean, suppressed (m←0), amplified (m←a·m).

    Edits apply at the last position only. Relative changes are (p_edit − p) / p, averaged over
    the unrelated facts.
    """
    masks = masks_for(wb, [neurons])
    out = {}
    for key, items in (("fact", [fact]), ("unrelated", list(unrelated))):
        if not items:
            continue
        rel = {"suppress": [], "amplify": []}
        for prompt, ans in items:
            tokens = wb.to_tokens(prompt)
            a = torch.tensor([ans])
            p0 = float(answer_probs(wb, tokens, a))
            ps = float(answer_probs(wb, tokens, a, make_hooks(wb, masks, "zero", positions="last")))
            pa = float(answer_probs(wb, tokens, a, make_hooks(wb, masks, "scale", factor=amplify, positions="last")))
            if key == "fact":
                out.update(p_clean=p0, p_suppressed=ps, p_amplified=pa)
            rel["suppress"].append((ps - p0) / p0)
            rel["amplify"].append((pa - p0) / p0)
        out[f"{key}_suppress_change"] = sum(rel["suppress"]) / len(items)
        out[f"{key}_amplify_change"] = sum(rel["amplify"]) / len(items)
    return out


def refine_neurons(sets: list[list[tuple[int, int]]], share: float = 0.7) -> list[tuple[int, int]]:
    """Dai et al.'s refining: keep the neurons selected for more than ``share`` of a fact's prompts
    (its paraphrases), in the order of the first set they appear in (pure)."""
    if not 0 <= share < 1:
        raise BadInput(f"share must be in [0, 1), not {share}")
    if not sets:
        return []
    counts: dict[tuple[int, int], int] = {}
    for s in sets:
        for pair in dict.fromkeys(s):
            counts[pair] = counts.get(pair, 0) + 1
    return [pair for pair, c in counts.items() if c / len(sets) > share]


def drop_shared(sets: list[list[tuple[int, int]]], groups: list[str], share: float = 0.1,
                min_facts: int = 2) -> list[list[tuple[int, int]]]:
    """Cross-fact filtering: drop from each fact's set the neurons that are also in the sets of
    many other facts of its group (its relation): template or relation neurons, not the fact's.

    A neuron is dropped from the facts of group ``g`` when it is in the sets of at least
    ``max(min_facts, share · n_g)`` of the ``n_g`` facts of ``g`` (Dai et al.'s code calls the
    neurons in ≥ 10 % of a relation's facts its relation neurons: ``share = 0.1``); ``min_facts = 2``
    means a neuron of one fact alone is never dropped. Order within each set is kept (pure)."""
    if len(sets) != len(groups):
        raise BadInput(f"one group per set: {len(sets)} sets, {len(groups)} groups")
    if not 0 <= share <= 1:
        raise BadInput(f"share must be in [0, 1], not {share}")
    counts: dict[str, dict[tuple[int, int], int]] = {}
    sizes: dict[str, int] = {}
    for s, g in zip(sets, groups):
        sizes[g] = sizes.get(g, 0) + 1
        c = counts.setdefault(g, {})
        for pair in dict.fromkeys(s):
            c[pair] = c.get(pair, 0) + 1
    need = {g: max(min_facts, share * n) for g, n in sizes.items()}
    return [[pair for pair in s if counts[g][pair] < need[g]] for s, g in zip(sets, groups)]


def dai_knowledge_neurons(wb: Workbench, prompts: list[tuple[str, ...]], answers: list[int], groups: list[str],
                          metrics: list, k: int, *, steps: int = 20, batch_steps: int = 20, threshold: float = 0.2,
                          share: float = 0.7, relation_share: float = 0.1,
                          progress: bool = False) -> list[list[tuple[int, int, float]]]:
    """Dai et al.'s knowledge neurons of several facts, ranked: per fact, IG on each of its
    ``prompts`` (``metrics[f]`` integrated), coarse sets ``IG ≥ threshold · max`` per prompt, refined
    to the neurons shared by more than ``share`` of the prompts (:func:`refine_neurons`), then the
    neurons shared with other facts of the same group dropped (:func:`drop_shared`).

    Per fact: the refined neurons first (by mean IG over its prompts), then the other neurons by
    mean IG, the dropped ones left out of both (:func:`kn_ranking`); at most ``k``."""
    means, refined = [], []
    for ps, answer, metric in tqdm(list(zip(prompts, answers, metrics)), desc="knowledge neurons", unit="fact",
                                   disable=not progress):
        igs = [integrated_gradients(wb, p, answer, steps=steps, batch_steps=batch_steps, metric=metric) for p in ps]
        refined.append(refine_neurons([select_neurons(g, threshold) for g in igs], share))
        means.append(torch.stack(igs).mean(0))
    kept = drop_shared(refined, groups, relation_share)
    out = []
    for i, (mean, ref, keep) in enumerate(zip(means, refined, kept)):
        dropped = set(ref) - set(keep)
        log.debug("fact %d: %d refined neurons, %d dropped as shared with other facts", i, len(ref), len(dropped))
        out.append(kn_ranking(mean, keep, dropped, k))
    return out


def kn_ranking(mean: Float[Tensor, "n_layers d_mlp"], refined: list[tuple[int, int]], dropped: set[tuple[int, int]],
               k: int) -> list[tuple[int, int, float]]:
    """Refined neurons first (by mean IG), then the rest by mean IG, without ``dropped``; at most k (pure)."""
    first = sorted(refined, key=lambda p: -float(mean[p]))
    skip = set(first) | dropped
    idx = mean.flatten().topk(min(k + len(skip), mean.numel())).indices
    d = mean.shape[1]
    rest = [(int(i) // d, int(i) % d) for i in idx if (int(i) // d, int(i) % d) not in skip]
    return [(l, n, float(mean[l, n])) for l, n in (first + rest)[:k]]
