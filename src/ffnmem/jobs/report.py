"""``ffnmem report RUN``: one self-contained HTML file (plots as base64 PNG, tables, provenance).

Plots come from SQL over the run's catalogue (:func:`ffnmem.store.catalog.query`); :data:`PLOTS` maps an
analysis name to ``(sql, draw(df, ax))`` so a new analysis adds its figure with one entry.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ffnmem.core.paths import atomic_write_text
from ffnmem.store import catalog
from ffnmem.viz import plot_query, png_bytes
from ffnmem.viz.report import bars, lines

PLOTS = {
    "recall": ("SELECT relation, avg(top1::DOUBLE) AS top1, avg(p_answer) AS p_answer FROM recall_facts "
               "GROUP BY relation ORDER BY relation", bars("relation", ["top1", "p_answer"])),
    "direct_effects": ("SELECT layer, avg(ffn_direct) AS ffn, avg(attn_direct) AS attention FROM direct_effects_layers "
                       "GROUP BY layer ORDER BY layer", lines("layer", ["ffn", "attention"])),
    "ablation_topk_vs_random": ("SELECT avg(p_clean) AS clean, avg(p_top) AS top_k_ablated, avg(p_random) AS "
                                "random_ablated, 'mean p(answer)' AS what FROM ablation_topk_vs_random_prompts",
                                bars("what", ["clean", "top_k_ablated", "random_ablated"])),
    "causal_trace": ("SELECT kind, layer, avg(effect) AS effect FROM causal_trace_effects WHERE position = 'last' "
                     "GROUP BY kind, layer ORDER BY kind, layer", lines("layer", ["effect"], by="kind")),
    "key_agreement": ("SELECT layer, avg(agreement) AS agreement, avg(baseline) AS baseline FROM key_agreement_layers "
                      "GROUP BY layer ORDER BY layer", lines("layer", ["agreement", "baseline"])),
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


def render(run_dir: str | Path) -> str:
    """The report of a run folder as one HTML string."""
    run_dir = Path(run_dir)
    manifest = catalog.read_manifest(run_dir)
    units = catalog.query(run_dir, "SELECT unit_id, model, analysis, shard, seed, status, seconds FROM units")
    parts = [f"<h1>ffnmem run: {html.escape(manifest['batch_name'])}</h1>",
             f"<p>{int((units.status == 'done').sum())} of {len(units)} units done · batch "
             f"<code>{html.escape(manifest['batch_file'])}</code> · created {html.escape(manifest.get('created', ''))}</p>"]
    views = catalog.views(run_dir)
    for name in dict.fromkeys(units.analysis):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if name in PLOTS and any(v.startswith(name + "_") for v in views):
            sql, draw = PLOTS[name]
            parts.append(_png(catalog.query(run_dir, sql), draw, name))
        for view in (v for v in views if v.startswith(name + "_")):
            df = catalog.query(run_dir, f'SELECT * EXCLUDE (unit_id) FROM "{view}"')
            parts.append(f"<h3>{html.escape(view)} ({len(df)} rows)</h3>{_table(df)}")
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
