"""Rich objects for recall, probe curves and claims, and :func:`show`, the one way in from a result.

Like those of :mod:`ffnmem.viz.rich`, each renders inline in Jupyter (``_repr_html_``), returns a
new figure from ``figure()``, and is what ``ffnmem report`` and the browse site embed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.methods.recall import summarise
from ffnmem.methods.tracing import Trace
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz.probes import plot_curves
from ffnmem.viz.recall import plot_recall
from ffnmem.viz.rich import (
    CausalTraces,
    Rich,
    TraceView,
    direct_effects_table,
    esc,
    table,
    toks,
)

STATUS_COLOURS = {"PASS": "#2a7d2a", "NOT REPRODUCED": "#a06000", "BROKEN": "#c0392b", "ERROR": "#c0392b",
                  "NOT RUN": "#777"}


@dataclass(frozen=True, repr=False)
class RecallTable(Rich):
    """Recall of a fact set (a ``recall`` Result): top-1 / top-k accuracy, mean p(answer), median rank
    and loss per relation (``ALL``: every fact), a bar chart of the accuracies, and the facts
    themselves (prompt, gold answer, the model's first predicted token, rank of the answer)."""

    relations: list[dict]
    facts: list[dict]
    k: int = 5
    scoring: str = "first_token"
    limit: int = 15
    title: str = "recall"

    @classmethod
    def of(cls, result: Result, **kw) -> RecallTable:
        m = result.meta
        return cls(result.table("relations").to_dict("records"), result.table("facts").to_dict("records"),
                   k=m["k"], scoring=m["scoring"], **kw)

    @classmethod
    def from_facts(cls, facts: list[dict], **kw) -> RecallTable:
        """From per-fact rows alone (e.g. a run's ``recall_facts`` view): the relation summary is
        recomputed as the recall job does (:func:`ffnmem.methods.recall.summarise`)."""
        if not facts:
            raise BadInput("no recall rows to show")
        k = kw.pop("k", None) or next((int(m.group(1)) for c in facts[0]
                                       if (m := re.fullmatch(r"top(\d+)", c)) and m.group(1) != "1"), 1)
        return cls(summarise(facts, k), facts, k=k, **kw)

    def figure(self):
        result = Result(kind="recall", tables={"relations": table_from_rows([r for r in self.relations
                                                                             if r["relation"] != "ALL"])},
                        meta={"k": self.k, "scoring": self.scoring})
        return plot_recall(result)

    def caption(self) -> str:
        every = next((r for r in self.relations if r["relation"] == "ALL"), None)
        head = "" if every is None else (f"{every['n']} facts: top-1 {every['top1']:.1%}, top-{self.k} "
                                         f"{every[f'top{self.k}']:.1%}. ")
        return f"<p>{head}Scoring: {esc(self.scoring)} (rank and prediction: the answer's first token).</p>"

    def tables_html(self) -> str:
        rel = table(self.relations, [("relation", "relation"), ("n", "facts"), ("top1", "top-1"),
                                     (f"top{self.k}", f"top-{self.k}"), ("p_answer", "mean p(answer)"),
                                     ("median_rank", "median rank"), ("loss_bits", "loss (bits)")])
        rows = [{**f, "target": toks([f["target"]]), "predicted": toks([f["predicted"]])} for f in self.facts]
        facts = table(rows, [("prompt", "prompt"), ("target", "gold"), ("predicted", "predicted"), ("rank", "rank"),
                             ("p_answer", "p(answer)")], limit=self.limit, raw={"target", "predicted"})
        return rel + facts


@dataclass(frozen=True, repr=False)
class ProbeCurves(Rich):
    """Linear probes per layer (a ``probe_curves`` Result's ``curves`` rows): cross-validated accuracy,
    the control task's (Hewitt & Liang: labels shuffled by word type), selectivity = accuracy − control,
    and the majority class; one curve per task."""

    curves: list[dict]
    title: str = "linear probes by layer"

    @classmethod
    def of(cls, result: Result, **kw) -> ProbeCurves:
        return cls(result.table("curves").to_dict("records"), **kw)

    def _by_task(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in self.curves:
            out.setdefault(r["task"], []).append(r)
        return out

    def figure(self):
        return plot_curves(self._by_task(), title=self.title) if self.curves else None

    def caption(self) -> str:
        best = {t: max(rs, key=lambda r: r["selectivity"]) for t, rs in self._by_task().items()}
        return "<p>" + "; ".join(f"{esc(t)}: most selective at layer {r['layer']} (accuracy {r['accuracy']:.2f}, "
                                 f"control {r['control']:.2f})" for t, r in best.items()) + ".</p>"

    def tables_html(self) -> str:
        return table(self.curves, [("task", "task"), ("layer", "layer"), ("accuracy", "accuracy"),
                                   ("accuracy_std", "± std"), ("control", "control task"),
                                   ("selectivity", "selectivity"), ("majority", "majority class")])


@dataclass(frozen=True, repr=False)
class ClaimsTable(Rich):
    """The claims table: one row per claim as text cells (:func:`ffnmem.batch.claims_report.table_rows`,
    or :func:`ffnmem.batch.claims_report.claims_view` from measured claims), status coloured."""

    rows: list[dict]
    title: str = "claims"

    COLUMNS = ("claim", "status", "estimate [95% CI]", "value vs null", "p (Holm)", "n", "control", "why", "paper")

    def caption(self) -> str:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return ("<p>" + ", ".join(f"{n} {esc(s)}" for s, n in counts.items()) + ". Each claim with its null, its "
                "negative control, a 95% bootstrap CI and a Holm-adjusted p-value.</p>")

    def tables_html(self) -> str:
        def cell(r: dict, h: str) -> str:
            text = esc(str(r.get(h, "–")))
            if h == "status":
                return f"<b style='color:{STATUS_COLOURS.get(r[h], '#222')}'>{text}</b>"
            return text

        head = "".join(f"<th>{esc(h)}</th>" for h in self.COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{cell(r, h)}</td>" for h in self.COLUMNS) + "</tr>" for r in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"


def show(obj, wb: Workbench | None = None, **kw) -> Rich:
    """The rich object of a result, to end a notebook cell with (or ``.to_html()`` for a page):
    a :class:`~ffnmem.methods.tracing.Trace` → :class:`TraceView`; a Result of kind ``causal_trace`` →
    :class:`CausalTraces`, ``direct_effects`` → :class:`DirectEffectsTable` (with ``wb``: the tokens each
    memory promotes), ``recall`` → :class:`RecallTable`, ``probe_curves`` → :class:`ProbeCurves`; claims
    rows (:func:`ffnmem.batch.claims_report.table_rows`) → :class:`ClaimsTable`. ``kw`` go to the view."""
    if isinstance(obj, Rich):
        return obj
    if isinstance(obj, Trace):
        return TraceView(obj, **kw)
    if isinstance(obj, Result):
        views = {"causal_trace": CausalTraces.of, "direct_effects": lambda r, **k: direct_effects_table(r, wb, **k),
                 "recall": RecallTable.of, "probe_curves": ProbeCurves.of}
        if obj.kind not in views:
            raise BadInput(f"no rich view of a {obj.kind!r} result (views: {', '.join(views)}); plot it with a viz.plot_* function")
        return views[obj.kind](obj, **kw)
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and {"claim", "status"} <= set(obj[0]):
        return ClaimsTable(obj, **kw)
    raise BadInput(f"no rich view of a {type(obj).__name__}: give a Trace, a Result (causal_trace, direct_effects, "
                   "recall, probe_curves) or claims rows")
