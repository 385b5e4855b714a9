"""Fact cards: one self-contained HTML page on where one fact lives.

A card shows the fact (prompt, answer, the model's prediction, the answer's margin over its
alternatives), the causal-tracing heatmaps (PNG embedded as base64), and for each localization
method its top memories — score, the tokens each memory's value vector promotes — with the
method's validation by ablation (target drop, the random matched null, same- and other-relation
collateral, held-out paraphrase, smallest k for half the margin). ``FactCard`` renders inline in
Jupyter via ``_repr_html_``; :meth:`FactCard.save` writes the page. Nothing here computes.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from ffnmem.core.paths import atomic_write_text

VALIDATION_COLUMNS = (("mode", "ablation"), ("target_drop", "target drop"), ("random_drop", "random matched"),
                      ("same_relation_drop", "same relation"), ("other_relation_drop", "other relations"),
                      ("paraphrase_drop", "held-out paraphrase"), ("k_half", "k for half"))
STYLE = ("<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto} td,th{padding:2px 8px;"
         "text-align:left;vertical-align:top} table{border-collapse:collapse;margin:.4em 0 1em}"
         " tr:nth-child(even){background:#f4f4f4} code{background:#eef} .num{text-align:right}"
         " section{border-top:1px solid #ccc;margin-top:1em}</style>")


@dataclass(frozen=True)
class FactCard:
    """``fact``: prompt, target, subject, relation, predicted, p_answer, margin, alternatives (strings).
    ``memories[method]``: rows with rank, layer, neuron, score, promotes (list of tokens).
    ``validation[method]``: one row per ablation mode (keys of :data:`VALIDATION_COLUMNS`).
    ``cells``: tracing's top (layer, position, token, effect) rows. ``model_id``: the model."""

    model_id: str
    fact: dict
    memories: dict[str, list[dict]]
    validation: dict[str, list[dict]] = field(default_factory=dict)
    cells: list[dict] = field(default_factory=list)
    trace_png: bytes | None = None
    notes: list[str] = field(default_factory=list)
    # a format string with {layer} and {neuron}: memories link to their pages (``ffnmem browse``)
    memory_href: str | None = None

    def to_html(self) -> str:
        esc, f = html.escape, self.fact
        head = (f"<h2>{esc(f['prompt'])} <code>{esc(f['target'])}</code></h2>"
                f"<p>{esc(self.model_id)} predicts <code>{esc(f.get('predicted', '?'))}</code>; "
                f"p(answer) {_num(f.get('p_answer'))}; margin over {len(f.get('alternatives', []))} alternatives "
                f"{_num(f.get('margin'))} (logit units). Subject <b>{esc(f.get('subject', ''))}</b>, relation "
                f"<b>{esc(f.get('relation') or '—')}</b>.</p>")
        notes = "".join(f"<p><i>{esc(n)}</i></p>" for n in self.notes)
        parts = [head, notes]
        if self.trace_png is not None:
            img = base64.b64encode(self.trace_png).decode()
            parts.append(f"<section><h3>Causal tracing</h3><img alt='causal trace' src='data:image/png;base64,{img}'/>"
                         + _cells(self.cells) + "</section>")
        for method, rows in self.memories.items():
            parts.append(f"<section><h3 id='{esc(method)}'>{esc(method)}</h3>" + _validation(self.validation.get(method))
                         + _memories(rows, self.memory_href) + "</section>")
        return "<div class=ffnmem-factcard>" + "".join(parts) + "</div>"

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        title = html.escape(f"{self.fact['prompt']}{self.fact['target']}")
        atomic_write_text(path, f"<!doctype html><meta charset=utf-8><title>{title}</title>{STYLE}{self.to_html()}")
        return path


def _num(x, fmt: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, fmt) if isinstance(x, float) else html.escape(str(x))


def _validation(rows: list[dict] | None) -> str:
    if not rows:
        return "<p>not validated</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in VALIDATION_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td class=num>{_num(r.get(key))}</td>" for key, _ in VALIDATION_COLUMNS)
                   + "</tr>" for r in rows)
    return ("<p>Relative drop of the margin when the method's top memories are ablated (1 = the margin is gone); "
            f"random matched = sets of the same layers and activation size.</p><table><tr>{head}</tr>{body}</table>")


def _memories(rows: list[dict], href: str | None = None) -> str:
    def name(r: dict) -> str:
        text = f"L{r['layer']}.{r['neuron']}"
        if href is None:
            return text
        return f"<a href='{html.escape(href.format(layer=r['layer'], neuron=r['neuron']))}'>{text}</a>"

    body = "".join(
        f"<tr><td>{r['rank'] + 1}</td><td>{name(r)}</td><td class=num>{_num(r['score'])}</td>"
        f"<td>{' '.join(f'<code>{html.escape(t)}</code>' for t in r.get('promotes', []))}</td></tr>" for r in rows)
    return ("<table><tr><th>#</th><th>memory</th><th>score</th><th>value promotes</th></tr>" + body + "</table>")


def _cells(rows: list[dict]) -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{r['layer']}</td><td>{r['position']}</td><td><code>{html.escape(r.get('token', ''))}"
                   f"</code></td><td class=num>{_num(r['effect'])}</td></tr>" for r in rows)
    return ("<p>Top cells (window-1 MLP restorations):</p><table><tr><th>layer</th><th>position</th><th>token</th>"
            f"<th>indirect effect</th></tr>{body}</table>")
