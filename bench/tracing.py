"""Benchmark: causal tracing (reuse + batching) vs one cell per forward; attribution vs activation patching.

Run: ``PYTHONPATH=src python bench/tracing.py [--model smollm2-135m] [--relations capital_of,city_country,company_founder] [--kinds ...] [--loop-kinds ...] [--tracing-only] [--out docs/BENCHMARKS-facts.md]``.
Times wall-clock seconds on this machine; writes a Markdown table. Three paths trace the same cells
with the same noise: ``trace`` (passes run only the positions from their first cell on, against the
corrupted run's cached keys and values, and share the corrupted rows below the cells' first restored
layer; cells before the subject cost nothing), the batched-only path (every row runs the whole
model: :func:`ffnmem.methods.tracing.restore_batch` over all cells, ``max_rows`` rows per forward)
and the one-cell-per-forward loop (:func:`ffnmem.methods.tracing.trace_one_cell_per_forward`); the
max |difference| is between ``trace`` and the loop. The loop is slow (one forward per cell): limit it
with ``--loop-kinds`` and ``--loop-facts``.
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
    TRACED,
    TRACED_HOOKS,
    kind_window,
    noise_sigma,
    restore_batch,
    subject_noise,
    trace,
    trace_one_cell_per_forward,
    window_layers,
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


def reuse_bound(T: int, s0: int, L: int, window: int) -> float:
    """The loop's row·layer·token work over ``trace``'s expanded work when every cell is its own pass
    expanding at its window's first layer: ``T²·L² / Σ_{t ≥ s0} (T − t) · Σ_l (L − lo(l))`` (no reuse
    beyond the corrupted run below ``lo`` and before ``t`` is exact)."""
    return T * T * L * L / (sum(T - t for t in range(s0, T)) * sum(L - window_layers(l, window, L).start
                                                                  for l in range(L)))


def trace_rows(wb, encoded, kinds, loop_kinds, window, samples, sigma, batched_kinds):
    """One row per (fact, kind): seconds of each path and the max |trace − loop| (loop and batched-only
    only for ``loop_kinds`` / ``batched_kinds``)."""
    rows = []
    for e in encoded:
        for kind in kinds:
            kw = {"n_samples": samples, "sigma": sigma, "seed": 0}
            t0 = time.perf_counter()
            fast = trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, kinds=(kind,), window=window, **kw)
            row = {"fact": e.fact.prompt, "kind": kind, "T": len(e.prompt_ids), "subject": e.subject,
                   "fast": time.perf_counter() - t0, "batched": None, "loop": None, "diff": None,
                   "bound": reuse_bound(len(e.prompt_ids), e.subject[0], wb.n_layers, kind_window(kind, window))}
            if kind in batched_kinds:
                t0 = time.perf_counter()
                batched_only(wb, e, kind, window, sigma, samples, 0)
                row["batched"] = time.perf_counter() - t0
            if kind in loop_kinds:
                t0 = time.perf_counter()
                loop = trace_one_cell_per_forward(wb, e.fact.prompt, e.answer_ids[0], e.subject, kind=kind,
                                                  window=window, **kw)
                row["loop"] = time.perf_counter() - t0
                row["diff"] = float((fast.effects[kind] - loop).abs().max())
            rows.append(row)
            print(rows[-1], flush=True)  # progress: the tables come at the end
    return rows


def _s(x, fmt="{:.1f}"):
    return "—" if x is None else fmt.format(x)


def tracing_lines(wb, rows, args, sigma, load0, load1) -> list[str]:
    timed = [r for r in rows if r["loop"] is not None]
    lines = [
        "## Causal tracing: reuse + batching vs one cell per forward pass", "",
        (f"Model `{wb.model_id}` on {wb.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} "
         f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load0:.1f} at the "
         f"start, {load1:.1f} at the end; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})."), "",
        (f"Every (layer, position) cell of {wb.n_layers} layers, {args.samples} noise samples (σ = {sigma:.4f}, "
         f"the subject embeddings' std), window {args.window} (trimmed at the edges; 1 for resid and *_w1). "
         "`trace`: passes of cells run only the positions from their first cell on, against the corrupted "
         "run's cached keys and values of the positions before, and the corrupted rows up to the cells' "
         "first restored layer once; cells before the subject are 0 without a forward. Batched only: all "
         "cells, ≤256 rows per forward, the whole model each. Loop: one forward per cell. All three read the "
         "last position's logits only. Reuse bound: the loop's work over `trace`'s expanded work "
         "(row·layer·token), the most exact reuse of the corrupted run can give on that prompt."), "",
        "| fact | kind | tokens | subject | trace s | batched-only s | loop s | speed-up vs loop | reuse bound | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['fact']!r} | {r['kind']} | {r['T']} | {r['subject'][0]}..{r['subject'][1] - 1} | {r['fast']:.1f} | "
          f"{_s(r['batched'])} | {_s(r['loop'])} | "
          f"{_s(None if r['loop'] is None else r['loop'] / r['fast'], '{:.1f}×')} | {r['bound']:.1f}× | "
          f"{_s(r['diff'], '{:.1e}')} |" for r in rows], ""]
    for kind in dict.fromkeys(r["kind"] for r in timed):
        ks = [r for r in timed if r["kind"] == kind]
        lines.append(f"- {kind}: `trace` {sum(r['fast'] for r in ks):.1f} s, loop {sum(r['loop'] for r in ks):.1f} s: "
                     f"**{sum(r['loop'] for r in ks) / sum(r['fast'] for r in ks):.1f}×** ({len(ks)} facts)")
    if timed:
        fast, loop = sum(r["fast"] for r in timed), sum(r["loop"] for r in timed)
        lines += ["", (f"Overall (rows with a loop): `trace` {fast:.1f} s, loop {loop:.1f} s: **{loop / fast:.1f}×**; "
                       f"max |trace − loop| {max(r['diff'] for r in timed):.1e}.")]
        batched = [r for r in timed if r["batched"] is not None]
        if batched:
            lines.append(f"Batched only on its rows: {sum(r['loop'] for r in batched) / sum(r['batched'] for r in batched):.1f}× "
                         f"vs the loop; `trace` {sum(r['loop'] for r in batched) / sum(r['fast'] for r in batched):.1f}×.")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--kinds", default=",".join(TRACED))
    ap.add_argument("--loop-kinds", default=",".join(TRACED), help="kinds also run by the one-cell loop")
    ap.add_argument("--batched-kinds", default="mlp,resid", help="kinds also run batched only ('' for none)")
    ap.add_argument("--loop-facts", type=int, default=3, help="the loop runs on the first this many facts only")
    ap.add_argument("--tracing-only", action="store_true", help="skip the cost sweep and patching")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--relations", default="capital_of,city_country,company_founder",
                    help="one fact (the first) of each relation is traced")
    ap.add_argument("--costs", default="0,64,256,1024,1e9",
                    help="forward_cost values of trace's pass planner timed on the first fact")
    ap.add_argument("--patch-sample", type=int, default=128, help="neurons patched for real")
    ap.add_argument("--out", default="docs/BENCHMARKS-facts.md")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine two threads contend and run slower)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    wb = ffnmem.load_model(args.model, device="auto")
    encoded = encode_facts(wb, load_facts("all", relations=args.relations.split(","), limit_per_relation=1))
    sigma = noise_sigma(wb, [wb.to_tokens(e.fact.prompt) for e in encoded], [e.subject for e in encoded])
    rows = trace_rows(wb, encoded[: args.loop_facts], args.kinds.split(","), args.loop_kinds.split(","),
                      args.window, args.samples, sigma, [k for k in args.batched_kinds.split(",") if k])
    rows += trace_rows(wb, encoded[args.loop_facts:], args.kinds.split(","), [], args.window, args.samples, sigma, [])
    load1 = os.getloadavg()[0]
    tracing = tracing_lines(wb, rows, args, sigma, load0, load1)
    if args.tracing_only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(tracing))
        print("\n".join(tracing))
        return
    e = encoded[0]
    sweep = []
    for cost in (float(c) for c in args.costs.split(",")):
        t0 = time.perf_counter()
        trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, kinds=("resid", "mlp"), window=args.window,
              n_samples=args.samples, sigma=sigma, forward_cost=cost)
        sweep.append((cost, time.perf_counter() - t0))
        print("forward_cost", sweep[-1], flush=True)

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
        "# Benchmarks: where facts live", "", *tracing,
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
