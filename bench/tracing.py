"""Benchmark: causal tracing (reuse + batching) vs one cell per forward; attribution vs activation patching.

Run: ``PYTHONPATH=src python bench/tracing.py [--model smollm2-135m] [--relations capital_of,city_country,company_founder] [--out docs/BENCHMARKS-facts.md]``.
Times wall-clock seconds on this machine; writes a Markdown table. Three paths trace the same cells
with the same noise: ``trace`` (cells grouped by their window's first layer reuse the corrupted run
below it; cells before the subject cost nothing), the batched-only path (every row runs the whole
model: :func:`ffnmem.methods.tracing.restore_batch` over all cells, ``max_rows`` rows per forward)
and the one-cell-per-forward loop (:func:`ffnmem.methods.tracing.trace_one_cell_per_forward`); the
max |difference| is between ``trace`` and the loop.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import ffnmem
from ffnmem.core.hooks import hook_name
from ffnmem.data.facts import encode_facts, load_facts
from ffnmem.methods.patching import activation_patching, attribution_patching
from ffnmem.methods.tracing import (
    FORWARD_COST,
    TRACED_HOOKS,
    kind_window,
    noise_sigma,
    restore_batch,
    subject_noise,
    trace,
    trace_one_cell_per_forward,
)


def batched_only(wb, e, kind, window, sigma, samples, seed, max_rows=256):
    """The batched path without reuse: all (layer, position) cells, every row the whole model."""
    tokens = wb.to_tokens(e.fact.prompt)
    names = {hook_name(TRACED_HOOKS[kind], l) for l in range(wb.n_layers)}
    with torch.inference_mode():
        _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    clean = {l: cache[hook_name(TRACED_HOOKS[kind], l)] for l in range(wb.n_layers)}
    noise = subject_noise(wb, e.subject, samples, seed, sigma)
    cells = [(l, t) for l in range(wb.n_layers) for t in range(tokens.shape[1])]
    per = max(1, max_rows // samples)
    return torch.cat([restore_batch(wb, tokens, e.answer_ids[0], e.subject, noise, clean, cells[i: i + per], kind,
                                    kind_window(kind, window)) for i in range(0, len(cells), per)])


def trace_rows(wb, encoded, kinds, window, samples, sigma):
    """One row per (fact, kind): seconds of each path and the max |trace − loop|."""
    rows = []
    for e in encoded:
        for kind in kinds:
            kw = {"n_samples": samples, "sigma": sigma, "seed": 0}
            t0 = time.perf_counter()
            fast = trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, kinds=(kind,), window=window, **kw)
            t_fast = time.perf_counter() - t0
            t0 = time.perf_counter()
            batched_only(wb, e, kind, window, sigma, samples, 0)
            t_batch = time.perf_counter() - t0
            t0 = time.perf_counter()
            loop = trace_one_cell_per_forward(wb, e.fact.prompt, e.answer_ids[0], e.subject, kind=kind,
                                              window=window, **kw)
            t_loop = time.perf_counter() - t0
            rows.append({"fact": e.fact.prompt, "kind": kind, "T": len(e.prompt_ids), "subject": e.subject,
                         "fast": t_fast, "batched": t_batch, "loop": t_loop,
                         "diff": float((fast.effects[kind] - loop).abs().max())})
            print(rows[-1], flush=True)  # progress: the tables come at the end
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--relations", default="capital_of,city_country,company_founder",
                    help="one fact (the first) of each relation is traced")
    ap.add_argument("--costs", default="0,64,256,1024,1e9",
                    help="forward_cost values of trace's pass planner timed on the first fact")
    ap.add_argument("--patch-sample", type=int, default=128, help="neurons patched for real")
    ap.add_argument("--out", default="docs/BENCHMARKS-facts.md")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    wb = ffnmem.load_model(args.model, device="auto")
    encoded = encode_facts(wb, load_facts("all", relations=args.relations.split(","), limit_per_relation=1))
    sigma = noise_sigma(wb, [wb.to_tokens(e.fact.prompt) for e in encoded], [e.subject for e in encoded])
    rows = trace_rows(wb, encoded, ("resid", "mlp"), args.window, args.samples, sigma)
    e = encoded[0]
    sweep = []
    for cost in (float(c) for c in args.costs.split(",")):
        t0 = time.perf_counter()
        trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, kinds=("resid", "mlp"), window=args.window,
              n_samples=args.samples, sigma=sigma, forward_cost=cost)
        sweep.append((cost, time.perf_counter() - t0))
        print("forward_cost", sweep[-1], flush=True)
    fast, batch, loop = (sum(r[k] for r in rows) for k in ("fast", "batched", "loop"))
    load1 = os.getloadavg()[0]

    corrupt = "The capital of Japan is" if "France" in e.fact.prompt else e.fact.prompt
    t0 = time.perf_counter()
    attr, _, _ = attribution_patching(wb, e.fact.prompt, corrupt, e.answer_ids[0])
    t_attr = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([attr.flatten().abs().argsort(descending=True)[: args.patch_sample // 2],
                     torch.randperm(attr.numel(), generator=g)[: args.patch_sample // 2]])
    neurons = [(int(i) // wb.d_mlp, int(i) % wb.d_mlp) for i in idx]
    t0 = time.perf_counter()
    true = activation_patching(wb, e.fact.prompt, corrupt, e.answer_ids[0], neurons)
    t_act = time.perf_counter() - t0
    per_neuron = t_act / len(neurons)
    est = attr.flatten()[idx]
    pearson = float(torch.corrcoef(torch.stack([est, true]))[0, 1])
    top_true = set(true.abs().argsort(descending=True)[:10].tolist())
    top_est = set(est.abs().argsort(descending=True)[:10].tolist())

    lines = [
        "# Benchmarks: where facts live", "",
        (f"Model `{wb.model_id}` on {wb.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} "
         f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load0:.1f} at the "
         f"start, {load1:.1f} after tracing)."), "",
        "## Causal tracing: reuse + batching vs one cell per forward pass", "",
        (f"Every (layer, position) cell of {wb.n_layers} layers, {args.samples} noise samples (σ = {sigma:.4f}, "
         f"the subject embeddings' std), MLP window {args.window} (trimmed at the edges); one fact of each of "
         f"{args.relations}. `trace`: cells grouped by their window's first layer run the corrupted rows up to "
         "it once, cells before the subject are 0 without a forward; batched only: all cells, ≤256 rows per "
         "forward, the whole model each; loop: one forward per cell."), "",
        "| fact | kind | tokens | subject | trace s | batched-only s | loop s | speed-up vs loop | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['fact']!r} | {r['kind']} | {r['T']} | {r['subject'][0]}..{r['subject'][1] - 1} | {r['fast']:.1f} | "
          f"{r['batched']:.1f} | {r['loop']:.1f} | {r['loop'] / r['fast']:.1f}× | {r['diff']:.1e} |" for r in rows],
        "", (f"Total: `trace` {fast:.1f} s, batched only {batch:.1f} s, loop {loop:.1f} s: **{loop / fast:.1f}×** "
             f"faster than the loop (batched only: {loop / batch:.1f}×); max |trace − loop| "
             f"{max(r['diff'] for r in rows):.1e}."), "",
        (f"`trace`'s pass planner (`forward_cost`, row·layer·token units; default {FORWARD_COST:g}) on "
         f"{e.fact.prompt!r}, resid + mlp:"), "",
        "| forward_cost | seconds |", "|---|---|", *[f"| {c:g} | {t:.2f} |" for c, t in sweep], "",
        "## Attribution patching vs activation patching (all FFN neurons)", "",
        f"Clean {e.fact.prompt!r}, corrupted {corrupt!r}, metric: answer logit.", "",
        "| method | seconds |", "|---|---|",
        f"| attribution patching, all {attr.numel():,} neurons (1 forward + 1 backward) | {t_attr:.2f} |",
        f"| activation patching, {len(neurons)} sampled neurons (batched) | {t_act:.2f} |",
        f"| activation patching, all {attr.numel():,} neurons (extrapolated) | {per_neuron * attr.numel():.0f} |",
        "", f"Cost ratio (all neurons, activation / attribution): {per_neuron * attr.numel() / t_attr:.0f}×. "
        f"Agreement on the sample (half largest |estimate|, half random): Pearson r = {pearson:.3f}; "
        f"top-10 overlap {len(top_true & top_est)}/10.", "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
