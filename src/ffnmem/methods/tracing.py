"""Causal tracing (Meng et al. 2022): where does restoring a clean state rescue a corrupted fact?

As ROME's ``experiments/causal_trace.py`` defines it:

1. Clean run: cache the residual stream (``hook_resid_post``), MLP output (``hook_mlp_out``)
   and attention output (``hook_attn_out``) at every (layer, position).
2. Corrupted runs: add Gaussian noise ``N(0, (3σ)²)`` to the subject's token embeddings
   (``noise_at="embed"``), ``n_samples`` draws from a seeded generator. σ is ROME's: the std of
   the *subject tokens'* embeddings over the facts traced (:func:`noise_sigma`, ``source="subject"``;
   ROME embeds each subject alone, ffnmem takes the subject's tokens as they stand in the prompt).
   ``source="matrix"`` (the std of the whole embedding matrix) is the older ffnmem setting.
   ``noise_at="mlp0_out"`` puts the noise on the residual stream *after* block 0 instead
   (``blocks.0.hook_resid_post``, at the subject positions): MLP0 acts as an extended embedding that
   undoes embedding noise (window 1, MLP0 at the subject restores most of the answer), so with
   noise after it the trace shows what the layers above MLP0 store.
3. Restored runs: the corrupted run with one clean state put back at (layer, position); for MLP
   and attention a *window* of layers around it, trimmed at the model's edges as ROME does:
   layers ``max(0, l − w//2) … min(L, l − (−w//2)) − 1`` (:func:`window_layers`). Every layer is
   the centre of its own window. ROME's code uses ``w = 10`` for every model it traces (48-layer
   GPT-2 XL, 28-layer GPT-J); :func:`scaled_window` gives the width scaled to depth (6 on 30 layers).
   Kinds ``mlp_w1`` / ``attn_w1`` report window 1 alongside the windowed trace.

Indirect effect ``IE = p_restored(answer) − p_corrupted(answer)``, averaged over noise samples.
The answer ROME traces is the model's own top-1 prediction on facts it knows
(:func:`predicted_token`; the job's default ``target="prediction"``).

Speed (:func:`trace`): what does not change is not recomputed. Restoring a state at position ``t``
leaves every position before ``t`` equal to the corrupted run at every layer (the model is causal),
so a pass over cells at positions ``≥ p0`` runs only the suffix ``tokens[p0:]``, against the
corrupted run's keys and values of the positions before (:mod:`ffnmem.methods.prefix_cache`; models
where that cache does not run fall back to whole prompts). Within a pass, the cells' windows start
at layer ``lo`` or above: the pass runs the ``n_samples`` corrupted rows up to ``lo`` once and only
then expands to cells × samples rows (:func:`restore_from`). :func:`plan_chunks` cuts the cells,
sorted by position and first restored layer, into such passes of at most ``max_rows`` rows, on the
model's device: the same code on CPU and GPU. Cells at positions before the subject are not run:
the noise starts at the subject, so a clean state there *is* the corrupted state and the effect is
exactly 0. :func:`trace_one_cell_per_forward` is the reference (one full forward per cell) the
tests and ``bench/tracing.py`` compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import EMBED, hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods.interventions import AnswerProb, Noise, Restore
from ffnmem.methods.prefix_cache import (
    PrefixKV,
    cache_kwargs,
    last_logits_kwargs,
    prefix_cache_supported,
    run_keeping_kv,
)

# traced kind -> (hook kind (core.hooks), fixed window or None for the trace's window)
TRACED = {"resid": ("resid_post", 1), "mlp": ("out", None), "attn": ("attn_out", None),
          "mlp_w1": ("out", 1), "attn_w1": ("attn_out", 1)}
TRACED_HOOKS = {k: h for k, (h, _) in TRACED.items()}
ALIGNED_POSITIONS = ("first_subject", "middle_subject", "last_subject", "first_after", "last")
NOISE_SITES = {"embed": EMBED, "mlp0_out": hook_name("resid_post", 0)}
ROME_WINDOW, ROME_LAYERS = 10, 48  # ROME's window on GPT-2 XL's 48 layers


@dataclass(frozen=True)
class Trace:
    """One fact traced: ``effects[kind]`` is ``[n_layers, pos]`` of restored p(answer) − p_corrupted."""

    tokens: list[str]
    subject: tuple[int, int]
    p_clean: float
    p_corrupt: float
    effects: dict[str, Float[Tensor, "n_layers pos"]]
    window: int

    @classmethod
    def stored(cls, row, effects: dict[str, Tensor], window: int) -> Trace:
        """The trace of one stored ``facts`` row (``tokens``, ``subject_start``/``_end``, ``p_clean``,
        ``p_corrupt``) with its effect tensors, as a ``causal_trace`` Result keeps them."""
        return cls(tokens=list(row["tokens"]), subject=(int(row["subject_start"]), int(row["subject_end"])),
                   effects=effects, p_clean=float(row["p_clean"]), p_corrupt=float(row["p_corrupt"]), window=window)


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """Layers restored for a window centred on ``layer``, trimmed at the model's edges as ROME's
    ``trace_important_window``: ``max(0, l − w//2) .. min(L, l − (−w//2))`` (end exclusive)."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def scaled_window(n_layers: int) -> int:
    """ROME's window scaled to depth: 10 of GPT-2 XL's 48 layers, i.e. ``round(10·L/48)`` (≥ 1)."""
    return max(1, round(ROME_WINDOW * n_layers / ROME_LAYERS))


def kind_window(kind: str, window: int) -> int:
    """The window a traced kind restores: 1 for ``resid`` and the ``_w1`` kinds, else ``window``."""
    return TRACED[kind][1] or window


def noise_sigma(wb: Workbench, prompts: list[Tensor], spans: list[tuple[int, int]], *, noise_at: str = "embed",
                source: str = "subject") -> float:
    """σ of the tracing noise. ``subject`` (ROME): the std of all entries of the subject tokens'
    activations at the noised site (``embed``: their token embeddings) over the facts given
    (``prompts``: token ids ``[1, pos]``; ``spans``: their subjects). ``matrix``: the std of the
    whole embedding matrix (ffnmem's earlier setting; ``noise_at="embed"`` only)."""
    _check_noise_at(noise_at)
    if source == "matrix":
        if noise_at != "embed":
            raise BadInput("noise sigma 'matrix' is the embedding matrix's std: use it with noise_at='embed'")
        return float(wb.bridge.W_E.detach().float().std())
    if source != "subject":
        raise BadInput(f"unknown noise sigma {source!r}; choose subject or matrix")
    if not prompts:
        raise BadInput("no facts to take the subject noise level from")
    site, acts = NOISE_SITES[noise_at], []
    with torch.inference_mode():
        for tokens, (s0, s1) in zip(prompts, spans):
            if noise_at == "embed":  # the embeddings alone: no forward pass needed
                acts.append(wb.bridge.W_E[tokens[0, s0:s1]].float())
            else:
                _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n == site)
                acts.append(cache[site][0, s0:s1].float())
    return float(torch.cat(acts).std())


def _check_noise_at(noise_at: str) -> None:
    if noise_at not in NOISE_SITES:
        raise BadInput(f"unknown noise site {noise_at!r}; choose from {', '.join(NOISE_SITES)}")


def subject_noise(wb: Workbench, span: tuple[int, int], n_samples: int, seed: int, sigma: float,
                  scale: float = 3.0) -> Float[Tensor, "n_samples subj d_model"]:
    """Seeded noise ``scale·σ·N(0, 1)`` for the subject positions."""
    g = torch.Generator().manual_seed(seed)
    return scale * sigma * torch.randn(n_samples, span[1] - span[0], wb.d_model, generator=g)


def _probs(wb: Workbench, tokens: Tensor, answer: int, hooks: list, rows: int | None = None,
           cache=None) -> Tensor:
    """p(answer) per output row (``rows``: when a hook expands the batch, the rows it ends with;
    ``cache``: the keys and values of the positions before ``tokens``)."""
    rows = tokens.shape[0] if rows is None else rows
    kwargs = last_logits_kwargs(wb) | ({} if cache is None else cache_kwargs(cache))
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=list(hooks)):
        logits = wb.bridge(tokens.to(wb.device), **kwargs)
    return AnswerProb()(logits[:, -1], torch.full((rows,), answer, device=logits.device)).cpu()


def restore_batch(wb: Workbench, tokens: Tensor, answer: int, span: tuple[int, int], noise: Tensor,
                  clean: dict[int, Tensor], cells: list[tuple[int, int]], kind: str, window: int,
                  noise_at: str = "embed") -> Tensor:
    """Mean restored p(answer) for each (layer, pos) cell, all cells × samples in one forward.

    The reference path: every row runs the whole model (see :func:`restore_from`)."""
    n, T = noise.shape[0], tokens.shape[1]
    rows = len(cells) * n
    hooks = [(NOISE_SITES[noise_at], Noise(noise, span))] + _restore_hooks(cells, n, T, kind, window, clean,
                                                                           wb.n_layers)
    p = _probs(wb, tokens.expand(rows, -1), answer, hooks)
    return p.reshape(len(cells), n).mean(1)


def _restore_hooks(cells, n: int, T: int, kind: str, window: int, clean: dict[int, Tensor], L: int) -> list:
    rows = len(cells) * n
    masks: dict[int, Tensor] = {}
    for c, (layer, pos) in enumerate(cells):
        for l in window_layers(layer, window, L):
            masks.setdefault(l, torch.zeros(rows, T, dtype=torch.bool))[c * n: (c + 1) * n, pos] = True
    return [(hook_name(TRACED_HOOKS[kind], l), Restore(clean[l], m)) for l, m in sorted(masks.items())]


@dataclass(frozen=True)
class _Expand:
    """Repeat the batch ``copies`` times: below this hook the forward runs the ``n`` corrupted rows
    once, above it one copy per restored cell (row ``c·n + s``: cell ``c``, noise sample ``s``)."""

    copies: int

    def __call__(self, act: Tensor, hook=None) -> Tensor:
        return act.repeat(self.copies, *([1] * (act.dim() - 1)))


def restore_from(wb: Workbench, tokens: Tensor, answer: int, span: tuple[int, int], noise: Tensor,
                 clean: dict[int, Tensor], cells: list[tuple[int, int]], kind: str, window: int,
                 noise_at: str = "embed", lo: int | None = None, prefix: PrefixKV | None = None) -> Tensor:
    """:func:`restore_batch` reusing the corrupted run below layer ``lo`` (default: the first layer
    any of the cells' windows restores): the forward runs the ``n`` noise samples up to ``lo`` and
    expands to cells × samples rows only there (``hook_resid_pre`` of ``lo``, or its
    ``hook_resid_post`` for the residual stream), so the layers below cost ``n`` rows, not ``cells·n``.
    ``prefix`` (the corrupted run's keys and values, :func:`corrupted_run`): run only the positions
    from the cells' first one on, against the cached positions before it."""
    n, T, L = noise.shape[0], tokens.shape[1], wb.n_layers
    first = min(window_layers(l, window, L).start for l, _ in cells)
    lo = first if lo is None else lo
    if lo > first:
        raise BadInput(f"restore_from: a window starts at layer {first}, below the expansion layer {lo}")
    p0 = 0 if prefix is None else min(t for _, t in cells)
    at = hook_name("resid_post", lo) if kind == "resid" else hook_name("resid_pre", lo)
    # The forward starts from one row and becomes the n samples at block 0's input: the attention
    # mask and position tables the model builds before its blocks then have batch 1 and broadcast
    # over any rows. Embedding noise is added there: block 0's input is the token embedding (plus
    # additive position embeddings), so this is the same sum (Gemma-style embedding scaling would
    # break it). Order matters where hooks share a point: expand, noise, expand to cells, restore.
    site = hook_name("resid_pre", 0) if noise_at == "embed" else NOISE_SITES[noise_at]
    hooks = [(hook_name("resid_pre", 0), _Expand(n))]
    if p0 < span[1]:  # the suffix still holds subject positions: they carry the same noise
        hooks.append((site, Noise(noise[:, max(0, p0 - span[0]):], (max(0, span[0] - p0), span[1] - p0))))
    hooks.append((at, _Expand(len(cells))))
    hooks += _restore_hooks([(l, t - p0) for l, t in cells], n, T - p0, kind, window,
                            {l: c[:, p0:] for l, c in clean.items()}, L)
    # the cache's rows follow the hidden states': n below the expansion, cells·n from the first
    # block whose attention runs after it
    cache = None if p0 == 0 else prefix.cache(p0, lo + (kind == "resid"), len(cells))
    p = _probs(wb, tokens[:1, p0:], answer, hooks, rows=len(cells) * n, cache=cache)
    return p.reshape(len(cells), n).mean(1)


def corrupted_run(wb: Workbench, tokens: Tensor, answer: int, span: tuple[int, int], noise: Tensor,
                  noise_at: str = "embed", keep_kv: bool = True) -> tuple[float, PrefixKV | None]:
    """Mean p(answer) of the corrupted run (``n`` noise rows) and, with ``keep_kv`` where the model
    can run a suffix against them (:func:`~ffnmem.methods.prefix_cache.prefix_cache_supported`),
    its keys and values; else None."""
    hooks = [(NOISE_SITES[noise_at], Noise(noise, span))]
    rows = tokens.expand(noise.shape[0], -1)
    if not (keep_kv and prefix_cache_supported(wb)):
        return float(_probs(wb, rows, answer, hooks).mean()), None
    logits, kv = run_keeping_kv(wb, rows, hooks, **last_logits_kwargs(wb))
    p = AnswerProb()(logits[:, -1], torch.full((rows.shape[0],), answer, device=logits.device))
    return float(p.mean()), kv


FORWARD_COST = 256.0  # fixed cost of one forward pass, in row·layer·token units (measured: bench/tracing.py)


def plan_chunks(cells: list[tuple[int, int]], window: int, n_layers: int, n_samples: int, n_tokens: int,
                max_cells: int, forward_cost: float = FORWARD_COST,
                prefix: bool = True) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Split cells into forward passes ``(expansion layer lo, first position p0, cells)`` of at most
    ``max_cells`` cells.

    A pass runs positions ``p0 …`` (``p0 = 0`` without ``prefix`` reuse) of ``n_samples`` rows up to
    ``lo`` and of cells × ``n_samples`` rows above, costing ``forward_cost + n·(T − p0)·(lo + cells·(L − lo))``
    row·layer·token units. Cells sorted by position, then by their window's first layer, are cut
    into consecutive passes by dynamic programming on that cost. ``forward_cost = 0`` gives one pass
    per (position, first layer) (most reuse); a large one merges into few passes (least per-pass
    overhead)."""
    start = lambda c: window_layers(c[0], window, n_layers).start
    order = sorted(cells, key=lambda c: (c[1] if prefix else 0, start(c), c))
    starts, firsts = [start(c) for c in order], [c[1] if prefix else 0 for c in order]
    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        lo = n_layers
        for i in range(j - 1, max(0, j - max_cells) - 1, -1):  # cells i..j-1 in one pass
            lo = min(lo, starts[i])
            rows_tokens = n_samples * (n_tokens - firsts[i])  # firsts[i]: the pass's first position
            cost = best[i] + forward_cost + rows_tokens * (lo + (j - i) * (n_layers - lo))
            if cost < best[j]:
                best[j], cut[j] = cost, i
    out, j = [], len(order)
    while j:
        chunk = order[cut[j]: j]
        out.append((min(starts[cut[j]: j]), firsts[cut[j]], chunk))
        j = cut[j]
    return out[::-1]


def _clean_cache(wb: Workbench, tokens: Tensor, kinds) -> tuple:
    names = {hook_name(TRACED_HOOKS[k], l) for k in kinds for l in range(wb.n_layers)}
    with torch.inference_mode():
        return wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)


def trace(wb: Workbench, prompt: str, answer: int, span: tuple[int, int], *, kinds=("resid", "mlp", "attn"),
          n_samples: int = 10, window: int = ROME_WINDOW, seed: int = 0, max_rows: int = 256,
          noise_scale: float = 3.0, sigma: float | None = None, noise_at: str = "embed",
          layers: list[int] | None = None, positions: list[int] | None = None,
          forward_cost: float = FORWARD_COST, reuse_prefix: bool = True) -> Trace:
    """Trace one fact over every (layer, position) for each kind (``resid`` and ``*_w1`` use window 1).

    ``sigma``: the noise level (None: ROME's, from this fact's own subject tokens; the job passes
    the level of the whole fact set, as ROME does). ``layers`` and ``positions`` (token indices;
    negative ones count from the end) restrict the traced cells (the others are NaN); windows
    still span neighbouring layers. ``forward_cost``: see :func:`plan_chunks`; ``reuse_prefix``:
    run only the positions from each pass's first cell on, where the model allows (speed only).
    """
    unknown = [k for k in kinds if k not in TRACED]
    if unknown:
        raise BadInput(f"unknown trace kind {unknown[0]!r}; choose from {', '.join(TRACED)}")
    _check_noise_at(noise_at)
    tokens = wb.to_tokens(prompt)
    T, L = tokens.shape[1], wb.n_layers
    logits, cache = _clean_cache(wb, tokens, kinds)
    p_clean = float(logits[0, -1].float().softmax(-1)[answer])
    if sigma is None:
        sigma = noise_sigma(wb, [tokens], [span], noise_at=noise_at)
    noise = subject_noise(wb, span, n_samples, seed, sigma, noise_scale)
    p_corrupt, prefix = corrupted_run(wb, tokens, answer, span, noise, noise_at, reuse_prefix)
    layers = list(range(L)) if layers is None else sorted({wb.check_layer(l) for l in layers})
    cols = list(range(T)) if positions is None else sorted({_check_position(t, T) for t in positions})
    per_chunk = max(1, max_rows // n_samples)
    effects = {}
    for kind in kinds:
        clean = {l: cache[hook_name(TRACED_HOOKS[kind], l)] for l in range(L)}
        # before the subject the clean state is the corrupted one: the effect is 0, nothing to run
        w = kind_window(kind, window)
        eff = torch.full((L, T), float("nan"))
        for l in layers:
            eff[l, [t for t in cols if t < span[0]]] = 0.0
        cells = [(l, t) for l in layers for t in cols if t >= span[0]]
        for lo, _, chunk in plan_chunks(cells, w, L, n_samples, T, per_chunk, forward_cost, prefix is not None):
            got = restore_from(wb, tokens, answer, span, noise, clean, chunk, kind, w, noise_at, lo, prefix) - p_corrupt
            eff[[c[0] for c in chunk], [c[1] for c in chunk]] = got.float()
        effects[kind] = eff
    return Trace(tokens=wb.str_tokens(tokens[0]), subject=span, p_clean=p_clean, p_corrupt=p_corrupt,
                 effects=effects, window=window)


def _check_position(t: int, n_tokens: int) -> int:
    if not -n_tokens <= t < n_tokens:
        raise BadInput(f"position {t} is outside the prompt's {n_tokens} tokens")
    return t % n_tokens


def trace_one_cell_per_forward(wb: Workbench, prompt: str, answer: int, span: tuple[int, int], *,
                               kind: str = "resid", n_samples: int = 10, window: int = 1, seed: int = 0,
                               noise_scale: float = 3.0, sigma: float | None = None,
                               noise_at: str = "embed") -> Float[Tensor, "n_layers pos"]:
    """Reference implementation (for benchmarks and tests): one forward pass per cell, every cell run."""
    tokens = wb.to_tokens(prompt)
    _, cache = _clean_cache(wb, tokens, [kind])
    if sigma is None:
        sigma = noise_sigma(wb, [tokens], [span], noise_at=noise_at)
    noise = subject_noise(wb, span, n_samples, seed, sigma, noise_scale)
    clean = {l: cache[hook_name(TRACED_HOOKS[kind], l)] for l in range(wb.n_layers)}
    p_corrupt, _ = corrupted_run(wb, tokens, answer, span, noise, noise_at, keep_kv=False)
    out = torch.zeros(wb.n_layers, tokens.shape[1])
    for l in range(wb.n_layers):
        for t in range(tokens.shape[1]):
            out[l, t] = restore_batch(wb, tokens, answer, span, noise, clean, [(l, t)], kind,
                                      kind_window(kind, window), noise_at)[0] - p_corrupt
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


def site_peak(effect: Float[Tensor, " n_layers"]) -> tuple[float, int]:
    """(max, layer) of one position's effect over layers. With ROME's trimmed windows every layer is
    the centre of its own window, so the argmax layer is the peak (NaN cells never win)."""
    e = torch.nan_to_num(effect, nan=float("-inf"))
    l = int(e.argmax())
    return float(e[l]), l


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
