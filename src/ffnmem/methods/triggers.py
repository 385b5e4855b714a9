"""Trigger examples per key (Geva et al. 2021): the prefixes that make each FFN memory fire.

For every neuron ``i`` of the chosen layers we keep, over a whole corpus, the ``k`` token positions
with the largest coefficient ``m_i`` (streaming :class:`ffnmem.methods.capture.TopK`, so memory is
``O(k · d_mlp)`` per layer whatever the corpus size) and running activation statistics
(:class:`ffnmem.methods.capture.NeuronStats`: mean, share of tokens with ``m_i > 0``, max).

Ranking, stated: examples are ranked by the **signed** coefficient ``m_i`` (largest first), not by
``|m_i|``. Geva et al. rank by the key activation of a ReLU FFN, which is never negative; a gated
SiLU FFN (Llama, SmolLM2) has ``m = silu(g·x) ⊙ (k·x)``, which can be strongly negative, and then
the memory writes ``-v_i``. Ranking by ``+m`` keeps the sign consistent: at every trigger example the
memory writes ``+v_i``, so the value is read as is in vocabulary space. ``sign=-1`` mines the other
side (ranked by ``-m``; the value must then be read as ``-v_i``, and :func:`mine` records the sign).

Position 0 of each window (BOS, an attention sink with outsized activations) is left out of both
the top-k and the statistics. The next token of a window's last position is unknown (``-1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.methods import capture as cap
from ffnmem.methods.keyvalue import agreement, derangement, value_top_ids
from ffnmem.store.provenance import make_provenance, tokens_hash
from ffnmem.store.results import Result, table_from_rows


@dataclass
class _Signed:
    """Feeds ``sign · m`` to a TopK and the statistics, with position 0 (BOS) masked out."""

    topk: cap.TopK
    stats: cap.NeuronStats
    sign: float = 1.0
    skip_first: bool = True

    def update(self, name: str, acts: Float[Tensor, "batch pos d"], start: int) -> None:
        a = acts.float() * self.sign
        if self.skip_first and a.shape[1] > 1:
            self.stats.update(name, acts[:, 1:], start)
            a = a.clone()
            a[:, 0] = float("-inf")
        else:
            self.stats.update(name, acts, start)
        self.topk.update(name, a, start)


@dataclass(frozen=True)
class Triggers:
    """Top trigger positions per neuron for some layers of one corpus.

    ``values[l]`` / ``index[l]``: ``[k, d_mlp]`` signed coefficients (``sign · m``) and flat token
    indices ``window * pos + position`` into ``tokens``; ``stats[l]``: mean, var, max, frac_active.
    """

    layers: list[int]
    tokens: Int[Tensor, "n pos"]
    values: dict[int, Tensor]
    index: dict[int, Tensor]
    stats: dict[int, dict[str, Tensor]]
    sign: float = 1.0

    @property
    def k(self) -> int:
        return next(iter(self.values.values())).shape[0]

    def trigger_ids(self, layer: int) -> Int[Tensor, "k d_mlp"]:
        """The triggering token at each example."""
        return self.tokens.flatten()[self.index[layer]]

    def next_ids(self, layer: int) -> Int[Tensor, "k d_mlp"]:
        """The token after each example (``-1`` at the end of a window)."""
        return next_tokens(self.tokens, self.index[layer])


def next_tokens(tokens: Int[Tensor, "n pos"], index: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """Token following each flat index in its window, ``-1`` where the window ends."""
    pos = tokens.shape[1]
    at_end = (index % pos) == pos - 1
    nxt = tokens.flatten()[(index + 1).clamp_max(tokens.numel() - 1)]
    return torch.where(at_end, torch.full_like(nxt, -1), nxt)


def mine(wb: Workbench, tokens: Int[Tensor, "n pos"], layers: Sequence[int], *, k: int = 20,
         sign: float = 1.0, batch_size: int = 8, progress: bool | str = "mining triggers") -> Triggers:
    """Top-``k`` trigger examples and activation statistics for every neuron of ``layers``."""
    layers = sorted({wb.check_layer(l) for l in layers})
    if not layers:
        raise BadInput("no layers to mine: name at least one layer")
    if sign not in (1.0, -1.0, 1, -1):
        raise BadInput(f"sign must be +1 or -1, got {sign}")
    if tokens.ndim != 2 or tokens.numel() == 0:
        raise BadInput(f"empty corpus: expected token windows [n, pos], got shape {tuple(tokens.shape)}")
    usable = tokens.shape[0] * max(1, tokens.shape[1] - 1)
    if k < 1 or k > usable:
        raise BadInput(f"k={k} is out of range: the corpus has {usable} usable positions (BOS excluded); "
                       "give a smaller k or more text")
    names = cap.hook_names(wb, ["post"], layers)
    red = _Signed(cap.TopK(k), cap.NeuronStats(), float(sign))
    cap.reduce(wb, tokens, names, [red], batch_size=batch_size, progress=progress)
    top, stats = red.topk.result(), red.stats.result()
    return Triggers(layers=layers, tokens=tokens.cpu(), sign=float(sign),
                    values={l: top[n]["values"] for l, n in zip(layers, names)},
                    index={l: top[n]["index"] for l, n in zip(layers, names)},
                    stats={l: stats[n] for l, n in zip(layers, names)})


def histogram_counts(acts: Float[Tensor, "n d"], bins: int = 24) -> tuple[Tensor, Tensor]:
    """Per column of ``acts``: counts in ``bins`` equal bins over that column's [min, max].

    Returns ``counts [d, bins]`` (int32) and ``edges [d, 2]`` (min, max): a memory's histogram in
    ``bins`` numbers, so every memory of a model fits in a browsable site.
    """
    if bins < 1 or acts.ndim != 2 or acts.shape[0] == 0:
        raise BadInput(f"a histogram needs bins >= 1 and a [n, d] tensor with n > 0, got {bins} and {tuple(acts.shape)}")
    lo, hi = acts.min(0).values, acts.max(0).values
    width = ((hi - lo) / bins).clamp_min(torch.finfo(acts.dtype).tiny)  # a constant column: all in bin 0
    idx = ((acts - lo) / width).floor().long().clamp_(0, bins - 1).T  # (d, n)
    counts = torch.zeros(acts.shape[1], bins, dtype=torch.int32).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.int32))
    return counts, torch.stack([lo, hi], 1)


def coefficient_histograms(wb: Workbench, tokens: Int[Tensor, "n pos"], layers: Sequence[int], *, bins: int = 24,
                           windows: int = 32) -> dict[int, tuple[Tensor, Tensor]]:
    """:func:`histogram_counts` of every memory's coefficient ``m`` in ``layers`` over the first
    ``windows`` windows (BOS excluded), in one forward pass: ``{layer: (counts, edges)}``."""
    out: dict[int, tuple[Tensor, Tensor]] = {}

    def keep(name: str, t: Tensor, start: int) -> None:  # one batch holds every window: reduce at once
        out[int(name.split(".")[1])] = histogram_counts(t[:, 1:].float().cpu().reshape(-1, t.shape[-1]), bins)

    n = min(windows, tokens.shape[0])
    cap.run_hooks(wb, tokens[:n], cap.hook_names(wb, ["post"], layers), keep, batch_size=n, progress=False)
    return out


def piece_table(wb: Workbench, tokens: Tensor) -> dict[int, str]:
    """Decoded text of every distinct token id in ``tokens`` (decoded once each)."""
    return {int(i): wb.decode(int(i)) for i in torch.unique(tokens).tolist()}


def example_rows(wb: Workbench, tr: Triggers, layer: int, neurons: Sequence[int] | None = None, *,
                 context: int = 12, pieces: dict[int, str] | None = None) -> list[dict]:
    """One row per (neuron, rank): coefficient, decoded prefix window, trigger and next token.

    ``context`` tokens before the trigger (within its window, BOS dropped) make the prefix. Text is
    joined from per-token decodes, so a character split across tokens may show as '\\ufffd'.
    """
    pos = tr.tokens.shape[1]
    if context < 0 or context >= pos:
        raise BadInput(f"context window {context} must be between 0 and the window length - 1 ({pos - 1})")
    pieces = pieces if pieces is not None else piece_table(wb, tr.tokens)
    pieces.setdefault(-1, "")
    flat, vals, idx = tr.tokens.flatten().tolist(), tr.values[layer], tr.index[layer]
    nxt = tr.next_ids(layer)
    neurons = range(vals.shape[1]) if neurons is None else neurons
    rows = []
    for n in neurons:
        for r in range(vals.shape[0]):
            i = int(idx[r, n])
            w, p = divmod(i, pos)
            lo = max(w * pos + 1, i - context)
            rows.append({"layer": layer, "neuron": int(n), "rank": r + 1, "coeff": float(vals[r, n]) * tr.sign,
                         "window": w, "pos": p, "context": "".join(pieces[t] for t in flat[lo:i]),
                         "trigger_id": flat[i], "trigger": pieces[flat[i]],
                         "next_id": int(nxt[r, n]), "next": pieces.get(int(nxt[r, n]), "")})
    return rows


def stats_rows(tr: Triggers, layer: int) -> list[dict]:
    s = tr.stats[layer]
    return [{"layer": layer, "neuron": i, "mean": float(s["mean"][i]), "std": float(s["var"][i].sqrt()),
             "frac_active": float(s["frac_active"][i]), "max": float(s["max"][i])}
            for i in range(s["mean"].shape[0])]


def to_result(wb: Workbench, tr: Triggers, *, context: int = 12, corpus: str = "", **meta) -> Result:
    """Triggers as a saved-able :class:`Result`: tables ``examples`` and ``stats``, tensors, provenance."""
    pieces = piece_table(wb, tr.tokens)
    ex, st = [], []
    for l in tr.layers:
        ex.extend(example_rows(wb, tr, l, context=context, pieces=pieces))
        st.extend(stats_rows(tr, l))
    tensors = {"tokens": tr.tokens}
    for l in tr.layers:
        tensors.update({f"L{l}/values": tr.values[l], f"L{l}/index": tr.index[l]})
        tensors.update({f"L{l}/{key}": v for key, v in tr.stats[l].items()})
    prov = make_provenance(wb, data_hash=tokens_hash(tr.tokens), corpus=corpus)
    return Result(kind="triggers", tables={"examples": table_from_rows(ex), "stats": table_from_rows(st)},
                  tensors=tensors, provenance=prov,
                  meta={"layers": tr.layers, "k": tr.k, "sign": tr.sign, "context": context,
                        "ranking": "signed coefficient m (largest sign·m first); BOS position excluded",
                        "n_tokens": tr.tokens.numel(), **meta})


def from_result(res: Result) -> Triggers:
    """Rebuild :class:`Triggers` from a saved result (for agreement, neuron cards)."""
    layers = list(res.meta["layers"])
    t = res.tensors
    return Triggers(layers=layers, tokens=t["tokens"], sign=float(res.meta.get("sign", 1.0)),
                    values={l: t[f"L{l}/values"] for l in layers}, index={l: t[f"L{l}/index"] for l in layers},
                    stats={l: {key: t[f"L{l}/{key}"] for key in ("mean", "var", "max", "frac_active")}
                           for l in layers})


BANDS = (("lower", 0.0, 1 / 3), ("middle", 1 / 3, 2 / 3), ("upper", 2 / 3, 1.0))


def band_of(layer: int, n_layers: int) -> str:
    """The third of the model's layers that ``layer`` lies in: lower, middle or upper."""
    return next(name for name, lo, hi in BANDS if lo * n_layers <= layer < hi * n_layers or hi == 1.0)


@dataclass(frozen=True)
class Agreement:
    """Per layer: share of keys whose value's top-``value_k`` tokens contain the next token of one
    of their top-``n_triggers`` examples, and the same share for shuffled key-value pairings."""

    layers: list[int]
    observed: list[float]
    baseline: list[float]
    baseline_std: list[float]
    value_k: int
    n_triggers: int
    # per layer, per neuron: 1.0 if the key's triggers agree with its value, and the mean of the
    # same over the shuffled pairings (value i with key perm[i]): the items of the paired claim test
    neuron_observed: list[Tensor] = field(default_factory=list, compare=False)
    neuron_baseline: list[Tensor] = field(default_factory=list, compare=False)

    def rows(self) -> list[dict]:
        return [{"layer": l, "agreement": o, "baseline": b, "baseline_std": s,
                 "value_k": self.value_k, "n_triggers": self.n_triggers}
                for l, o, b, s in zip(self.layers, self.observed, self.baseline, self.baseline_std)]

    def neuron_rows(self, n_layers: int) -> list[dict]:
        """One row per (layer, neuron): ``agreement`` (0/1), ``shuffled`` (mean over shuffles), ``band``."""
        return [{"layer": l, "neuron": n, "band": band_of(l, n_layers), "agreement": float(o), "shuffled": float(b)}
                for l, obs, base in zip(self.layers, self.neuron_observed, self.neuron_baseline)
                for n, (o, b) in enumerate(zip(obs.tolist(), base.tolist()))]

    def bands(self, n_layers: int) -> dict[str, tuple[float, float]]:
        """Mean (agreement, baseline) in the lower, middle and upper thirds of the model's layers."""
        out = {}
        for name, _, _ in BANDS:
            pick = [i for i, l in enumerate(self.layers) if band_of(l, n_layers) == name]
            if pick:
                out[name] = (sum(self.observed[i] for i in pick) / len(pick),
                             sum(self.baseline[i] for i in pick) / len(pick))
        return out


def agreement_by_layer(wb: Workbench, tr: Triggers, *, value_k: int = 10, n_triggers: int = 10,
                       n_shuffles: int = 5, seed: int = 0) -> Agreement:
    """Key-value agreement per mined layer against ``n_shuffles`` seeded shuffled pairings."""

    if n_triggers < 1 or n_triggers > tr.k:
        raise BadInput(f"n_triggers={n_triggers} must be between 1 and the mined k={tr.k}")
    obs, base, std, n_obs, n_base = [], [], [], [], []
    for l in tr.layers:
        vids = value_top_ids(wb, l, value_k, sign=tr.sign)
        nxt = tr.next_ids(l)[:n_triggers].T  # (d_mlp, n)
        hit = agreement(vids, nxt).float()
        shuf = torch.stack([agreement(vids, nxt, derangement(nxt.shape[0], seed + s)).float()
                            for s in range(n_shuffles)])  # (n_shuffles, d_mlp)
        obs.append(hit.mean().item())
        base.append(shuf.mean().item())
        std.append(shuf.mean(1).std().item() if n_shuffles > 1 else 0.0)
        n_obs.append(hit)
        n_base.append(shuf.mean(0))
    return Agreement(tr.layers, obs, base, std, value_k, n_triggers, n_obs, n_base)
