"""Jobs behind ``ffnmem probe`` and ``ffnmem sae``.

Each writes a :class:`~ffnmem.store.results.Result` (tables + provenance) and PNGs to an output folder
and returns that folder. Built-in labelled prompt sets (two simple relations) stand in for fact
sets: ``city → continent`` and ``word → category``; the probe reads the last token, which is the
last subject token.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ffnmem import viz
from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.jobs.params import Params
from ffnmem.methods import capture as cap
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
# Several templates per relation, so each subject (the word type of Hewitt & Liang's control task)
# recurs: with one prompt per subject every type is seen once and the control task reduces to chance.
# Every template ends with the subject, whose last token the probe reads.
RELATIONS = {
    "city_continent": (("The city of {}", "I travelled to {}", "We met in {}", "She was born in {}",
                        "A photo taken in {}"), CITY_CONTINENT),
    "word_category": (("Here is a word: {}", "I looked at the {}", "They talked about the {}",
                       "The next word is {}", "A picture of the {}"), WORD_CATEGORY),
}


def builtin_task(name: str, templates: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """``(prompts, labels, subjects)`` of a built-in relation: every subject in its first
    ``templates`` templates (all by default); the subject is each prompt's word type."""
    if name not in RELATIONS:
        raise BadInput(f"unknown task {name!r}; built-in tasks: {', '.join(RELATIONS)} (or pass --prompts FILE.tsv)")
    forms, table = RELATIONS[name]
    rows = [(t.format(s), label, s) for t in forms[:templates] for label, subs in table.items() for s in subs]
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


class ProbeParams(Params):
    """The batch analysis ``probe_selectivity`` (and ``ffnmem probe``)."""

    tasks: list[Literal["city_continent", "word_category"]] = ["city_continent", "word_category"]
    layers: list[int] = Field([0, 5, 10, 15, 20, 25, 29], min_length=1)
    kind: str = "resid_post"
    folds: int = Field(5, ge=2)
    draws: int = Field(5, ge=1)  # control-task draws, each with its own fold split
    C: float = Field(0.1, gt=0)
    templates: int | None = Field(None, ge=1)


def compute(wb: Workbench, tasks: dict[str, tuple[list, list, list]], p: ProbeParams, seed: int = 0, *,
            datasets: dict | None = None) -> Result:
    """Probe and control-task accuracy per task, layer, control draw and fold (table ``folds``), and
    their means per task and layer (table ``curves``: accuracy, control, selectivity, majority).
    ``datasets``, if given, receives each task's representation dataset (a Result to cache)."""
    hooks = [hook_name(p.kind, wb.check_layer(l)) for l in p.layers]
    curves, folds = [], []
    for task, (prompts, labels, types) in tasks.items():
        P.check_task(np.zeros((len(prompts), 1)), labels, p.folds)
        acts, where = P.representations(wb, prompts, hooks)
        if datasets is not None:
            datasets[task] = P.dataset_result(wb, acts, where, labels, prompts)
        rows = P.selectivity_folds(acts, labels, types, cv=p.folds, draws=p.draws, seed=seed,
                                   probe=P.LogisticProbe(C=p.C))
        majority = float(np.unique(labels, return_counts=True)[1].max() / len(labels))
        for layer, hook in zip(p.layers, hooks):
            mine = [r for r in rows if r["hook"] == hook]
            folds += [{"task": task, "layer": layer, **r} for r in mine]
            acc, ctrl = np.array([r["accuracy"] for r in mine]), np.array([r["control"] for r in mine])
            curves.append({"task": task, "layer": layer, "hook": hook, "accuracy": float(acc.mean()),
                           "accuracy_std": float(acc.std()), "control": float(ctrl.mean()),
                           "selectivity": float((acc - ctrl).mean()), "majority": majority,
                           "n_examples": len(labels), "n_types": len(set(types))})
    return Result(kind="probe_curves", tables={"curves": table_from_rows(curves), "folds": table_from_rows(folds)},
                  meta=p.model_dump(), provenance=make_provenance(wb, seed=seed, params=p.model_dump()))


def write(result: Result, out_dir: Path, datasets: dict | None = None) -> Path:
    """``out_dir/result``, ``curves.png`` and ``dataset-TASK`` folders; returns ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for task, ds in (datasets or {}).items():
        ds.save(out_dir / f"dataset-{task}")
    t = result.table("curves")
    curves = {task: g.to_dict("records") for task, g in t.groupby("task", sort=False)}
    save_figure(viz.plot_curves(curves, title=f"{result.provenance.get('model_id', '')} {result.meta['kind']} probes"),
                out_dir / "curves.png")
    result.save(out_dir / "result")
    return out_dir


def run_probe(wb: Workbench, tasks: dict[str, tuple[list, list, list]], layers: list[int], out_dir: Path, *,
              kind: str = "resid_post", folds: int = 5, seed: int = 0, C: float = 0.1, draws: int = 1) -> Path:
    """``ffnmem probe``: :func:`compute` then :func:`write`."""
    datasets: dict = {}
    p = ProbeParams(layers=layers, kind=kind, folds=folds, C=C, draws=draws)
    return write(compute(wb, tasks, p, seed, datasets=datasets), out_dir, datasets)


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


class SaeParams(Params):
    """The batch analysis ``sae_units``: one SAE (eai-sparsify, TopK) on the FFN coefficients of each layer."""

    layers: list[int] = Field([2, 7, 12, 17, 22, 27], min_length=1)
    expansion: int = Field(4, ge=1)
    k: int = Field(16, ge=1)
    epochs: int = Field(4, ge=1)
    top: int = Field(10, ge=2)  # top-activating positions per unit that the token statistics read


def compute_sae_units(wb: Workbench, tokens, p: SaeParams, seed: int = 0) -> Result:
    """Per layer, an SAE on the FFN coefficients (``post``) trained on the first 3/4 of the token
    positions; on the held-out 1/4, per alive unit (neuron, or SAE latent) the entropy of the tokens
    at its ``top`` largest activations and its concentration ``log2(top) - entropy`` (bits; higher =
    fewer distinct tokens drive it). Tables ``units`` (one row per unit) and ``metrics`` (per layer:
    FVU, L0, dead latents). A unit whose top activations are not all positive is left out (dead)."""
    layers = [wb.check_layer(l) for l in p.layers]
    acts = cap.collect(wb, tokens, [hook_name("post", l) for l in layers], progress=False)
    ids = tokens[:, 1:].reshape(-1).cpu()  # BOS positions left out, as in sae.capture_pairs
    n = len(ids) * 3 // 4
    units, metrics = [], []
    for layer in layers:
        a = acts.pop(hook_name("post", layer))[:, 1:].reshape(len(ids), -1).float()
        coder = S.train(a[:n], a[:n], transcode=False, expansion=p.expansion, k=p.k, epochs=p.epochs, seed=seed)
        metrics.append({"layer": layer, **S.evaluate(coder, a[n:], a[n:])})
        for kind, u in (("neuron", a[n:]), ("latent", S.encode(coder, a[n:]))):
            vals, rows = S.top_examples(u, p.top)
            alive = (vals > 0).all(0)
            ent = S.token_entropy(ids[n:][rows])
            units += [{"layer": layer, "kind": kind, "unit": int(j), "entropy_bits": float(ent[j]),
                       "concentration_bits": float(np.log2(p.top) - ent[j])} for j in torch.nonzero(alive)[:, 0]]
    return Result(kind="sae_units", tables={"units": table_from_rows(units), "metrics": table_from_rows(metrics)},
                  meta=p.model_dump(), provenance=make_provenance(wb, data_hash=tokens_hash(tokens), seed=seed,
                                                                  params=p.model_dump()))
