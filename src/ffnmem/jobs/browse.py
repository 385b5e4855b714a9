"""The ``ffnmem browse`` job: a static, offline site of a run's memories and facts.

Reads every ffnmem result below a folder (a ``demo``, ``keys``, ``locate`` or ``localize`` output
folder, a batch run's ``units/``, or ``ffnmem-out/`` holding several of them) and writes the site that
:mod:`ffnmem.viz.browse` describes. What each result kind gives:

* ``triggers`` (``ffnmem keys``): each memory's top trigger examples and activation statistics;
* ``memories`` (``ffnmem keys``): promoted/suppressed tokens and the coefficient histogram;
* ``key_agreement``: whether the memory's key and value agree (Geva et al. 2021);
* ``demo``, ``fact_card`` (``ffnmem locate``), ``localization`` (``ffnmem localize``): fact pages,
  and on each memory's page the facts it carries.

Results of one model only (one weight hash): a site mixes no models. Nothing is recomputed: the site
needs no model, and a memory shows what the run holds on it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ffnmem.core.errors import BadInput
from ffnmem.core.paths import atomic_write_text
from ffnmem.methods.tracing import Trace
from ffnmem.store.results import Result
from ffnmem.viz import browse as V
from ffnmem.viz import png_bytes
from ffnmem.viz.factcard import FactCard
from ffnmem.viz.figures import close
from ffnmem.viz.tracing import plot_trace

log = logging.getLogger(__name__)

SHOWN = ("triggers", "memories", "key_agreement", "demo", "fact_card", "localization")
MEMORY_HREF = "../memory.html?layer={layer}&neuron={neuron}"
DEMO_NOTE = ("From `ffnmem demo`: memories ranked by direct effect on the answer's margin over the other facts' "
             "answers; not validated by ablation (`ffnmem locate` does).")


@dataclass(frozen=True)
class Site:
    """What :func:`build` wrote: the folder, counts, its size in bytes and the seconds it took."""

    path: Path
    model: str
    n_layers: int
    n_memories: int
    n_facts: int
    n_bytes: int
    seconds: float


def find_results(run_dir: str | Path, model: str | None = None) -> dict[str, list[Path]]:
    """Result folders below ``run_dir`` by kind (kinds this site shows), all of one model."""
    root = Path(run_dir)
    if not root.is_dir():
        raise BadInput(f"{run_dir} is not a folder; give a folder written by ffnmem (demo, keys, locate, localize, run)")
    found: dict[str, list[Path]] = defaultdict(list)
    models: dict[str, str] = {}
    for header in sorted(root.rglob("header.json")):
        if any(p.startswith(".") for p in header.relative_to(root).parts):
            continue  # temp folders and backups of interrupted writes
        try:
            head = json.loads(header.read_text())
        except (OSError, ValueError):
            raise BadInput(f"{header} is damaged; re-run the analysis that wrote it") from None
        if not isinstance(head, dict) or head.get("kind") not in SHOWN:
            continue
        prov = head.get("provenance") or {}
        if model is not None and prov.get("model_id") != model:
            continue
        models[str(prov.get("weight_hash"))] = str(prov.get("model_id"))
        found[head["kind"]].append(header.parent)
    if not found:
        which = f" of model {model}" if model else ""
        raise BadInput(f"{run_dir} holds no browsable ffnmem results{which} (demo, keys, locate, localize or a batch "
                       "run's units); give a folder those commands wrote")
    if len(models) > 1:
        raise BadInput(f"{run_dir} holds results of several models ({', '.join(sorted(set(models.values())))}); "
                       "pick one with --model")
    return dict(found)


def _tok_list(memories: Result) -> dict[int, str]:
    t = memories.tables["tokens"]
    return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist(), strict=True))


def _memory_data(found: dict[str, list[Path]], examples: int) -> tuple[dict, dict]:
    """``{(layer, neuron): {...}}`` as the memory page reads it, and site facts (d_mlp, hist tokens)."""
    mem: dict[tuple[int, int], dict] = defaultdict(dict)
    info: dict = {"hist_tokens": None, "d_mlp": 0}
    for folder in found.get("triggers", []):
        tr = Result.load(folder)
        ex = tr.tables["examples"]
        cols = [ex.column(c).to_pylist() for c in ("layer", "neuron", "rank", "coeff", "context", "trigger", "next")]
        for l, n, r, c, ctx, trig, nxt in zip(*cols, strict=True):
            if r <= examples:
                mem[(l, n)].setdefault("ex", []).append([round(c, 4), ctx, trig, nxt])
        st = tr.tables["stats"]
        cols = [st.column(c).to_pylist() for c in ("layer", "neuron", "mean", "std", "frac_active", "max")]
        for l, n, *s in zip(*cols, strict=True):
            mem[(l, n)]["st"] = [round(x, 4) for x in s]
            info["d_mlp"] = max(info["d_mlp"], n + 1)
    for folder in found.get("memories", []):
        mv = Result.load(folder)
        text = _tok_list(mv)
        info["hist_tokens"] = mv.meta.get("hist_tokens")
        for l in mv.meta["layers"]:
            t = {k: mv.tensors[f"L{l}/{k}"].tolist() for k in ("top_ids", "top_scores", "bottom_ids", "bottom_scores")}
            hist, edges = mv.tensors[f"L{l}/hist"].tolist(), mv.tensors[f"L{l}/hist_edges"].tolist()
            info["d_mlp"] = max(info["d_mlp"], len(hist))
            for n in range(len(hist)):
                d = mem[(l, n)]
                d["p"] = [[text[i], round(s, 3)] for i, s in zip(t["top_ids"][n], t["top_scores"][n], strict=True)]
                d["s"] = [[text[i], round(s, 3)] for i, s in zip(t["bottom_ids"][n], t["bottom_scores"][n], strict=True)]
                d["h"], d["he"] = hist[n], [round(e, 4) for e in edges[n]]
    for folder in found.get("key_agreement", []):
        nt = Result.load(folder).tables["neurons"]
        for l, n, a in zip(*(nt.column(c).to_pylist() for c in ("layer", "neuron", "agreement")), strict=True):
            mem[(l, n)]["ag"] = int(a)
    return mem, info


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "fact"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}-{i}"
    taken.add(name)
    return name


def _demo_cards(res: Result, model: str) -> list[FactCard]:
    facts, neurons = res.table("facts").to_dict("records"), res.table("neurons").to_dict("records")
    cards = []
    for f in facts:
        rows = [{"rank": int(r["rank"]) - 1, "layer": int(r["layer"]), "neuron": int(r["neuron"]),
                 "score": float(r["direct_effect"]), "promotes": list(r["value_top_tokens"])}
                for r in neurons if r["subject"] == f["subject"]]
        cards.append(FactCard(model_id=model, fact={**f, "relation": "capital (demo)", "margin": None,
                                                    "alternatives": [g["target"] for g in facts if g is not f]},
                              memories={"direct effect on the margin (demo)": rows}, memory_href=MEMORY_HREF,
                              notes=[DEMO_NOTE]))
    return cards


def _card_of(res: Result, model: str) -> FactCard:
    fact = res.table("fact").to_dict("records")[0]
    fact["alternatives"] = [a for a in str(fact.get("alternatives", "")).split(", ") if a]
    memories: dict[str, list[dict]] = defaultdict(list)
    for r in res.table("memories").to_dict("records"):
        memories[r["method"]].append({**r, "promotes": list(r.get("promotes", []))})
    validation: dict[str, list[dict]] = defaultdict(list)
    if res.tables["validation"].num_rows:
        for r in res.table("validation").to_dict("records"):
            validation[r["method"]].append(r)
    png, tr = None, res.meta.get("trace")
    if tr:  # results written before the trace meta was kept show the top cells only
        effects = {k.removeprefix("trace/"): v for k, v in res.tensors.items() if k.startswith("trace/")}
        fig = plot_trace(Trace(tokens=tr["tokens"], subject=tuple(tr["subject"]), p_clean=tr["p_clean"],
                               p_corrupt=tr["p_corrupt"], effects=effects, window=tr["window"]))
        png = png_bytes(fig, dpi=80)
        close(fig)
    cells = res.table("cells").to_dict("records") if res.tables["cells"].num_rows else []
    return FactCard(model_id=model, fact=fact, memories=dict(memories), validation=dict(validation), cells=cells,
                    trace_png=png, memory_href=MEMORY_HREF)


def _localization_cards(res: Result, model: str) -> list[FactCard]:
    rows = {name: res.table(name).to_dict("records") if res.tables[name].num_rows else [] for name in
            ("facts", "memories", "validation", "cells")}
    cards = []
    for f in rows["facts"]:
        mine = {name: [r for r in rows[name] if r["fact"] == f["fact"]] for name in ("memories", "validation", "cells")}
        memories: dict[str, list[dict]] = defaultdict(list)
        for r in mine["memories"]:
            if r["rank"] < res.meta.get("params", {}).get("k", 20):
                memories[r["method"]].append(r)
        validation: dict[str, list[dict]] = defaultdict(list)
        for r in mine["validation"]:
            validation[r["method"]].append(r)
        cells = [{**c, "token": f"#{c['position']}"} for c in mine["cells"][:5]]
        notes = [] if f["known"] else ["Not known to the model (margin ≤ 0): not localized."]
        cards.append(FactCard(model_id=model, fact={**f, "alternatives": []}, memories=dict(memories),
                              validation=dict(validation), cells=cells, memory_href=MEMORY_HREF, notes=notes))
    return cards


def _fact_pages(found: dict[str, list[Path]], model: str) -> list[FactCard]:
    cards = []
    for folder in found.get("demo", []):
        cards += _demo_cards(Result.load(folder), model)
    for folder in found.get("fact_card", []):
        cards.append(_card_of(Result.load(folder), model))
    for folder in found.get("localization", []):
        cards += _localization_cards(Result.load(folder), model)
    return cards


def build(run_dir: str | Path, site_dir: str | Path, *, model: str | None = None, examples: int = 10,
          index_tokens: int = 5, claims: list[dict] | None = None) -> Site:
    """Write the site for the results below ``run_dir`` into ``site_dir`` (see the module docstring).

    ``examples``: trigger examples kept per memory; ``index_tokens``: promoted and trigger tokens per
    memory that the search sees; ``claims``: rows for ``claims.html`` (none: no claims page).
    """
    start = time.perf_counter()
    found = find_results(run_dir, model)
    first = json.loads((next(iter(found.values()))[0] / "header.json").read_text())  # not its tensors
    model_id = str(first.get("provenance", {}).get("model_id", "?"))
    mem, info = _memory_data(found, examples)
    cards = _fact_pages(found, model_id)
    out = Path(site_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "facts").mkdir(exist_ok=True)
    taken: set[str] = set()
    links = []
    for card in cards:
        f = card.fact
        label = f"{f['prompt']}{f['target']}"
        name = f"facts/{_slug(f.get('subject') or label, taken)}.html"
        atomic_write_text(out / name, V.fact_page(card.to_html(), label))
        links.append((name, label))
        for method, rows in card.memories.items():
            for r in rows:
                d = mem[(int(r["layer"]), int(r["neuron"]))]
                d.setdefault("f", []).append([name, label, f"{method} #{int(r['rank']) + 1}, score {float(r['score']):.3g}"])
                if "p" not in d and r.get("promotes"):  # no keys run: the card's value tokens (signed in context)
                    d["p"] = [[t, None] for t in r["promotes"]]
    layers = sorted({l for l, _ in mem})
    d_mlp = max([info["d_mlp"], *(n + 1 for _, n in mem)]) if mem else 0
    tokens: dict[str, int] = {}
    index = []
    for (l, n), d in sorted(mem.items()):
        prom = [tokens.setdefault(t, len(tokens)) for t, _ in d.get("p", [])[:index_tokens]]
        trig = [tokens.setdefault(t, len(tokens)) for t in dict.fromkeys(e[2] for e in d.get("ex", []))][:index_tokens]
        index.append([l, n, prom, trig])
    site = {"model": model_id, "layers": layers, "d_mlp": d_mlp, "n_memories": len(mem),
            "hist_tokens": info["hist_tokens"],
            "sources": [p.relative_to(Path(run_dir)).as_posix() or "." for ps in found.values() for p in ps]}
    atomic_write_text(out / "data" / "index.js", V.data_js("index", {"tokens": list(tokens), "memories": index}))
    atomic_write_text(out / "data" / "site.js", V.data_js("site", site))
    for layer in layers:
        atomic_write_text(out / "data" / f"layer-{layer}.js",
                          V.data_js(f"layer-{layer}", {str(n): d for (l, n), d in mem.items() if l == layer}))
    atomic_write_text(out / "site.css", V.CSS)
    atomic_write_text(out / "site.js", V.JS)
    atomic_write_text(out / "memory.html", V.memory_page())
    if claims is not None:
        atomic_write_text(out / "claims.html", V.claims_page(claims))
    atomic_write_text(out / "index.html", V.index_page(site, links, claims is not None))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Site(out, model_id, len(layers), len(mem), len(cards), size, time.perf_counter() - start)
