"""Ground-truth localization (Chang et al. 2024's INJ) on the `tiny` synthetic-facts model.

Trains the `tiny` preset (or loads a finished run), plants new facts in random FFN neurons
(:mod:`ffnmem.methods.injection`) and scores per-neuron DLA (margin over the relation's other values)
and a random ranking at k = neurons per fact. Designs: ``each`` (one fact per model, undone before
the next: Chang's) and ``joint`` (all facts in one model, disjoint neuron sets).

Run: PYTHONPATH=src python bench/injection.py [--run DIR] [--facts 24] [--per-fact 8] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ffnmem.data.synthetic import generate
from ffnmem.methods import injection as inj
from ffnmem.methods.training import load_run, preset, train


def _facts_summary(injections: list[inj.Injection]) -> dict:
    rows = [r for i in injections for r in i.rows()]
    others = [i.others for i in injections]
    return {"n": len(rows), "recalled_before": float(np.mean([r["recalled_before"] for r in rows])),
            "recalled_own": float(np.mean([i.recalled_own[j] for i in injections for j in range(len(i.facts))])),
            "recalled": float(np.mean([r["recalled"] for r in rows])),
            "converged": float(np.mean([r["converged"] for r in rows])),
            "train_recall": float(np.mean([r["train_recall"] for r in rows])),
            "heldout_recall": float(np.mean([r["heldout_recall"] for r in rows if r["heldout_recall"] is not None])),
            "steps": float(np.mean([r["steps"] for r in rows])),
            "margin_before": float(np.mean([r["margin_before"] for r in rows])),
            "margin": float(np.mean([r["margin"] for r in rows])),
            "others_recall_before": float(np.mean([o["recall_before"] for o in others])),
            "others_recall_after": float(np.mean([o["recall_after"] for o in others])),
            "others_lost": float(np.mean([o["lost"] for o in others])),
            "others_same_before": float(np.mean([o["recall_before_same"] for o in others])),
            "others_same_after": float(np.mean([o["recall_after_same"] for o in others])),
            "others_other_after": float(np.mean([o["recall_after_other"] for o in others
                                                 if o["recall_after_other"] is not None] or [np.nan])),
            "others_margin_change": float(np.mean([o["margin_change"] for o in others])),
            "weights_ok": all(i.weight_check["ok"] for i in injections),
            "seconds": float(sum(i.seconds for i in injections))}


def run_design(wb, facts, held, others, *, design: str, layers: list[int], parts: str, per_fact: int, seed: int,
               retain=None, stop_loss: float = 0.05) -> dict:
    kw = {"neurons_per_fact": per_fact, "layers": layers, "parts": parts, "others": others, "retain": retain,
          "stop_loss": stop_loss}
    t0 = time.perf_counter()
    if design == "each":
        injections, ranked = inj.inject_each(wb, facts, {"dla": lambda w, f: inj.dla_rankings(w, [f], layers)[0]},
                                             seed=seed, heldout=held, **kw)
        planted = [i.planted[0] for i in injections]
    else:
        one = inj.inject_facts(wb, facts, seed=seed, heldout=held, **kw)
        ranked = {"dla": inj.dla_rankings(wb, facts, layers)}
        one.undo(wb)
        injections, planted = [one], one.planted
    eligible = len(layers) * wb.d_mlp
    ranked["random"] = inj.random_rankings(layers, wb.d_mlp, len(facts), seed=seed)
    scores = {name: inj.summarize_localization(r, planted, per_fact, eligible=eligible, seed=seed)
              for name, r in ranked.items()}
    return {"design": design, "layers": layers, "parts": parts, "per_fact": per_fact, "retain": retain is not None,
            "facts": _facts_summary(injections), "scores": scores, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", default=None, help="a finished `tiny` training run folder (else train one, in memory)")
    ap.add_argument("--facts", type=int, default=24)
    ap.add_argument("--per-fact", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stop-loss", type=float, default=0.05, help="Chang's 0.05; a huge value stops at top-1 recall")
    ap.add_argument("--no-retain", action="store_true", help="skip the designs with a retain term (the slow ones)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fact_cfg, train_cfg = preset("tiny")
    corpus = generate(fact_cfg)
    t0 = time.perf_counter()
    wb = load_run(args.run, device="cpu")[0] if args.run else train(corpus, train_cfg, None, device="cpu", progress=False).wb
    setup = {"preset": "tiny", "train_seconds": None if args.run else time.perf_counter() - t0,
             "n_layers": wb.n_layers, "d_mlp": wb.d_mlp, "d_model": wb.d_model, "n_params": wb.n_params()}
    facts, held = inj.new_facts(corpus, args.facts, seed=args.seed)
    # collateral is measured on the odd entities; the retain term (where used) sees only the even ones
    known = inj.corpus_facts(corpus)
    ids = [f["entity_id"] for f in corpus.facts]
    others = [f for f, i in zip(known, ids) if i % 2]
    kept = [f for f, i in zip(known, ids) if not i % 2]
    out = {"setup": {**setup, "stop_loss": args.stop_loss}, "runs": []}
    designs = [("each", [1], "value", None), ("each", [0], "value", None), ("each", [0, 1], "value", None),
               ("each", [1], "key_value", None), ("each", [0], "key_value", None), ("joint", [0, 1], "value", None),
               ("each", [1], "value", kept), ("each", [1], "key_value", kept), ("each", [0], "key_value", kept)]
    for design, layers, parts, retain in designs:
        if retain is not None and args.no_retain:
            continue
        res = run_design(wb, facts, held, others, design=design, layers=layers, parts=parts,
                         per_fact=args.per_fact, seed=args.seed, retain=retain, stop_loss=args.stop_loss)
        out["runs"].append(res)
        f, d, r = res["facts"], res["scores"]["dla"], res["scores"]["random"]
        print(f"| {design} | L{','.join(map(str, layers))} | {parts}{' +retain' if retain else ''} | {f['recalled_before']:.2f} → {f['recalled']:.2f} "
              f"(own {f['recalled_own']:.2f}, conv {f['converged']:.2f}, held-out {f['heldout_recall']:.2f}) | "
              f"{f['others_recall_before']:.3f} → {f['others_recall_after']:.3f} "
              f"(same rel. {f['others_same_before']:.3f} → {f['others_same_after']:.3f}) | "
              f"{d['precision']:.3f} [{d['precision_lo']:.3f}, {d['precision_hi']:.3f}] | "
              f"{r['precision']:.3f} [{r['precision_lo']:.3f}, {r['precision_hi']:.3f}] | {d['chance_precision']:.4f} | "
              f"{res['seconds']:.0f} s |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
