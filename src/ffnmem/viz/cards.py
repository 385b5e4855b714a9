"""Neuron cards: one self-contained HTML view of one FFN memory.

A card shows the key's top trigger examples (prefix, the triggering token highlighted, the next
token), the value's promoted and suppressed tokens in vocabulary space, activation statistics, and
a histogram of the coefficient over the corpus (PNG embedded as base64). ``NeuronCard`` renders
inline in Jupyter via ``_repr_html_``.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.paths import atomic_write_text
from ffnmem.core.workbench import Workbench
from ffnmem.methods import capture as cap
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.methods.triggers import Triggers, example_rows
from ffnmem.viz import plot_coefficient_histogram, png_bytes


@dataclass(frozen=True)
class NeuronCard:
    layer: int
    neuron: int
    model_id: str
    examples: list[dict]
    top_tokens: list[tuple[str, float]]
    bottom_tokens: list[tuple[str, float]]
    stats: dict[str, float]
    histogram_png: bytes

    def to_html(self) -> str:
        esc = html.escape
        ex = "".join(
            f"<tr><td>{r['rank']}</td><td>{r['coeff']:.3f}</td><td class=ctx>{esc(r['context'])}"
            f"<mark>{esc(r['trigger'])}</mark></td><td><code>{esc(r['next'])}</code></td></tr>"
            for r in self.examples)
        tok = lambda ts: ", ".join(f"<code>{esc(t)}</code> ({s:.2f})" for t, s in ts)  # noqa: E731
        st = " · ".join(f"{k} {v:.3g}" for k, v in self.stats.items())
        img = base64.b64encode(self.histogram_png).decode()
        return (f"<div class=ffnmem-card><h3>{esc(self.model_id)} · layer {self.layer} · neuron {self.neuron}</h3>"
                f"<p><b>value promotes</b>: {tok(self.top_tokens)}<br><b>value suppresses</b>: "
                f"{tok(self.bottom_tokens)}</p><p>{esc(st)}</p>"
                f"<table><tr><th>#</th><th>m</th><th>prefix · <mark>trigger</mark></th><th>next</th></tr>{ex}"
                f"</table><img alt='coefficient histogram' src='data:image/png;base64,{img}'/></div>")

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        style = ("<style>body{font-family:sans-serif} td.ctx{font-family:monospace;white-space:pre-wrap}"
                 " mark{background:#ffd54f} td,th{padding:2px 6px;text-align:left}</style>")
        atomic_write_text(path, f"<!doctype html><meta charset=utf-8>{style}{self.to_html()}")
        return path


def _histogram(acts: torch.Tensor, title: str) -> bytes:
    return png_bytes(plot_coefficient_histogram(acts, title=title), dpi=90)


@torch.inference_mode()
def histogram_coefficients(wb: Workbench, tr: Triggers, neurons: dict[int, list[int]],
                           hist_windows: int = 32) -> dict[int, Tensor]:
    """Coefficients of chosen neurons ``{layer: [neuron, ...]}`` over the first ``hist_windows``
    windows, BOS excluded, in ONE forward pass: ``{layer: [tokens, len(neurons)]}``."""
    parts: dict[int, list[Tensor]] = {}

    def keep(name: str, t: Tensor, start: int) -> None:
        layer = int(name.split(".")[1])
        parts.setdefault(layer, []).append(t[:, 1:, neurons[layer]].float().cpu().reshape(-1, len(neurons[layer])))

    cap.run_hooks(wb, tr.tokens[:hist_windows], [hook_name("post", l) for l in neurons], keep, progress=False)
    return {l: torch.cat(p) for l, p in parts.items()}


def neuron_card(wb: Workbench, tr: Triggers, layer: int, neuron: int, *, n_examples: int = 10,
                n_tokens: int = 8, context: int = 12, hist_windows: int = 32,
                acts: Tensor | None = None) -> NeuronCard:
    """Build the card of memory ``neuron`` in ``layer`` from mined triggers ``tr``.

    The histogram shows ``acts`` (the neuron's coefficients) when given; otherwise it re-reads the
    coefficient over the first ``hist_windows`` windows of the corpus (BOS position excluded) so
    the card needs no stored activations. Many cards: pass ``acts`` from one shared pass
    (:func:`histogram_coefficients`).
    """
    layer = wb.check_layer(layer)
    if layer not in tr.layers:

        raise BadInput(f"layer {layer} was not mined (mined: {tr.layers}); mine it first")
    if not 0 <= neuron < wb.d_mlp:

        raise BadInput(f"neuron {neuron} is out of range: layer {layer} has neurons 0..{wb.d_mlp - 1}")
    rows = example_rows(wb, tr, layer, [neuron], context=context)[:n_examples]
    proj = value_tokens(wb, layer, [neuron], k=n_tokens, signs=torch.tensor([tr.sign]))
    top = [(wb.decode(i), float(s)) for i, s in zip(proj.top_ids[0].tolist(), proj.top_scores[0])]
    bottom = [(wb.decode(i), float(s)) for i, s in zip(proj.bottom_ids[0].tolist(), proj.bottom_scores[0])]
    if acts is None:
        acts = histogram_coefficients(wb, tr, {layer: [neuron]}, hist_windows)[layer][:, 0]
    s = tr.stats[layer]
    stats = {"mean": float(s["mean"][neuron]), "frac>0": float(s["frac_active"][neuron]),
             "max": float(s["max"][neuron])}
    return NeuronCard(layer, neuron, wb.model_id, rows, top, bottom, stats,
                      _histogram(acts.float().cpu(), f"layer {layer} neuron {neuron}: m over {acts.numel()} tokens"))
