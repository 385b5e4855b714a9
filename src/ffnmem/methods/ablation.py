"""Ablation of FFN memories: zero, mean or resample the coefficients of chosen neurons or layers.

A neuron set is a list of ``(layer, neuron)`` pairs (:func:`whole_layers` for entire layers). The
coefficients ``m_i`` at ``blocks.{l}.mlp.hook_post`` are replaced at every position or only the
last one:

* ``zero``: ``m_i ← 0``;
* ``mean``: ``m_i ← E[m_i]`` over a reference token set (BOS positions left out);
* ``resample``: ``m ← m'`` from a random (seeded) reference token's coefficients;
* ``scale``: ``m_i ← factor · m_i`` (amplification, used by knowledge-neuron experiments).

Rows of a batch may ablate different sets (a boolean mask per row), so "clean", "top-k ablated"
and "random-k ablated" run in one forward pass.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods.attribution import direct_effects
from ffnmem.methods.interventions import AnswerProb, run_metric, unit_intervention

MODES = ("zero", "mean", "resample", "scale")


def whole_layers(wb: Workbench, layers: list[int]) -> list[tuple[int, int]]:
    """Every neuron of ``layers`` as (layer, neuron) pairs."""
    return [(wb.check_layer(l), i) for l in layers for i in range(wb.d_mlp)]


def masks_for(wb: Workbench, sets: list[list[tuple[int, int]]]) -> dict[int, Bool[Tensor, "batch d_mlp"]]:
    """One boolean mask per layer touched, one row per neuron set."""
    masks: dict[int, Tensor] = defaultdict(lambda: torch.zeros(len(sets), wb.d_mlp, dtype=torch.bool))
    for row, pairs in enumerate(sets):
        for layer, neuron in pairs:
            layer = wb.check_layer(int(layer))
            if not 0 <= int(neuron) < wb.d_mlp:
                raise BadInput(f"neuron {neuron} is out of range: layers have neurons 0..{wb.d_mlp - 1}")
            masks[layer][row, int(neuron)] = True
    return dict(masks)


@torch.inference_mode()
def reference_coefficients(wb: Workbench, tokens: Tensor, layers: list[int], *, batch_size: int = 8,
                           max_rows: int = 4096, seed: int = 0) -> dict[int, Float[Tensor, "n d_mlp"]]:
    """Coefficients at up to ``max_rows`` reference tokens per layer (BOS positions left out)."""
    names = {hook_name("post", l): l for l in layers}
    rows: dict[int, list[Tensor]] = defaultdict(list)
    for s in range(0, tokens.shape[0], batch_size):
        _, cache = wb.bridge.run_with_cache(tokens[s: s + batch_size].to(wb.device),
                                            names_filter=lambda n: n in names)
        for name, l in names.items():
            rows[l].append(cache[name][:, 1:].reshape(-1, wb.d_mlp).float().cpu())
    g = torch.Generator().manual_seed(seed)
    out = {}
    for l, rs in rows.items():
        allrows = torch.cat(rs)
        keep = torch.randperm(len(allrows), generator=g)[:max_rows]
        out[l] = allrows[keep]
    return out


def make_hooks(wb: Workbench, masks: dict[int, Tensor], mode: str, *, reference: dict[int, Tensor] | None = None,
               positions: str = "all", factor: float = 0.0, seed: int = 0) -> list[tuple[str, object]]:
    """Hooks that ablate ``masks`` (one row per batch row, or one row for the whole batch), as
    :mod:`~ffnmem.methods.interventions` objects; resampling draws from one generator seeded ``seed``."""
    if mode not in MODES:
        raise BadInput(f"unknown ablation mode {mode!r}; choose from {', '.join(MODES)}")
    if mode in ("mean", "resample") and (reference is None or not set(masks) <= set(reference)):
        raise BadInput(f"{mode} ablation needs reference coefficients for layers {sorted(masks)}")
    g = torch.Generator().manual_seed(seed)
    return [(hook_name("post", layer), unit_intervention(mode, mask, positions=positions, factor=factor,
                                                         reference=None if reference is None else reference[layer],
                                                         generator=g))
            for layer, mask in masks.items()]


def answer_probs(wb: Workbench, tokens: Tensor, answers: Tensor, hooks=()) -> Float[Tensor, " batch"]:
    """p(answer) at the last position of each row, with ``hooks`` applied."""
    return run_metric(wb, tokens, answers, AnswerProb(), hooks)


def random_neurons(wb: Workbench, k: int, generator: torch.Generator,
                   layers: list[int] | None = None) -> list[tuple[int, int]]:
    """``k`` distinct (layer, neuron) pairs drawn uniformly from ``layers`` (default: all)."""
    layers = list(range(wb.n_layers)) if layers is None else layers
    flat = torch.randperm(len(layers) * wb.d_mlp, generator=generator)[:k]
    return [(layers[int(i) // wb.d_mlp], int(i) % wb.d_mlp) for i in flat]


def top_vs_random(wb: Workbench, prompts: list[str], answers: list[int], *, k: int = 20, mode: str = "zero",
                  positions: str = "last", seed: int = 0, reference: dict[int, Tensor] | None = None) -> list[dict]:
    """Ablate each prompt's top-``k`` DLA neurons vs ``k`` random ones; p(answer) before and after.

    Top neurons: the largest direct effects toward the answer (:func:`ffnmem.methods.attribution.direct_effects`).
    Random sets: uniform over all layers, from ``torch.Generator().manual_seed(seed)``.
    """

    fx = direct_effects(wb, prompts, answers)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b, prompt in enumerate(prompts):
        top = [(l, n) for l, n, _ in fx.top(b, k)]
        rand = random_neurons(wb, k, g)
        masks = masks_for(wb, [[], top, rand])
        tokens = wb.to_tokens(prompt).expand(3, -1)
        hooks = make_hooks(wb, masks, mode, reference=reference, positions=positions, seed=seed + b)
        p = answer_probs(wb, tokens, torch.tensor([answers[b]] * 3), hooks)
        rows.append({"prompt": prompt, "p_clean": float(p[0]), "p_top": float(p[1]), "p_random": float(p[2])})
    return rows


def summarise_drops(rows: list[dict]) -> dict:
    """Mean relative drop in p(answer) for top and random sets, and their ratio (the ablation factor)."""
    drop_top = sum((r["p_clean"] - r["p_top"]) / r["p_clean"] for r in rows) / len(rows)
    drop_rand = sum((r["p_clean"] - r["p_random"]) / r["p_clean"] for r in rows) / len(rows)
    return {"drop_top": drop_top, "drop_random": drop_rand,
            "factor": drop_top / drop_rand if drop_rand > 0 else float("inf")}


def layer_histogram(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """How many neurons of ``pairs`` each layer holds (layers in increasing order)."""
    counts: dict[int, int] = defaultdict(int)
    for layer, _ in pairs:
        counts[int(layer)] += 1
    return dict(sorted(counts.items()))


def layer_matched_random(wb: Workbench, pairs: list[tuple[int, int]],
                         generator: torch.Generator) -> list[tuple[int, int]]:
    """A random neuron set with the layer histogram of ``pairs``, disjoint from ``pairs``.

    A set concentrated in the last layers (as top direct-effect sets are) is compared with random
    neurons *of the same layers*, so the null does not confuse "these neurons" with "late layers".
    """
    taken = {(int(l), int(n)) for l, n in pairs}
    out = []
    for layer, count in layer_histogram(pairs).items():
        free = torch.tensor([i for i in range(wb.d_mlp) if (layer, i) not in taken])
        if len(free) < count:
            raise BadInput(f"layer {layer} has only {len(free)} neurons outside the set; cannot draw {count}")
        out += [(layer, int(free[j])) for j in torch.randperm(len(free), generator=generator)[:count]]
    return out


def derangement(groups: list[str], generator: torch.Generator) -> list[int | None]:
    """For each item, the index of another item of the same group (a seeded random cyclic
    permutation within each group, Sattolo's algorithm: nobody maps to itself); ``None`` for an
    item alone in its group."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out: list[int | None] = [None] * len(groups)
    for idx in members.values():
        if len(idx) < 2:
            continue
        perm = list(idx)
        for i in range(len(perm) - 1, 0, -1):
            j = int(torch.randint(i, (1,), generator=generator))  # j < i: a single cycle, no fixed point
            perm[i], perm[j] = perm[j], perm[i]
        for a, b in zip(idx, perm):
            out[a] = b
    return out


def ablate_sets(wb: Workbench, prompt: str, answer: int, sets: list[list[tuple[int, int]]], mode: str = "zero", *,
                positions: str = "last", reference: dict[int, Tensor] | None = None,
                seed: int = 0) -> Float[Tensor, " rows"]:
    """p(answer) on ``prompt`` clean (row 0) and with each neuron set ablated (rows 1..), in one batch."""
    tokens = wb.to_tokens(prompt).expand(len(sets) + 1, -1)
    hooks = make_hooks(wb, masks_for(wb, [[], *sets]), mode, reference=reference, positions=positions, seed=seed)
    return answer_probs(wb, tokens, torch.tensor([answer] * (len(sets) + 1)), hooks)


def relative_drop(p_clean: float, p: float) -> float:
    """``(p_clean − p) / p_clean``: 1 when ablation removes the answer, 0 when it changes nothing."""
    return (p_clean - p) / p_clean
