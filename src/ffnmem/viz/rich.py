"""Rich objects: results that render themselves inline in Jupyter and in HTML pages.

Each object holds plain data (rows, tensors) and renders it: ``figure()`` returns a new matplotlib
figure (or None), ``to_html()`` returns one self-contained ``<div>`` (the figure as a base64 PNG,
tables escaped: tokens may hold ``<`` or ``&``), and ``_repr_html_`` is ``to_html`` so that a
notebook cell ending with the object shows it. Nothing is written to disk and no figure is left
open. The same ``to_html`` is what ``ffnmem report`` and the browse site embed.

This module holds the base and the causal-tracing and direct-effect views; recall, probes and
claims are in :mod:`ffnmem.viz.tables`, and :func:`ffnmem.viz.show` picks the view of a Result.
"""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.methods.localize import top_cells
from ffnmem.methods.tracing import ALIGNED_POSITIONS, Trace
from ffnmem.store.results import Result
from ffnmem.viz.attribution import plot_attribution, plot_layer_dla
from ffnmem.viz.figures import png_bytes
from ffnmem.viz.tracing import plot_average, plot_trace

esc = html.escape


def num(x, fmt: str = ".3g") -> str:
    """A table cell: numbers formatted, missing values (None, NaN) as a dash, text escaped."""
    if x is None or (isinstance(x, (float, np.floating)) and math.isnan(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return format(float(x), fmt)
    return esc(str(x))


def toks(tokens) -> str:
    """Tokens as escaped ``<code>`` chips (whitespace kept visible by ``white-space:pre``)."""
    return " ".join(f"<code style='white-space:pre'>{esc(str(t))}</code>" for t in tokens)


def table(rows: list[dict], columns: list[tuple[str, str]], *, limit: int | None = None, raw: set[str] = frozenset()
          ) -> str:
    """An HTML table of ``rows`` with ``columns`` ``(key, header)``; cells go through :func:`num`
    except keys in ``raw`` (already HTML). ``limit``: first rows only, with a line saying how many more."""
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{esc(h)}</th>" for _, h in columns)
    body = "".join("<tr>" + "".join(f"<td>{r.get(k, '') if k in raw else num(r.get(k))}</td>" for k, _ in columns)
                   + "</tr>" for r in shown)
    more = f"<p><i>… {len(rows) - len(shown)} more rows</i></p>" if len(shown) < len(rows) else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def img(fig, alt: str, dpi: int = 80) -> str:
    """``fig`` as an inline ``<img>`` (base64 PNG); the figure is closed."""
    data = base64.b64encode(png_bytes(fig, dpi=dpi)).decode()
    return f"<img alt='{esc(alt)}' style='max-width:100%' src='data:image/png;base64,{data}'/>"


class Rich:
    """Base of the rich objects: a title, an optional figure, a caption and tables."""

    title: str = ""
    dpi: int = 80

    def figure(self):
        """A new matplotlib figure of the object, or None when it has none."""
        return

    def caption(self) -> str:
        """HTML under the title: what the numbers are."""
        return ""

    def tables_html(self) -> str:
        return ""

    def to_html(self) -> str:
        fig = self.figure()
        pic = "" if fig is None else img(fig, self.title or type(self).__name__, self.dpi)
        return (f"<div class='ffnmem-{type(self).__name__.lower()}'><h4>{esc(self.title)}</h4>{self.caption()}"
                f"{pic}{self.tables_html()}</div>")

    def _repr_html_(self) -> str:
        return self.to_html()


@dataclass(frozen=True, repr=False)
class TraceView(Rich):
    """One fact's causal trace (a :class:`~ffnmem.methods.tracing.Trace`): a heatmap per traced kind
    (indirect effect by layer and token, subject tokens starred) and the ``top`` cells of ``kind``
    (default ``mlp_w1`` if traced, else the first kind). ``prompt`` / ``answer``: the traced answer token."""

    trace: Trace
    prompt: str = ""
    answer: str = ""
    top: int = 8
    kind: str | None = None

    @property
    def title(self) -> str:
        return f"causal trace: {self.prompt!r} → {self.answer!r}" if self.prompt else "causal trace"

    def figure(self):
        return plot_trace(self.trace)

    def caption(self) -> str:
        t = self.trace
        return (f"<p>p(answer {toks([self.answer]) if self.answer else ''}) clean {num(t.p_clean)}, subject "
                f"corrupted {num(t.p_corrupt)}; indirect effect = restored p − corrupted p (window {t.window}).</p>")

    def tables_html(self) -> str:
        t = self.trace
        kind = self.kind or ("mlp_w1" if "mlp_w1" in t.effects else next(iter(t.effects)))
        rows = [{"layer": l, "token": toks([t.tokens[p]]), "position": p, "effect": e}
                for l, p, e in top_cells(t.effects[kind], self.top)]
        return (f"<p>Top cells of <b>{esc(kind)}</b>:</p>"
                + table(rows, [("layer", "layer"), ("position", "position"), ("token", "token"), ("effect", "indirect effect")],
                        raw={"token"}))


def _average(effect_rows: list[dict]) -> dict[str, Tensor]:
    """Mean effect per kind, layer and aligned position over the rows of a trace's ``effects`` table
    (NULL cells skipped): ``{kind: [n_layers, 5]}``, as :func:`ffnmem.methods.tracing.average_aligned`."""
    sums: dict = defaultdict(float)
    counts: dict = defaultdict(int)
    n_layers = 1 + max((int(r["layer"]) for r in effect_rows), default=-1)
    for r in effect_rows:
        e = r["effect"]
        if e is not None and not (isinstance(e, float) and math.isnan(e)):
            key = (r["kind"], int(r["layer"]), ALIGNED_POSITIONS.index(r["position"]))
            sums[key] += float(e)
            counts[key] += 1
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in effect_rows):
        a = torch.full((n_layers, len(ALIGNED_POSITIONS)), float("nan"))
        for (k, l, j), s in sums.items():
            if k == kind:
                a[l, j] = s / counts[k, l, j]
        out[kind] = a
    return out


@dataclass(frozen=True, repr=False)
class CausalTraces(Rich):
    """A ``causal_trace`` Result (or the same tables from a run's catalogue): the average indirect
    effect aligned on subject and last tokens (one heatmap per kind) and one row per fact (prompt,
    gold answer, traced token, p clean / corrupted). :meth:`fact` gives one fact's :class:`TraceView`."""

    facts: list[dict]
    effects: list[dict]
    result: Result | None = None
    limit: int = 20
    title: str = "causal tracing"

    @classmethod
    def of(cls, result: Result, **kw) -> CausalTraces:
        return cls(result.table("facts").to_dict("records"), result.table("effects").to_dict("records"), result, **kw)

    def figure(self):
        return plot_average(_average(self.effects), n_facts=len(self.facts)) if self.effects else None

    def caption(self) -> str:
        known = sum(bool(f.get("known", True)) for f in self.facts)
        return (f"<p>{len(self.facts)} facts traced ({known} known: the traced token is the gold answer); "
                "heatmaps: mean indirect effect over facts.</p>")

    def tables_html(self) -> str:
        rows = [{**f, "traced": toks([f.get("traced", "")]), "target": toks([f.get("target", "")])} for f in self.facts]
        return table(rows, [("prompt", "prompt"), ("target", "gold"), ("traced", "traced token"), ("known", "known"),
                            ("p_clean", "p clean"), ("p_corrupt", "p corrupted")], limit=self.limit,
                     raw={"traced", "target"})

    def fact(self, i: int) -> TraceView:
        """Fact ``i``'s full trace (needs the Result: full traces are tensors, not catalogue rows)."""
        if self.result is None or f"fact{i}/{self.result.meta['params']['kinds'][0]}" not in self.result.tensors:
            raise BadInput(f"no full trace of fact {i} here (a partial trace, or rows without the Result's tensors)")
        f, kinds = self.facts[i], self.result.meta["params"]["kinds"]
        t = Trace.stored(f, {k: self.result.tensors[f"fact{i}/{k}"] for k in kinds}, self.result.meta["window"])
        return TraceView(t, prompt=f["prompt"], answer=f["traced"])


@dataclass(frozen=True, repr=False)
class DirectEffectsTable(Rich):
    """Direct logit attribution of one or more prompts (a ``direct_effects`` Result's ``neurons`` and
    ``layers`` rows): per prompt, the memories ranked by direct effect on the answer logit with their
    coefficient and, when built with a model (:func:`direct_effects_table`), the tokens each value
    promotes (signed by its coefficient); the figure shows FFN vs attention effect per layer."""

    neurons: list[dict]
    layers: list[dict]
    answer: str = ""
    p_answer: float | None = None
    predicted: str | None = None
    limit: int = 10
    title: str = "direct effects on the answer logit"

    def _prompts(self) -> list[str]:
        return list(dict.fromkeys(r.get("prompt", "") for r in self.layers))

    def figure(self):
        prompts = self._prompts()
        if not prompts:
            return None
        mlp = torch.tensor([[r["ffn_direct"] for r in self.layers if r.get("prompt", "") == p] for p in prompts])
        attn = torch.tensor([[r["attn_direct"] for r in self.layers if r.get("prompt", "") == p] for p in prompts])
        if len(prompts) == 1:
            return plot_attribution(mlp[0], attn[0], self.neurons, prompt=prompts[0], answer=self.answer)
        labels = [next((r.get("subject") for r in self.layers if r.get("prompt") == p and r.get("subject")), p)
                  for p in prompts]
        return plot_layer_dla(mlp, attn, labels)

    def caption(self) -> str:
        bits = [f"answer {toks([self.answer])}"] if self.answer else []
        if self.p_answer is not None:
            bits.append(f"p(answer) {num(self.p_answer)}")
        if self.predicted is not None:
            bits.append(f"the model predicts {toks([self.predicted])}")
        return "<p>" + "; ".join(bits) + ("; " if bits else "") + "direct effects in logit units at the last prompt token.</p>"

    def tables_html(self) -> str:
        parts = []
        prompts = self._prompts() or list(dict.fromkeys(r.get("prompt", "") for r in self.neurons))
        cols = [("rank", "#"), ("memory", "memory"), ("direct_effect", "direct effect"), ("coefficient", "coefficient m")]
        if any("promotes" in r for r in self.neurons):
            cols.append(("promotes", "value promotes"))
        for p in prompts[: self.limit]:
            rows = [{**r, "rank": int(r["rank"]) + 1, "memory": f"L{int(r['layer'])}.{int(r['neuron'])}",
                     "promotes": toks(r.get("promotes", []))} for r in self.neurons if r.get("prompt", "") == p]
            parts.append((f"<p><b>{esc(p)}</b></p>" if len(prompts) > 1 else "") + table(rows, cols, raw={"promotes"}))
        if len(prompts) > self.limit:
            parts.append(f"<p><i>… {len(prompts) - self.limit} more prompts</i></p>")
        return "".join(parts)


def direct_effects_table(result: Result, wb: Workbench | None = None, *, n_tokens: int = 6, **kw) -> DirectEffectsTable:
    """The :class:`DirectEffectsTable` of a ``direct_effects`` Result (``ffnmem.jobs.attribute``);
    with ``wb`` (the model it was computed on) each memory lists the ``n_tokens`` tokens its value
    promotes, flipped when its coefficient is negative (what it actually writes)."""
    neurons = result.table("neurons").to_dict("records")
    if wb is not None:
        for r in neurons:
            sign = torch.tensor([1.0 if r["coefficient"] >= 0 else -1.0])
            proj = value_tokens(wb, int(r["layer"]), [int(r["neuron"])], k=n_tokens, signs=sign)
            r["promotes"] = [wb.decode([i]) for i in proj.top_ids[0].tolist()]
    m = result.meta
    return DirectEffectsTable(neurons, result.table("layers").to_dict("records"), answer=m.get("answer") or "",
                              p_answer=m.get("p_answer"), predicted=m.get("predicted"), **kw)
