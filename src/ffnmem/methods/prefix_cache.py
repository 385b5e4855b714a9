"""Reuse a causal model's run on a prefix: run only the suffix ``tokens[p0:]`` against the cached
keys and values of positions ``< p0`` (a Hugging Face KV cache), through the bridge and its hooks.

In a causal model, an intervention at position ``t`` leaves every position before ``t`` exactly as
it was, at every layer; so a batch of interventions at positions ``≥ p0`` only needs the positions
``p0 …`` recomputed, with the unchanged run's keys and values of the positions before as the cache.
Hooks see the suffix only (``[rows, T − p0, d]``); rotary positions come from the cache length
(Hugging Face derives ``position_ids = p0 …``).

Why two names for one cache (:func:`cache_kwargs`): transformers 5 renamed the decoder's
``past_key_values`` argument to ``cache``, while TransformerLens 4's attention bridges (which
re-implement attention and append to the cache themselves) still read ``past_key_values`` or
``layer_past``. Passed as ``cache`` alone, Hugging Face offsets the positions but the attention
ignores the cached keys. ``cache`` gives the positions and the mask, ``layer_past`` reaches the
bridge's attention, which appends to the cache once. Whether a model runs this way is checked
once per model on a short prompt against the full run (:func:`prefix_cache_supported`); the
native TransformerLens models and any architecture where it does not hold fall back to full runs.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache

from ffnmem.core.workbench import Workbench

log = logging.getLogger(__name__)
_SUPPORTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LAST_ONLY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
PROBE = "The cat sat on the mat because it was warm"


def cache_kwargs(cache) -> dict:
    """Forward keyword arguments that make the bridge's Hugging Face model run against ``cache``."""
    return {"cache": cache, "layer_past": cache, "use_cache": True}


@dataclass(frozen=True)
class PrefixKV:
    """Keys and values of one run, per layer ``[rows, kv_heads, pos, d_head]``."""

    keys: list[Tensor]
    values: list[Tensor]

    def cache(self, p0: int, split: int, copies: int):
        """A fresh cache of positions ``< p0``; layers ``≥ split`` repeat the rows ``copies`` times
        (row ``c·rows + s``: copy ``c`` of row ``s``, the order :class:`~ffnmem.methods.tracing._Expand`
        gives the hidden states)."""
        return DynamicCache(ddp_cache_data=[(k[:, :, :p0].repeat(copies if l >= split else 1, 1, 1, 1),
                                v[:, :, :p0].repeat(copies if l >= split else 1, 1, 1, 1))
                               for l, (k, v) in enumerate(zip(self.keys, self.values))])


def run_keeping_kv(wb: Workbench, tokens: Tensor, hooks: list, **kwargs) -> tuple[Tensor, PrefixKV]:
    """Logits and every layer's keys and values of one forward with ``hooks``."""
    cache = DynamicCache()
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=list(hooks)):
        logits = wb.bridge(tokens.to(wb.device), **cache_kwargs(cache), **kwargs)
    layers = cache.layers[: wb.n_layers]
    return logits, PrefixKV([l.keys for l in layers], [l.values for l in layers])


def last_logits_kwargs(wb: Workbench) -> dict:
    """``{"logits_to_keep": 1}`` where the model computes the unembedding for the last position only
    (Hugging Face models; tracing reads nothing else and short suffixes of many rows make the
    unembedding a large share of a pass), else ``{}`` (checked once per model, as above)."""
    if wb.bridge not in _LAST_ONLY:
        ok = False
        try:
            tokens = wb.to_tokens(PROBE).to(wb.device)
            with torch.inference_mode():
                full, last = wb.bridge(tokens)[:, -1:].float(), wb.bridge(tokens, logits_to_keep=1).float()
            ok = last.shape == full.shape and bool((last - full).abs().max() <= 1e-4 + 1e-3 * full.abs().max())
        except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
            log.debug("logits_to_keep unavailable for %s: %s", wb.model_id, exc)
        _LAST_ONLY[wb.bridge] = ok
    return {"logits_to_keep": 1} if _LAST_ONLY[wb.bridge] else {}


def prefix_cache_supported(wb: Workbench) -> bool:
    """Whether running a suffix against the prefix's cache gives the full run's logits (checked once
    per model: a prefix of a short prompt, then its suffix, against the whole prompt)."""
    if wb.bridge in _SUPPORTED:
        return _SUPPORTED[wb.bridge]
    ok = False
    try:
        tokens = wb.to_tokens(PROBE)
        p0 = tokens.shape[1] // 2
        with torch.inference_mode():
            full = wb.bridge(tokens.to(wb.device))[0, p0:].float()
            _, kv = run_keeping_kv(wb, tokens[:, :p0], [])
            got = wb.bridge(tokens[:, p0:].to(wb.device), **cache_kwargs(kv.cache(p0, wb.n_layers, 1)))[0].float()
        ok = got.shape == full.shape and bool((got - full).abs().max() <= 1e-4 + 1e-3 * full.abs().max())
    except (TypeError, ValueError, RuntimeError, AttributeError) as exc:  # a model that takes no cache
        log.debug("prefix cache unavailable for %s: %s", wb.model_id, exc)
    if not ok:
        log.info("%s: no prefix (KV) cache reuse; tracing runs full prompts", wb.model_id)
    _SUPPORTED[wb.bridge] = ok
    return ok
