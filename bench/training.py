"""Training throughput: `train()` against the raw training step, and the `tiny` preset end to end.

Writes docs/BENCHMARKS-training.md (keeping the notes below its marker). Throughput counts
loss-bearing tokens (targets that gave a loss term) per CPU second (process time, all threads) and
per wall second. The raw step is forward + next-token loss + backward + clip + AdamW on the same
model, first batch and optimizer as `train()`, timed in a bare loop after warm-up; `train()` is
timed as called (building the model, tokenising and packing the corpus, the steps, loss logging),
stopped before its final evaluation (the end-to-end run reports evaluation time). Raw and
`train()` alternate for several rounds and the ratio is taken per round (median), because the
machine may be shared.

Run: PYTHONPATH=src python bench/training.py [--threads N] [--device cpu|cuda] [--rounds R]
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle threads sleep instead of spinning. On a machine shared with other
# jobs, spinning threads starve each other (2 threads ran a tiny step 10-40x slower than 1 here).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from ffnmem.core.models import boot_native
from ffnmem.data.synthetic import generate
from ffnmem.data.vocab import build_tokenizer
from ffnmem.methods.frequency import by_exposure, capacity_bits, score_queries, spearman_over_bins
from ffnmem.methods.training import _batcher, _optimizer, lm_loss, preset, train

NOTES = "<!-- notes below are kept when the bench rewrites this file -->"
SHAPES = {
    "tiny": dict(),
    "d128-L4": dict(n_layers=4, d_model=128, n_heads=4, d_mlp=512),
}


def raw_step_rate(corpus, cfg, device: str, steps: int) -> dict:
    """Loss-bearing tokens/s of the bare step on the first batch `train()` would draw for ``cfg``."""
    tok = build_tokenizer(corpus)
    wb = boot_native(cfg.tl_config(len(tok)), tok, torch.device(device), torch.float32, model_id="bench")
    model = wb.bridge.original_model.train()
    opt, _ = _optimizer(wb, cfg)
    params = list(model.parameters())
    batch, kwargs, _, n_signal = _batcher(tok, corpus, cfg, None)[0](0)
    batch, kwargs = batch.to(device), {k: v.to(device) for k, v in kwargs.items()}
    ignore = tok.bos_token_id if cfg.packing == "documents" else tok.pad_token_id

    def step():
        loss = lm_loss(model(batch, **kwargs), batch, ignore)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    _sync(device)
    return {"rate": steps * n_signal / (time.perf_counter() - t0), "cpu_rate": steps * n_signal / (time.process_time() - c0)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_rate(corpus, cfg, device: str, steps: int) -> dict:
    """`train()` as called (model build included), stopped before its final evaluation."""
    cfg = dataclasses.replace(cfg, steps=steps + 1, eval_every=10**9, checkpoint_every=10**9)
    t0, c0 = time.perf_counter(), time.process_time()
    run = train(corpus, cfg, device=device, progress=False, stop_at=steps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": run.signal_tokens / wall, "cpu_rate": run.signal_tokens / cpu, "signal": run.signal_tokens,
            "tokens": run.tokens_seen}


def compare(name: str, device: str, steps: int, rounds: int, packing: str = "documents") -> dict:
    facts, cfg = preset("tiny")
    corpus = generate(facts)
    cfg = dataclasses.replace(cfg, **SHAPES[name], warmup=5, packing=packing)
    raw, trn = [], []
    for _ in range(rounds):
        raw.append(raw_step_rate(corpus, cfg, device, steps))
        trn.append(train_rate(corpus, cfg, device, steps))
    med = statistics.median
    return {"name": name, "cfg": cfg, "steps": steps, "packing": packing,
            "raw": med(r["rate"] for r in raw), "train": med(t["rate"] for t in trn),
            "raw_cpu": med(r["cpu_rate"] for r in raw), "train_cpu": med(t["cpu_rate"] for t in trn),
            "ratios": [t["rate"] / r["rate"] for t, r in zip(trn, raw)],
            "cpu_ratios": [t["cpu_rate"] / r["cpu_rate"] for t, r in zip(trn, raw)],
            "signal_share": trn[0]["signal"] / max(1, trn[0]["tokens"])}


def end_to_end(device: str) -> dict:
    t0 = time.perf_counter()
    facts, cfg = preset("tiny")
    corpus = generate(facts)
    run = train(corpus, cfg, device=device, progress=False)
    rows = score_queries(run.wb, corpus.queries, value_sets=corpus.values, value_noise=facts.value_noise)
    bins = by_exposure(rows, seed=0)
    cap = capacity_bits(rows, facts.n_values, run.wb.n_params())
    return {"seconds": time.perf_counter() - t0, "run": run, "bins": bins, "spearman": spearman_over_bins(bins),
            "capacity": cap}


def _row(c: dict) -> str:
    cfg = c["cfg"]
    shape = f"{cfg.n_layers} layers, d_model {cfg.d_model}, d_mlp {cfg.d_mlp}"
    rows = {"documents": "packed, per-document attention", "stream": "packed, attention across documents",
            "none": "one padded document per row"}[c["packing"]]

    def ratios(xs):
        return f"**{statistics.median(xs):.2f}** ({', '.join(f'{r:.2f}' for r in xs)})"
    return (f"| {c['name']} ({shape}) | {cfg.batch_size} × {cfg.n_ctx}, {rows} | {c['raw_cpu']:,.0f} | "
            f"{c['train_cpu']:,.0f} | {ratios(c['cpu_ratios'])} | {c['raw']:,.0f} | {c['train']:,.0f} | "
            f"{ratios(c['ratios'])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="docs/BENCHMARKS-training.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmp = [compare("tiny", args.device, 150, args.rounds), compare("d128-L4", args.device, 40, args.rounds),
           compare("tiny", args.device, 150, args.rounds, packing="stream"),
           compare("tiny", args.device, 150, args.rounds, packing="none")]
    e2e = end_to_end(args.device)
    run = e2e["run"]
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Training benchmarks (synthetic facts)", "",
        "Regenerate with `PYTHONPATH=src python bench/training.py --threads 2` (rewrites everything above the notes).", "",
        f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, {args.threads} torch threads, "
        f"device {args.device}, torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. The machine was shared with other jobs while measuring "
        f"(load average {load:.1f} at the start, {load_end:.1f} at the end), so absolute rates are low and noisy; "
        "the ratios are taken within each round (raw step and `train()` back to back) and are the figures to read.", "",
        "## `train()` against the raw training step", "",
        "Throughput in loss-bearing tokens/s. Raw step: forward + loss + backward + clip + AdamW on the same "
        "model, batch shape and optimizer, bare loop after 3 warm-up steps. `train()`: the whole call as a user "
        "makes it (building the model, tokenising and packing the corpus, every step with its scheduler and loss "
        "logging), stopped before its one final evaluation (evaluation cost: see the end-to-end run). "
        "Per CPU second (process time, all threads: what the work costs, robust to other jobs on the machine) "
        f"and per wall second. Median over {args.rounds} rounds (per-round ratios in brackets).", "",
        "| model | batch (rows × tokens) | raw step tok/CPU-s | `train()` tok/CPU-s | ratio (CPU) "
        "| raw step tok/s (wall) | `train()` tok/s (wall) | ratio (wall) |",
        "|---|---|---|---|---|---|---|---|",
        *[_row(c) for c in cmp], "",
        f"Loss-bearing share of the real tokens read: {cmp[0]['signal_share']:.1%} packed per document (BOS "
        f"targets dropped), {cmp[2]['signal_share']:.1%} packed as a stream, {cmp[3]['signal_share']:.1%} with "
        "one document per row (the objectives path), whose batch is also padded to the corpus' longest document.", "",
        "## `tiny` preset end to end", "",
        f"{run.step} steps of {run.config.batch_size} × {run.config.n_ctx} packed tokens = "
        f"{run.epochs:.2f} passes over the corpus ({run.steps_per_epoch:.1f} steps per pass), "
        f"{run.tokens_seen:,} tokens: training {run.seconds:.1f} s (of which evaluations "
        f"{run.eval_seconds:.1f} s), {run.signal_tokens / run.seconds:,.0f} loss-bearing tokens/s; "
        f"generate + train + score {e2e['seconds']:.1f} s.", "",
        "| exposures/epoch | facts | recall | 95% CI | loss bits |", "|---|---|---|---|---|",
    ]
    for b in e2e["bins"]:
        lines.append(f"| {b['exposures']} | {b['n']} | {b['accuracy']:.3f} | [{b['accuracy_lo']:.3f}, "
                     f"{b['accuracy_hi']:.3f}] | {b['loss_bits']:.2f} |")
    cap, last, first = e2e["capacity"], run.evals[-1], run.evals[0]
    lines += ["", f"Spearman(exposure, recall) over bins: {e2e['spearman']:.3f}.", "",
              f"Capacity: {cap['bits']:.0f} of {cap['max_bits']:.0f} bits stored, {cap['n_params']:,} parameters, "
              f"{cap['bits_per_param']:.4f} bits/parameter (the tiny corpus holds far fewer bits than the model "
              "could store, so this measures the corpus, not the model).", "",
              f"Attribute positions: CE {first['ce_bits']:.3f} → {last['ce_bits']:.3f} bits from step {first['step']} "
              f"to {last['step']}; data entropy {last['h_bits']:.3f} bits (exact); KL gap {first['kl_bits']:.3f} → "
              f"{last['kl_bits']:.3f} bits.", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = out.read_text().partition(NOTES)[2] if out.exists() and NOTES in out.read_text() else ""
    out.write_text("\n".join(lines) + (f"\n{NOTES}{notes}" if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
