"""Streaming capture of FFN activations over a token stream.

Only the hooks asked for are attached, the forward pass stops after the last block needed, and
each activation is handed to a sink as soon as its hook fires:

* :func:`collect` keeps everything in memory (small inputs, notebooks);
* :func:`reduce` folds activations into reducers (:class:`NeuronStats`, :class:`TopK`) so a
  whole corpus never sits in memory;
* :func:`write_shards` writes safetensors shards to disk (bounded RAM, atomic per shard).

Token input is a ``[n_windows, pos]`` tensor of equal-length windows (see
:func:`ffnmem.corpus.windows`). Activations are checked for NaN/inf as they stream.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from ffnmem.errors import BadInput, NonFiniteActivation
from ffnmem import outputs
from ffnmem.paths import atomic_write_json, umask
from ffnmem.workbench import Workbench, hook_name

OnActivation = Callable[[str, Tensor, int], None]  # (hook name, [batch pos d], first window index)


class _StopForward(Exception):
    """Raised by the last hook needed to skip the remaining layers."""


def hook_names(wb: Workbench, kinds: Sequence[str] = ("post",), layers: Sequence[int] | None = None) -> list[str]:
    """Hook names for activation ``kinds`` (``post``, ``pre``, ``out``, ``resid_pre`` …) at ``layers``."""
    layers = range(wb.n_layers) if layers is None else [wb.check_layer(l) for l in layers]
    return [hook_name(kind, layer) for layer in layers for kind in kinds]


def tokens_hash(tokens: Tensor) -> str:
    """SHA-256 of a token tensor (shape and ids): the data part of a result's provenance."""
    t = tokens.detach().cpu().to(torch.int64).contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


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
            fwd.append((f"blocks.{stop_layer}.hook_resid_post", _raise_stop))
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
        # 2-3x cheaper than converting every activation to float64.
        flat = acts.reshape(-1, acts.shape[-1]).float()
        s = self.sums.setdefault(name, {"sum": 0, "sq": 0, "pos": 0, "max": None, "n": 0})
        s["sum"] = s["sum"] + flat.sum(0).double()
        s["sq"] = s["sq"] + (flat * flat).sum(0).double()
        s["pos"] = s["pos"] + (flat > 0).sum(0)
        m = flat.max(0).values
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
    ``window * pos + position`` into the token tensor that was streamed.
    """

    k: int = 20
    state: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def update(self, name: str, acts: Float[Tensor, "batch pos d"], start: int) -> None:
        b, p, d = acts.shape
        flat = acts.reshape(b * p, d).float()
        idx = torch.arange(start * p, start * p + b * p, device=acts.device).unsqueeze(1).expand(-1, d)
        if name in self.state:
            vals, ids = self.state[name]
            flat, idx = torch.cat([vals, flat]), torch.cat([ids, idx])
        k = min(self.k, flat.shape[0])
        top = flat.topk(k, dim=0)
        self.state[name] = (top.values, idx.gather(0, top.indices))

    def result(self) -> dict[str, dict[str, Tensor]]:
        return {n: {"values": v.cpu(), "index": i.cpu()} for n, (v, i) in self.state.items()}


def reduce(wb: Workbench, tokens: Int[Tensor, "n pos"], names: Sequence[str], reducers: Sequence, **kw) -> list:
    """Fold every requested activation into each reducer; returns the reducers (now filled)."""

    def fold(name: str, t: Tensor, start: int) -> None:
        for r in reducers:
            r.update(name, t, start)

    run_hooks(wb, tokens, names, fold, **kw)
    return list(reducers)


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
