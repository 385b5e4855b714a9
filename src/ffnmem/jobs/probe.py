"""Jobs behind ``ffnmem probe`` and ``ffnmem sae``.

Each writes a :class:`~ffnmem.store.results.Result` (tables + provenance) and PNGs to an output folder
and returns that folder. Built-in labelled prompt sets (two simple relations) stand in for fact
sets: ``city → continent`` and ``word → category``; the probe reads the last token, which is the
last subject token.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ffnmem import viz
from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.methods import probes as P
from ffnmem.methods import sae as S
from ffnmem.store.provenance import make_provenance, tokens_hash
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import save_figure

CITY_CONTINENT = {
    "Europe": ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Lisbon", "Dublin", "Oslo", "Athens", "Budapest"],
    "Asia": ["Tokyo", "Beijing", "Seoul", "Bangkok", "Delhi", "Jakarta", "Manila", "Hanoi", "Shanghai", "Mumbai", "Osaka", "Karachi"],
    "Africa": ["Cairo", "Lagos", "Nairobi", "Accra", "Dakar", "Tunis", "Algiers", "Casablanca", "Kampala", "Khartoum", "Luanda", "Harare"],
    "America": ["Chicago", "Toronto", "Boston", "Houston", "Lima", "Bogota", "Santiago", "Havana", "Denver", "Seattle", "Montreal", "Caracas"],
}
WORD_CATEGORY = {
    "animal": ["dog", "cat", "horse", "lion", "tiger", "rabbit", "mouse", "sheep", "goat", "wolf", "bear", "fox"],
    "food": ["bread", "apple", "cheese", "rice", "banana", "soup", "butter", "pasta", "cake", "orange", "grape", "meat"],
    "vehicle": ["car", "bus", "train", "truck", "bicycle", "boat", "plane", "ship", "taxi", "tram", "van", "motorcycle"],
    "tool": ["hammer", "knife", "saw", "drill", "wrench", "shovel", "axe", "needle", "brush", "rake", "chisel", "scissors"],
}
RELATIONS = {
    "city_continent": ("The city of {}", CITY_CONTINENT),
    "word_category": ("Here is a word: {}", WORD_CATEGORY),
}


def builtin_task(name: str) -> tuple[list[str], list[str], list[str]]:
    """``(prompts, labels, subjects)`` of a built-in relation."""
    if name not in RELATIONS:
        raise BadInput(f"unknown task {name!r}; built-in tasks: {', '.join(RELATIONS)} (or pass --prompts FILE.tsv)")
    template, table = RELATIONS[name]
    rows = [(template.format(s), label, s) for label, subs in table.items() for s in subs]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def read_task(path: Path) -> tuple[list[str], list[str], list[str]]:
    """A TSV with columns ``prompt``, ``label`` (and optional ``type`` for the control task)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    if not rows or not {"prompt", "label"} <= set(rows[0]):
        raise BadInput(f"{path} needs a header with tab-separated columns 'prompt' and 'label' (optional 'type')")
    return [r["prompt"] for r in rows], [r["label"] for r in rows], [r.get("type") or r["prompt"] for r in rows]


def run_probe(wb: Workbench, tasks: dict[str, tuple[list, list, list]], layers: list[int], out_dir: Path, *,
              kind: str = "resid_post", folds: int = 5, seed: int = 0, C: float = 0.1) -> Path:
    """Per-layer CV probe curves with control tasks for each task; curves.png + result."""

    out_dir.mkdir(parents=True, exist_ok=True)
    hooks = [hook_name(kind, l) for l in layers]
    curves, rows = {}, []
    for task, (prompts, labels, types) in tasks.items():
        P.check_task(np.zeros((len(prompts), 1)), labels, folds)
        acts, where = P.representations(wb, prompts, hooks)
        P.dataset_result(wb, acts, where, labels, prompts).save(out_dir / f"dataset-{task}")
        curve = P.layer_curve(acts, np.asarray(labels), types, cv=folds, seed=seed, probe=P.LogisticProbe(C=C))
        curves[task] = curve
        rows += [{"task": task, "layer": l, **r} for l, r in zip(layers, curve)]
    save_figure(viz.plot_curves(curves, title=f"{wb.provenance().get('model_id', '')} {kind} probes"),
                out_dir / "curves.png")
    Result(kind="probe_curves", tables={"curves": table_from_rows(rows)}, meta={"kind": kind, "folds": folds, "C": C},
           provenance=make_provenance(wb, seed=seed)).save(out_dir / "result")
    return out_dir


def run_sae(wb: Workbench, tokens, layer: int, out_dir: Path, *, targets=("transcoder", "post"), expansion: int = 4,
            k: int = 16, epochs: int = 4, seed: int = 0, top: int = 10) -> tuple[Path, list[dict]]:
    """Train a transcoder and/or an SAE on ``layer``; held-out FVU, L0, dead latents, proxy, examples."""

    out_dir.mkdir(parents=True, exist_ok=True)
    rows, examples = [], []
    for target in targets:
        x, y, ids = S.capture_pairs(wb, tokens, layer, target=target)
        n = len(x) * 3 // 4
        coder = S.train(x[:n], y[:n], transcode=target == "transcoder", expansion=expansion, k=k, epochs=epochs,
                        seed=seed)
        ev = S.evaluate(coder, x[n:], y[n:])
        z = S.encode(coder, x[n:])
        neurons = S.capture_pairs(wb, tokens, layer, target="post")[0][n:] if target != "post" else x[n:]
        mono = S.monosemanticity(neurons, z, ids[n:], k=top)
        rows.append({"target": target, "layer": layer, **ev, **{f"{u}_{m}": v for u, d in mono.items()
                                                                for m, v in d.items()}})
        vals, where = S.top_examples(z, k=5)
        for latent in range(min(32, z.shape[1])):
            toks = [wb.decode(int(ids[n + int(r)])) for v, r in zip(vals[:, latent], where[:, latent]) if v > 0]
            examples.append({"target": target, "latent": latent, "top_tokens": " | ".join(toks)})
    Result(kind="sae", tables={"metrics": table_from_rows(rows), "examples": table_from_rows(examples)},
           meta={"expansion": expansion, "k": k, "epochs": epochs},
           provenance=make_provenance(wb, data_hash=tokens_hash(tokens), seed=seed)).save(out_dir / "result")
    return out_dir, rows
