"""Streaming capture of FFN activations over a token stream.

Only the hooks asked for are attached, the forward pass stops after the last block needed, and
each activation is handed to a sink as soon as its hook fires:

* :func:`collect` keeps everything in memory (small inputs, notebooks);
* :func:`reduce` folds activations into reducers (:class:`NeuronStats`, :class:`TopK`) so a
  whole corpus never sits in memory;
* :func:`write_shards` writes safetensors shards to disk (bounded RAM, atomic per shard).

Token input is a ``[n_windows, pos]`` tensor of equal-length windows (see
:func:`ffnmem.data.corpus.windows`). Activations are checked for NaN/inf as they stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from ffnmem.core import outputs
from ffnmem.core.errors import BadInput, NonFiniteActivation
from ffnmem.core.hooks import hook_name
from ffnmem.core.paths import atomic_write_json, umask
from ffnmem.core.workbench import Workbench
from ffnmem.store.provenance import tokens_hash

OnActivation = Callable[[str, Tensor, int], None]  # (hook name, [batch pos d], first window index)


class _StopForward(Exception):
    """Raised by the last hook needed to skip the remaining layers."""


def hook_names(wb: Workbench, kinds: Sequence[str] = ("post",), layers: Sequence[int] | None = None) -> list[str]:
    """Hook names for activation ``kinds`` (``post``, ``pre``, ``out``, ``resid_pre`` …) at ``layers``."""
    layers = range(wb.n_layers) if layers is None else [wb.check_layer(l) for l in layers]
    return [hook_name(kind, layer) for layer in layers for kind in kinds]


def run_hooks(
    wb: Workbench,
    tokens: Int[Tensor, "n pos"],
    names: Sequence[str],
    on_activation: OnActivation,
    *,
    batch_size: int = 8,
    progress: bool | str = True,
    check_finite: bool = True,
) -> None:
    """Forward ``tokens`` in batches, calling ``on_activation`` for each requested hook."""
    names = _validate(wb, tokens, names)
    stop_layer = _stop_layer(names, wb.n_layers)
    desc = progress if isinstance(progress, str) else "capture"
    starts = range(0, tokens.shape[0], batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = tokens[start : start + batch_size].to(wb.device)
        fwd = [(n, _make_hook(n, start, on_activation, check_finite)) for n in names]
        if stop_layer is not None:
            fwd.append((hook_name("resid_post", stop_layer), _raise_stop))
        with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=fwd):
            try:
                wb.bridge(batch, return_type=None)
            except _StopForward:
                pass


def _make_hook(name: str, start: int, on_activation: OnActivation, check_finite: bool):
    # Keyed by the requested name: the bridge reports canonical names for aliased hooks.
    def hook(t: Tensor, hook) -> Tensor:
        # One sum propagates any NaN/inf (100x cheaper than isfinite(t).all()); a float32 overflow
        # of finite values is ruled out by the full check before raising.
        if check_finite and not torch.isfinite(t.sum(dtype=torch.float32)) and not torch.isfinite(t).all():
            raise NonFiniteActivation(
                f"NaN or inf in {name} (windows {start}..{start + len(t) - 1}); "
                "check the weights, the input or use float32"
            )
        on_activation(name, t.detach(), start)
        return t

    return hook


def _raise_stop(t: Tensor, hook) -> Tensor:
    raise _StopForward


def _validate(wb: Workbench, tokens: Tensor, names: Sequence[str]) -> list[str]:
    if not names:
        raise BadInput("no hooks asked for: name at least one layer and activation kind")
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise BadInput(f"empty input: expected token windows [n, pos], got shape {tuple(tokens.shape)}")
    wb.check_length(tokens.shape[1], what="each window")
    return [wb.check_hook(n) for n in dict.fromkeys(names)]


def _stop_layer(names: Sequence[str], n_layers: int) -> int | None:
    """The block after which nothing requested fires, or None if the full pass is needed.

    Also when the last block is needed: stopping there skips the final norm and the unembedding,
    whose ``[batch, pos, d_vocab]`` logits would be the largest tensor of the pass (200 MB for
    SmolLM2 at 8 × 128 tokens) and about a fifth of its compute.
    """
    layers = []
    for n in names:
        parts = n.split(".")
        if parts[0] != "blocks":
            return None
        layers.append(int(parts[1]))
    return max(layers)


# --- sinks ------------------------------------------------------------------------------------

def collect(wb: Workbench, tokens: Int[Tensor, "n pos"], names: Sequence[str], **kw) -> dict[str, Tensor]:
    """All requested activations in memory, on CPU: ``{hook: [n, pos, d]}``."""
    parts: dict[str, list[Tensor]] = {}
    run_hooks(wb, tokens, names, lambda n, t, s: parts.setdefault(n, []).append(t.cpu().clone()), **kw)
    return {n: torch.cat(p) for n, p in parts.items()}


def iter_batches(wb: Workbench, tokens: Int[Tensor, "n pos"], names: Sequence[str], *, batch_size: int = 8,
                 **kw) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Yield ``(token batch, {hook: activations})`` one batch at a time (CPU tensors)."""
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start : start + batch_size]
        yield chunk, collect(wb, chunk, names, batch_size=batch_size, progress=False, **kw)


@dataclass
class NeuronStats:
    """Running per-unit statistics: mean, variance, max, and the share of tokens where it is > 0."""

    count: int = 0
    sums: dict[str, Tensor] = field(default_factory=dict)

    def update(self, name: str, acts: Float[Tensor, "batch pos d"], start: int) -> None:
        # Per-batch sums in float32 (exact enough over one batch), running totals in float64:
        # 2-3x cheaper than converting every activation to float64. amax, not max(0): max also
        # computes the argmax, which costs 10x the reduction itself; the int32 count is 30% faster.
        flat = acts.reshape(-1, acts.shape[-1]).float()
        s = self.sums.setdefault(name, {"sum": 0, "sq": 0, "pos": 0, "max": None, "n": 0})
        s["sum"] = s["sum"] + flat.sum(0).double()
        s["sq"] = s["sq"] + (flat * flat).sum(0).double()
        s["pos"] = s["pos"] + (flat > 0).sum(0, dtype=torch.int32).long()
        m = flat.amax(0)
        s["max"] = m if s["max"] is None else torch.maximum(s["max"], m)
        s["n"] += flat.shape[0]

    def result(self) -> dict[str, dict[str, Tensor]]:
        out = {}
        for name, s in self.sums.items():
            mean = s["sum"] / s["n"]
            var = (s["sq"] / s["n"] - mean * mean).clamp_min(0)
            out[name] = {"mean": mean.float().cpu(), "var": var.float().cpu(), "max": s["max"].float().cpu(),
                         "frac_active": (s["pos"].double() / s["n"]).float().cpu()}
        return out


@dataclass
class TopK:
    """The ``k`` largest activations per unit over the stream, with where they occurred.

    Memory is ``O(k · d)`` per hook, whatever the corpus size. ``index`` is the flat token index
    ``window * pos + position`` into the token tensor that was streamed. Among equal values the
    earlier token ranks first, so the result does not depend on the batch size; NaN ranks above
    every number (as in ``torch.topk``).

    Each update only looks closely at the entries that can enter: once ``k`` values are held,
    those above the current k-th largest (a few per unit); before that, those above a lower bound
    of the batch's own k-th largest (the k-th largest of group maxima). Then one small sort per
    affected unit merges them with the held values.
    """

    k: int = 20
    state: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise BadInput(f"TopK needs a whole number k of at least 1, got {self.k!r}")

    def update(self, name: str, acts: Float[Tensor, "batch pos d"], start: int) -> None:
        b, p, d = acts.shape
        flat = acts.reshape(b * p, d).float().contiguous()
        blocks = _block_maxima(flat)
        nan = bool(blocks.isnan().any() or flat[len(blocks) * _BLOCK :].isnan().any())
        held = self.state.get(name)
        if held is not None and held[0].shape[0] == self.k:
            # Only values above the k-th largest held can enter: an equal one comes later and loses the tie.
            unit, row = _candidates(flat, held[0][-1], blocks, strict=True, nan=nan)
        else:
            unit, row = _candidates(flat, _fill_bound(flat, blocks, self.k), None, strict=False, nan=nan)
        if unit.numel():
            self.state[name] = _merge_top(held, flat, unit, row, start * p, self.k)

    def result(self) -> dict[str, dict[str, Tensor]]:
        return {n: {"values": v.cpu().contiguous(), "index": i.cpu().contiguous()} for n, (v, i) in self.state.items()}


_BLOCK = 16  # rows per block: a block whose maximum cannot enter is skipped whole


def _block_maxima(flat: Float[Tensor, "rows d"]) -> Float[Tensor, "blocks d"]:
    """Per-unit maximum of each block of ``_BLOCK`` rows (the rows after the last full block are left out)."""
    n = flat.shape[0] // _BLOCK
    return flat[: n * _BLOCK].view(n, _BLOCK, flat.shape[1]).amax(1)  # amax propagates NaN


def _fill_bound(flat: Float[Tensor, "rows d"], blocks: Float[Tensor, "blocks d"], k: int) -> Tensor:
    """A lower bound of each unit's k-th largest value in the batch (-inf when it has fewer rows).

    The k-th largest of ``g >= k`` disjoint blocks' maxima is at most the k-th largest entry. With
    ``g >= 2k`` blocks about ``1.4 k`` entries per unit reach it (random data), and it costs a tenth
    of a full top-k; with fewer blocks, the exact k-th largest (one top-k, once per hook).
    """
    if flat.shape[0] <= k:
        return flat.new_full(flat.shape[1:], float("-inf"))
    if blocks.shape[0] >= 2 * k:
        return blocks.t().topk(k, dim=1).values[:, -1]
    return flat.topk(k, dim=0).values[-1]


def _above(x: Tensor, bound: Tensor, strict: bool, nan: bool) -> Tensor:
    """``x > bound`` (strict) or ``x >= bound``; with ``nan``, NaN in either too (NaN ranks first).

    Keeping NaN costs a second pass (the negation), so it is only done for batches that hold NaN.
    """
    if nan:
        return ~(x <= bound) if strict else ~(x < bound)
    return x > bound if strict else x >= bound


def _candidates(flat: Float[Tensor, "rows d"], bound: Float[Tensor, " d"], blocks: Float[Tensor, "blocks d"] | None,
                strict: bool, nan: bool) -> tuple[Tensor, Tensor]:
    """``(unit, row)`` of the entries above ``bound``, sorted by unit, then row.

    With ``blocks`` (their maxima), only the blocks whose maximum is above the bound are read
    again: when candidates are few (a running threshold after a few batches) that is cheaper than
    a full mask and its scan; when they are many (the first batches), the gather would cost more
    than the mask. Masks are transposed (unit-major) before ``nonzero``, which then yields the
    order wanted.
    """
    hit = None if blocks is None else _above(blocks, bound, strict, nan)
    if hit is not None and hit.sum() * 6 > hit.numel():
        hit = None  # gathering a sixth of the blocks or more costs more than the mask (measured)
    n = 0 if hit is None else blocks.shape[0] * _BLOCK
    unit, row = _nonzero_t(_above(flat[n:], bound, strict, nan))
    if not n:
        return unit, row
    blk_unit, blk = _nonzero_t(hit)
    vals = flat[:n].view(blocks.shape[0], _BLOCK, flat.shape[1])[blk, :, blk_unit]  # [hit blocks, _BLOCK]
    hit, offset = _above(vals, bound[blk_unit, None], strict, nan).nonzero(as_tuple=True)
    if not unit.numel():
        return blk_unit[hit], blk[hit] * _BLOCK + offset
    unit, row = torch.cat([blk_unit[hit], unit]), torch.cat([blk[hit] * _BLOCK + offset, row + n])
    order = unit.sort(stable=True).indices  # the rest's rows come after the blocks' rows
    return unit[order], row[order]


def _nonzero_t(mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(column, row)`` of the true entries of a ``[rows, d]`` mask, by column, then row."""
    return mask.t().contiguous().nonzero(as_tuple=True)


def _merge_top(held: tuple[Tensor, Tensor] | None, flat: Float[Tensor, "rows d"], unit: Tensor, row: Tensor,
               base: int, k: int) -> tuple[Tensor, Tensor]:
    """The k largest of ``held`` and the candidates ``flat[row, unit]``, ties to the earlier token.

    Works unit-major: each affected unit's line holds its held values (sorted, ties by token),
    then its candidates in token order, so a stable sort breaks ties by token. Lines with fewer
    candidates are padded with -inf after them: a pad never ranks above a real entry, and each
    line has at least ``keep`` real ones.
    """
    units, counts = torch.unique_consecutive(unit, return_counts=True)
    line = torch.repeat_interleave(torch.arange(len(units), device=flat.device), counts)
    slot = torch.arange(len(unit), device=flat.device) - (counts.cumsum(0) - counts)[line]
    width = int(counts.max())
    vals = flat.new_full((len(units), width), float("-inf"))
    ids = torch.full((len(units), width), -1, dtype=torch.long, device=flat.device)
    pos = line * width + slot
    vals.view(-1).scatter_(0, pos, flat.view(-1).take(row * flat.shape[1] + unit))
    ids.view(-1).scatter_(0, pos, row + base)
    n_held = 0 if held is None else held[0].shape[0]
    if held is not None:
        vals = torch.cat([held[0][:, units].t(), vals], 1)
        ids = torch.cat([held[1][:, units].t(), ids], 1)
    keep = min(k, n_held + flat.shape[0])
    top, order = vals.sort(dim=1, descending=True, stable=True)
    new_vals, new_ids = top[:, :keep].t(), ids.gather(1, order[:, :keep]).t()
    if keep > n_held or len(units) == flat.shape[1]:  # filling: every unit has candidates
        return new_vals, new_ids
    out_vals, out_ids = held[0].clone(), held[1].clone()  # results handed out earlier stay as they were
    out_vals[:, units], out_ids[:, units] = new_vals, new_ids
    return out_vals, out_ids


def reduce(wb: Workbench, tokens: Int[Tensor, "n pos"], names: Sequence[str], reducers: Sequence, **kw) -> list:
    """Fold every requested activation into each reducer; returns the reducers (now filled)."""

    def fold(name: str, t: Tensor, start: int) -> None:
        for r in reducers:
            r.update(name, t, start)

    run_hooks(wb, tokens, names, fold, **kw)
    return list(reducers)


def stats_and_top(wb: Workbench, tokens: Int[Tensor, "n pos"], names: Sequence[str], k: int = 20,
                  **kw) -> tuple[NeuronStats, TopK]:
    """What the ``ffnmem capture`` job folds: per-unit statistics and each unit's k top examples."""
    stats, top = reduce(wb, tokens, names, [NeuronStats(), TopK(k)], **kw)
    return stats, top


def write_shards(wb: Workbench, tokens: Int[Tensor, "n pos"], names: Sequence[str], folder: str | Path,
                 *, windows_per_shard: int = 64, dtype: torch.dtype = torch.float16, **kw) -> Path:
    """Write activations to ``folder/shard-NNNNN.safetensors`` (each written atomically).

    Shards already complete from an interrupted run of the same capture (``plan.json``: hooks, data
    hash, shard size, dtype) are kept and skipped; shards of another capture are deleted first.
    ``index.json`` (hooks, shard list, provenance) is written last, so its presence marks a finished
    capture. A non-empty folder ffnmem did not write is refused.
    """
    folder = Path(folder)
    outputs.check(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs.mark(folder)
    _start_plan(folder, {"hooks": list(names), "data_hash": tokens_hash(tokens), "dtype": str(dtype),
                         "windows_per_shard": windows_per_shard})
    shards = []
    batch_size = kw.pop("batch_size", 8)
    for n, start in enumerate(tqdm(range(0, tokens.shape[0], windows_per_shard), desc="shards",
                                   disable=not kw.get("progress", True))):
        path = folder / f"shard-{n:05d}.safetensors"
        shards.append(path.name)
        if path.exists():
            continue
        chunk = tokens[start : start + windows_per_shard]
        acts = collect(wb, chunk, names, batch_size=batch_size, progress=False,
                       check_finite=kw.get("check_finite", True))
        data = {k: v.to(dtype).contiguous() for k, v in acts.items()}
        data["tokens"] = chunk.cpu().contiguous()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(data, str(tmp))
        os.chmod(tmp, 0o666 & ~umask())  # safetensors writes 0600
        os.replace(tmp, path)
    atomic_write_json(folder / "index.json", {"hooks": list(names), "shards": shards,
                                              "data_hash": tokens_hash(tokens), **wb.provenance()})
    return folder


def _start_plan(folder: Path, plan: dict) -> None:
    """Keep the shards of an interrupted run of the same capture; delete those of any other."""
    import json

    try:
        same = json.loads((folder / "plan.json").read_text()) == plan
    except (OSError, ValueError):
        same = False
    if not same:
        for p in [*folder.glob("shard-*.safetensors"), folder / "index.json"]:
            p.unlink(missing_ok=True)
        atomic_write_json(folder / "plan.json", plan)
