"""Encoder-decoder vs causal LM on the `tiny` architectures preset: one seed, a first look (issue 17).

Four arms on the same corpus and seed, all scored with `score_queries` (corpus templates):

* `causal`: the preset's decoder-only run as `compare-architectures` trains it (one biography per
  padded row, 300 steps × 32 documents);
* `encdec@tokens`: the encoder-decoder at the causal run's number of supervised (loss-bearing)
  tokens (batch = the sentences of 32 documents, steps = causal signal tokens / (batch · 3));
* `encdec@passes`: the encoder-decoder at the causal run's passes over the corpus (300 steps);
* `causal-sentences@passes`: the control: the same causal LM trained on the encoder-decoder's
  rows, one sentence per row (`BOS prompt value . EOS`), same batch and passes: it separates the
  data format (every sentence in the query's format at position 0) from the architecture.

One seed, no convergence criterion: not the fair comparison of issue 17 (equal FLOPs, equal
supervised tokens, convergence, 3 seeds). Writes docs/BENCHMARKS-encdec.md.

Run: PYTHONPATH=src python bench/encdec.py [--seed S]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from ffnmem.data.synthetic import generate
from ffnmem.methods.architectures import preset
from ffnmem.methods.frequency import by_exposure, score_queries, summarize
from ffnmem.methods.objectives import core_params, parse
from ffnmem.methods.training import train

OUT = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS-encdec.md"
NOTES = "<!-- notes below are kept when the bench rewrites this file -->"


def arm(name, corpus, scored, tr, obj) -> dict:
    t0 = time.perf_counter()
    run = train(corpus, tr, device="cpu", progress=False, objective=obj)
    rows = score_queries(run.wb, scored.queries, value_sets=scored.values, value_noise=scored.config.value_noise,
                         objective=obj)
    return {"arm": name, "steps": tr.steps, "batch": tr.batch_size, "signal": run.signal_tokens, "passes": run.epochs,
            "loss": run.losses[-1]["loss"], "core_params": core_params(run.wb.bridge.original_model),
            "summary": summarize(rows), "bins": by_exposure(rows, n_boot=1000, seed=0),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = preset("tiny")
    facts, base = dataclasses.replace(cfg.facts, seed=args.seed), dataclasses.replace(cfg.train, seed=args.seed)
    corpus = generate(facts)
    per_doc = len(facts.attributes)  # sentences per biography
    pairs = dataclasses.replace(base, batch_size=base.batch_size * per_doc)
    sentences = dataclasses.replace(corpus, documents=[s.strip() + " ." for d in corpus.documents
                                                       for s in d.split(" .") if s.strip()])
    out = [arm("causal", corpus, corpus, base, parse("causal"))]
    steps = round(out[0]["signal"] / (pairs.batch_size * 3))
    out.append(arm("encdec@tokens", corpus, corpus, dataclasses.replace(pairs, steps=steps), parse("encdec")))
    out.append(arm("encdec@passes", corpus, corpus, pairs, parse("encdec")))
    out.append(arm("causal-sentences@passes", sentences, corpus, pairs, parse("causal")))
    old = OUT.read_text() if OUT.exists() else ""
    notes = old.partition(NOTES)[2] if NOTES in old else ""
    OUT.write_text(report(out, args.seed) + (f"\n{NOTES}{notes}" if notes else ""))


def report(out: list[dict], seed: int) -> str:
    bins = [b["exposures"] for b in out[0]["bins"]]
    head = ["arm", "steps × batch", "supervised tokens", "passes", "final loss (nats)", "core params", "recall",
            *[f"recall@{e} (95% CI)" for e in bins], "loss bits", "KL bits", "seconds"]
    lines = ["# Encoder-decoder vs causal LM, tiny preset, one seed (issue 17, first look)", "",
             (f"Made by `bench/encdec.py --seed {seed}` on {platform.node()} ({platform.processor() or 'cpu'}), "
             "torch threads 1, a shared 2-core VM (seconds are indicative only). Facts: the `tiny` "
             "architectures preset (60 entities × 4 attributes, |V| = 16, value noise 0.05, exposures 1/4/16/64); "
             "model 2 layers d 64 (encoder-decoder: 1 + 1 layers, d_mlp 191 instead of 256). Recall on the "
             "corpus-template queries; CIs bootstrap over facts (one seed: no seed variance)."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in out:
        s = r["summary"]
        cells = [r["arm"], f"{r['steps']} × {r['batch']}", f"{r['signal']:,}", f"{r['passes']:.1f}", f"{r['loss']:.3f}",
                 f"{r['core_params']:,}", f"{s['accuracy']:.3f}",
                 *[f"{b['accuracy']:.2f} ({b['accuracy_lo']:.2f}–{b['accuracy_hi']:.2f})" for b in r["bins"]],
                 f"{s['loss_bits']:.2f}", f"{s['kl_bits']:.2f}", f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
