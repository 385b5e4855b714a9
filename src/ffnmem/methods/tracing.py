"""Causal tracing (Meng et al. 2022): where does restoring a clean state rescue a corrupted fact?

1. Clean run: cache the residual stream (``hook_resid_post``), MLP output (``hook_mlp_out``)
   and attention output (``hook_attn_out``) at every (layer, position).
2. Corrupted runs: add Gaussian noise ``N(0, (3σ)²)`` to the subject's token embeddings
   (``hook_embed``; σ the standard deviation of the embedding matrix's entries), ``n_samples``
   draws from a seeded generator.
3. Restored runs: the corrupted run with one clean state put back at (layer, position); for MLP
   and attention a *window* of ``window`` layers centred on that layer is restored.

Indirect effect ``IE = p_restored(answer) − p_corrupted(answer)``, averaged over noise samples.
All cells × samples of a chunk run in one batched forward pass (``max_rows`` rows at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import EMBED, hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods.interventions import AnswerProb, Noise, Restore, run_metric

TRACED_HOOKS = {"resid": "resid_post", "mlp": "out", "attn": "attn_out"}  # traced kind -> hook kind (core.hooks)
ALIGNED_POSITIONS = ("first_subject", "middle_subject", "last_subject", "first_after", "last")


@dataclass(frozen=True)
class Trace:
    """One fact traced: ``effects[kind]`` is ``[n_layers, pos]`` of restored p(answer) − p_corrupted."""

    tokens: list[str]
    subject: tuple[int, int]
    p_clean: float
    p_corrupt: float
    effects: dict[str, Float[Tensor, "n_layers pos"]]
    window: int


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """Layers restored for a window centred on ``layer`` (clipped to the model)."""
    lo = max(0, min(layer - window // 2, n_layers - window))
    return range(lo, min(n_layers, lo + window))


def subject_noise(wb: Workbench, span: tuple[int, int], n_samples: int, seed: int,
                  scale: float = 3.0) -> Float[Tensor, "n_samples subj d_model"]:
    """Seeded noise ``scale·σ·N(0, 1)`` for the subject positions (σ: std of the embedding matrix)."""
    sigma = float(wb.bridge.W_E.detach().float().std())
    g = torch.Generator().manual_seed(seed)
    return scale * sigma * torch.randn(n_samples, span[1] - span[0], wb.d_model, generator=g)


def _probs(wb: Workbench, tokens: Tensor, answer: int, hooks: list) -> Tensor:
    return run_metric(wb, tokens, torch.full((tokens.shape[0],), answer), AnswerProb(), hooks)


def restore_batch(wb: Workbench, tokens: Tensor, answer: int, span: tuple[int, int], noise: Tensor,
                  clean: dict[int, Tensor], cells: list[tuple[int, int]], kind: str, window: int) -> Tensor:
    """Mean restored p(answer) for each (layer, pos) cell, all cells × samples in one forward."""
    n, T = noise.shape[0], tokens.shape[1]
    rows = len(cells) * n
    masks: dict[int, Tensor] = {}
    for c, (layer, pos) in enumerate(cells):
        for l in (window_layers(layer, window, wb.n_layers) if window > 1 else [layer]):
            masks.setdefault(l, torch.zeros(rows, T, dtype=torch.bool))[c * n: (c + 1) * n, pos] = True
    hooks = [(EMBED, Noise(noise, span))]
    hooks += [(hook_name(TRACED_HOOKS[kind], l), Restore(clean[l], m)) for l, m in masks.items()]
    p = _probs(wb, tokens.expand(rows, -1), answer, hooks)
    return p.reshape(len(cells), n).mean(1)


def trace(wb: Workbench, prompt: str, answer: int, span: tuple[int, int], *, kinds=("resid", "mlp", "attn"),
          n_samples: int = 10, window: int = 10, seed: int = 0, max_rows: int = 256,
          noise_scale: float = 3.0, layers: list[int] | None = None, positions: list[int] | None = None) -> Trace:
    """Trace one fact over every (layer, position) for each kind (``resid`` uses window 1).

    ``layers`` and ``positions`` (token indices; negative ones count from the end) restrict the
    traced cells (the others are NaN); windows still span neighbouring layers. Layers whose
    clipped windows restore the same layers are one measurement: it is run once and copied.
    """
    unknown = [k for k in kinds if k not in TRACED_HOOKS]
    if unknown:
        raise BadInput(f"unknown trace kind {unknown[0]!r}; choose from {', '.join(TRACED_HOOKS)}")
    tokens = wb.to_tokens(prompt)
    T, L = tokens.shape[1], wb.n_layers
    names = {hook_name(TRACED_HOOKS[k], l) for k in kinds for l in range(L)}
    with torch.inference_mode():
        logits, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    p_clean = float(logits[0, -1].float().softmax(-1)[answer])
    noise = subject_noise(wb, span, n_samples, seed, noise_scale)
    p_corrupt = float(_probs(wb, tokens.expand(n_samples, -1), answer,
                             [(EMBED, Noise(noise, span))]).mean())
    layers = list(range(L)) if layers is None else sorted({wb.check_layer(l) for l in layers})
    cols = list(range(T)) if positions is None else sorted({_check_position(t, T) for t in positions})
    per_chunk = max(1, max_rows // n_samples)
    effects = {}
    for kind in kinds:
        clean = {l: cache[hook_name(TRACED_HOOKS[kind], l)] for l in range(L)}
        w = 1 if kind == "resid" else window
        # the first layer of each distinct window stands for the layers that restore the same window
        first = {}
        for l in layers:
            first.setdefault(tuple(window_layers(l, w, L)) if w > 1 else (l,), l)
        cells = [(l, t) for l in first.values() for t in cols]
        ps = [restore_batch(wb, tokens, answer, span, noise, clean, cells[s: s + per_chunk], kind, w)
              for s in range(0, len(cells), per_chunk)]
        got = dict(zip(cells, (torch.cat(ps) - p_corrupt).tolist()))
        eff = torch.full((L, T), float("nan"))
        for l in layers:
            lead = first[tuple(window_layers(l, w, L)) if w > 1 else (l,)]
            eff[l, cols] = torch.tensor([got[(lead, t)] for t in cols])
        effects[kind] = eff
    return Trace(tokens=wb.str_tokens(tokens[0]), subject=span, p_clean=p_clean, p_corrupt=p_corrupt,
                 effects=effects, window=window)


def _check_position(t: int, n_tokens: int) -> int:
    if not -n_tokens <= t < n_tokens:
        raise BadInput(f"position {t} is outside the prompt's {n_tokens} tokens")
    return t % n_tokens


def trace_one_cell_per_forward(wb: Workbench, prompt: str, answer: int, span: tuple[int, int], *,
                               kind: str = "resid", n_samples: int = 10, window: int = 1, seed: int = 0,
                               noise_scale: float = 3.0) -> Float[Tensor, "n_layers pos"]:
    """Reference implementation (for benchmarks and tests): one forward pass per cell."""
    tokens = wb.to_tokens(prompt)
    names = {hook_name(TRACED_HOOKS[kind], l) for l in range(wb.n_layers)}
    with torch.inference_mode():
        _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    noise = subject_noise(wb, span, n_samples, seed, noise_scale)
    clean = {l: cache[hook_name(TRACED_HOOKS[kind], l)] for l in range(wb.n_layers)}
    p_corrupt = float(_probs(wb, tokens.expand(n_samples, -1), answer,
                             [(EMBED, Noise(noise, span))]).mean())
    out = torch.zeros(wb.n_layers, tokens.shape[1])
    for l in range(wb.n_layers):
        for t in range(tokens.shape[1]):
            out[l, t] = restore_batch(wb, tokens, answer, span, noise, clean, [(l, t)], kind, window)[0] - p_corrupt
    return out


def aligned_columns(span: tuple[int, int], n_tokens: int, positions) -> list[int]:
    """Token indices that the aligned ``positions`` (names of :data:`ALIGNED_POSITIONS`) read."""
    s0, s1 = span
    cols = {"first_subject": [s0], "middle_subject": list(range(s0 + 1, s1 - 1)), "last_subject": [s1 - 1],
            "first_after": [s1] if s1 < n_tokens else [], "last": [n_tokens - 1]}
    unknown = [p for p in positions if p not in cols]
    if unknown:
        raise BadInput(f"unknown trace position {unknown[0]!r}; choose from {', '.join(ALIGNED_POSITIONS)}")
    return sorted({t for p in positions for t in cols[p]})


def predicted_token(wb: Workbench, prompt: str) -> int:
    """The model's own top-1 next token after ``prompt`` (what ROME traces on known facts)."""
    with torch.inference_mode():
        return int(wb.bridge(wb.to_tokens(prompt))[0, -1].argmax())


def site_peak(effect: Float[Tensor, " n_layers"], window: int) -> tuple[float, int]:
    """(max, layer) of one position's effect over layers; the layer is the centre of the argmax
    cell's restored window, so clipped windows at the model's edges (which restore the same layers
    as the first unclipped one) are labelled by that window, not by the lowest tied layer."""
    e = torch.nan_to_num(effect, nan=float("-inf"))
    l = int(e.argmax())
    w = window_layers(l, window, effect.shape[0]) if window > 1 else range(l, l + 1)
    return float(e[l]), w.start + (w.stop - w.start) // 2


def aligned(effect: Float[Tensor, "n_layers pos"], span: tuple[int, int]) -> Float[Tensor, "n_layers 5"]:
    """Columns: first / middle (mean; NaN if none) / last subject token, first token after, last token."""
    s0, s1 = span
    T = effect.shape[1]
    middle = effect[:, s0 + 1: s1 - 1].mean(1) if s1 - s0 > 2 else torch.full((effect.shape[0],), float("nan"))
    after = effect[:, s1] if s1 < T else torch.full((effect.shape[0],), float("nan"))
    return torch.stack([effect[:, s0], middle, effect[:, s1 - 1], after, effect[:, T - 1]], 1)


def average_aligned(traces: list[Trace]) -> dict[str, Float[Tensor, "n_layers 5"]]:
    """Mean aligned indirect effect over facts, per kind (NaN-aware)."""
    if not traces:
        raise BadInput("no traces to average: give at least one fact")
    return {k: torch.stack([aligned(t.effects[k], t.subject) for t in traces]).nanmean(0) for k in traces[0].effects}


def peak(avg: Float[Tensor, "n_layers 5"]) -> tuple[int, str, float]:
    """(layer, aligned position, value) of the largest mean indirect effect."""
    flat = torch.nan_to_num(avg, nan=float("-inf")).flatten()
    i = int(flat.argmax())
    return i // avg.shape[1], ALIGNED_POSITIONS[i % avg.shape[1]], float(flat[i])
