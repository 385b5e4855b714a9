"""``ffnmem report RUN``: one self-contained HTML file (plots as base64 PNG, tables, provenance).

Analyses with a rich object (:mod:`ffnmem.viz.rich`, :mod:`ffnmem.viz.tables`: recall, direct effects,
causal tracing, probes) show the same object a notebook shows, built per model from the run's rows
(:data:`RICH`); other analyses get a chart from SQL over the run's catalogue
(:func:`ffnmem.store.catalog.query`): :data:`PLOTS` maps an analysis name to ``(sql, draw(df, ax))``
so a new analysis adds its figure with one entry. Then every table of the run, first rows only.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ffnmem.core.paths import atomic_write_text
from ffnmem.store import catalog
from ffnmem.viz import (
    CausalTraces,
    DirectEffectsTable,
    ProbeCurves,
    RecallTable,
    plot_query,
    png_bytes,
)
from ffnmem.viz.report import bars, lines

PLOTS = {
    "ablation_topk_vs_random": ("SELECT avg(p_clean) AS clean, avg(p_top) AS top_k_ablated, avg(p_random) AS "
                                "random_ablated, 'mean p(answer)' AS what FROM ablation_topk_vs_random_prompts",
                                bars("what", ["clean", "top_k_ablated", "random_ablated"])),
    "key_agreement": ("SELECT layer, avg(agreement) AS agreement, avg(baseline) AS baseline FROM key_agreement_layers "
                      "GROUP BY layer ORDER BY layer", lines("layer", ["agreement", "baseline"])),
}

PROBE_SQL = ("SELECT model, task, layer, avg(accuracy) AS accuracy, avg(accuracy_std) AS accuracy_std, "
             "avg(control) AS control, avg(selectivity) AS selectivity, avg(majority) AS majority "
             "FROM probe_selectivity_curves GROUP BY model, task, layer ORDER BY model, task, layer")
# analysis -> (views it needs, build(rows of each view, model, a unit's meta) -> rich object), one per model;
# shards pooled, the lowest seed only (another seed repeats the facts), probes averaged over seeds
RICH = {
    "recall": (("recall_facts",), lambda v, m, meta: RecallTable.from_facts(v["recall_facts"], k=meta.get("k"),
                                                                            scoring=meta.get("scoring", "?"),
                                                                            title=f"recall · {m}")),
    "direct_effects": (("direct_effects_neurons", "direct_effects_layers"),
                       lambda v, m, meta: DirectEffectsTable(v["direct_effects_neurons"], v["direct_effects_layers"], limit=5,
                                                       title=f"direct effects on the answer logit · {m}")),
    "causal_trace": (("causal_trace_facts", "causal_trace_effects"),
                     lambda v, m, meta: CausalTraces(v["causal_trace_facts"], v["causal_trace_effects"],
                                               title=f"causal tracing · {m}")),
    "probe_selectivity": (("probe_selectivity_curves",),
                          lambda v, m, meta: ProbeCurves(v["probe_selectivity_curves"], title=f"linear probes by layer · {m}")),
}

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
         "th{background:#eef}img{max-width:100%}pre{background:#f6f6f6;padding:8px;font-size:11px;overflow:auto}"
         ".done{color:#2a7}.failed{color:#c33}.pending{color:#a80}")


def _png(df, draw, title: str) -> str:
    png = png_bytes(plot_query(df, draw, title=title), dpi=100)
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(df, limit: int = 20) -> str:
    more = f"<p>… {len(df) - limit} more rows (query the catalogue)</p>" if len(df) > limit else ""
    return df.head(limit).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0) + more


def _meta(run_dir: Path, manifest: dict, name: str, model: str) -> dict:
    """The ``meta`` of the first finished unit of analysis ``name`` on ``model`` (its parameters)."""
    for u in manifest["units"]:
        header = catalog.unit_dir(run_dir, u["unit_id"]) / "header.json"
        if u["analysis"] == name and u["model"] == model and header.exists():
            return json.loads(header.read_text()).get("meta", {})
    return {}


def _rich(con, run_dir: Path, manifest: dict, name: str) -> list[str]:
    """The HTML of analysis ``name``'s rich objects, one per model, from the run's rows."""
    needed, build = RICH[name]
    frames = {v: (PROBE_SQL if v == "probe_selectivity_curves" else f'SELECT * EXCLUDE (unit_id) FROM "{v}"')
              for v in needed}
    frames = {v: con.execute(sql).df() for v, sql in frames.items()}
    models = list(dict.fromkeys(frames[needed[0]]["model"]))

    def rows(df, m):
        df = df[df.model == m]
        return (df[df.seed == df.seed.min()] if "seed" in df else df).to_dict("records")

    return [build({v: rows(df, m) for v, df in frames.items()}, m,
                  _meta(run_dir, manifest, name, m)).to_html() for m in models]


def render(run_dir: str | Path) -> str:
    """The report of a run folder as one HTML string."""
    run_dir = Path(run_dir)
    manifest = catalog.read_manifest(run_dir)
    units = catalog.query(run_dir, "SELECT unit_id, model, analysis, shard, seed, status, seconds FROM units")
    parts = [f"<h1>ffnmem run: {html.escape(manifest['batch_name'])}</h1>",
             f"<p>{int((units.status == 'done').sum())} of {len(units)} units done · batch "
             f"<code>{html.escape(manifest['batch_file'])}</code> · created {html.escape(manifest.get('created', ''))}</p>"]
    views = catalog.views(run_dir)
    con = catalog.connect(run_dir)
    try:
        for name in dict.fromkeys(units.analysis):
            parts.append(f"<h2>{html.escape(name)}</h2>")
            if name in RICH and all(v in views for v in RICH[name][0]):
                parts += _rich(con, run_dir, manifest, name)
            elif name in PLOTS and any(v.startswith(name + "_") for v in views):
                sql, draw = PLOTS[name]
                parts.append(_png(con.execute(sql).df(), draw, name))
            for view in (v for v in views if v.startswith(name + "_")):
                df = con.execute(f'SELECT * EXCLUDE (unit_id) FROM "{view}"').df()
                parts.append(f"<h3>{html.escape(view)} ({len(df)} rows)</h3>{_table(df)}")
    finally:
        con.close()
    parts.append("<h2>Units</h2>" + units.to_html(index=False, border=0))
    parts.append(f"<h2>Provenance</h2><pre>{html.escape(json.dumps(_provenance(run_dir, manifest), indent=1))}</pre>")
    parts.append(f"<h3>Batch file</h3><pre>{html.escape(manifest['batch_text'])}</pre>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ffnmem {html.escape(manifest['batch_name'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _provenance(run_dir: Path, manifest: dict) -> dict:
    out = {}
    for u in manifest["units"]:
        header = catalog.unit_dir(run_dir, u["unit_id"]) / "header.json"
        if header.exists() and u["model"] not in out:
            prov = json.loads(header.read_text()).get("provenance", {})
            out[u["model"]] = {k: v for k, v in prov.items() if k not in ("params", "seed", "data_hash", "created")}
    return out


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report.html`` and return its path."""
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, render(run_dir))
    return path
