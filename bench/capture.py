"""Benchmark: FFN-coefficient capture for all layers vs a plain forward pass, and vs peers.

What is timed, on the same token windows of the default corpus (``ffnmem.data.corpus``), in batches:

* ``forward``            plain ``bridge(tokens, return_type=None)``, no hooks: the reference;
* ``forward stop``       ``bridge(tokens, stop_at_layer=last + 1)``: the blocks only, no final
  norm and unembedding (what every method below that stops early runs);
* ``ffnmem noop``        :func:`ffnmem.methods.capture.run_hooks` with a sink that does nothing (hook cost);
* ``ffnmem collect``     :func:`ffnmem.methods.capture.collect` (every coefficient kept in RAM);
* ``ffnmem topk``        :func:`ffnmem.methods.capture.reduce` with ``TopK(k)``;
* ``ffnmem topk+stats``  :func:`ffnmem.methods.capture.stats_and_top`: ``NeuronStats`` and ``TopK(k)``,
  what the ``ffnmem capture`` job folds;
* ``TL run_with_cache``  TransformerLens ``run_with_cache(names_filter=hooks, stop_at_layer=last + 1)``
  keeping the coefficients (its best settings: only the hooks asked for, no logits);
* ``nnsight``            ``NNsight(bridge).trace`` saving the same hook points' outputs, then
  ``tracer.stop()`` (its early stop: nothing after the last saved hook runs).

Every hook is ``blocks.{l}.mlp.hook_post`` for all layers, so ``last + 1`` is the number of
layers: early stop skips the final norm and the ``[batch, pos, d_vocab]`` logits. Each method runs
in a fresh subprocess (so peak RSS values do not mix); inside it, timed passes of the method
alternate with timed plain forward passes, with and without early stop, so the ratios
"× forward" and "× forward stop" are paired: the median over ``--repeats`` rounds of the ratio
within a round, robust to other load on the machine. tokens/s is from the best pass. ``--memory`` checks the memory budget: TopK(20) + NeuronStats
over all SmolLM2 layers on 50k tokens, peak RSS above the loaded model. ``--micro`` times the
reducers alone on SmolLM2-shaped activations (``[8, 128, 1536]`` random floats), today's against
a frozen copy of the ones before issue 13 (one ``torch.topk`` over state and batch).

Run: ``PYTHONPATH=src python bench/capture.py`` (``--help`` for flags). Results: ``bench/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("forward", "forward stop", "ffnmem noop", "ffnmem collect", "ffnmem topk", "ffnmem topk+stats",
           "TL run_with_cache", "nnsight")
MODELS = ("smollm2-135m", "gpt2-small-shape")
RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "transformer-lens", "transformers", "nnsight", "ffnmem"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            versions[pkg] = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "loadavg_at_start": os.getloadavg(), "versions": versions,
            "date": dt.datetime.now().isoformat(timespec="seconds")}


# --- worker (runs in a fresh subprocess) -------------------------------------------------------

def _make_method(name: str, wb, names: list[str], batch_size: int, k: int):
    """A callable ``run(tokens)`` for method ``name`` (imports happen here, untimed)."""
    import torch

    from ffnmem.methods import capture

    stop = 1 + max(int(n.split(".")[1]) for n in names)  # every hook is in a block
    kw = dict(batch_size=batch_size, progress=False)

    def batches(tokens):
        for s in range(0, tokens.shape[0], batch_size):
            yield tokens[s : s + batch_size].to(wb.device)

    if name in ("forward", "forward stop"):
        extra = {"stop_at_layer": stop} if name == "forward stop" else {"return_type": None}

        def run(tokens):
            with torch.inference_mode():
                for b in batches(tokens):
                    wb.bridge(b, **extra)
        return run
    if name == "ffnmem noop":
        return lambda tokens: capture.run_hooks(wb, tokens, names, lambda n, t, s: None, **kw)
    if name == "ffnmem collect":
        return lambda tokens: capture.collect(wb, tokens, names, **kw)
    if name == "ffnmem topk":
        return lambda tokens: capture.reduce(wb, tokens, names, [capture.TopK(k)], **kw)
    if name == "ffnmem topk+stats":
        return lambda tokens: capture.stats_and_top(wb, tokens, names, k, **kw)
    if name == "TL run_with_cache":
        def run(tokens):
            kept = {n: [] for n in names}
            with torch.inference_mode():
                for b in batches(tokens):
                    _, cache = wb.bridge.run_with_cache(b, names_filter=names, stop_at_layer=stop, return_type=None)
                    for n in names:
                        kept[n].append(cache[n].cpu())
            return {n: torch.cat(v) for n, v in kept.items()}
        return run
    if name == "nnsight":
        return _nnsight_method(wb, names, batches)
    raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def _nnsight_method(wb, names: list[str], batches):
    """nnsight's best settings: save the hook points' outputs, then stop after the last one."""
    import torch
    from nnsight import NNsight

    model = NNsight(wb.bridge)
    paths = {id(m): p for p, m in wb.bridge.named_modules()}
    hook_paths = [paths[id(wb.bridge.hook_dict[n])] for n in names]

    def envoy(path):
        e = model
        for part in path.split("."):
            e = e[int(part)] if part.isdigit() else getattr(e, part)
        return e

    def run(tokens):
        kept = {n: [] for n in names}
        with torch.inference_mode():
            for b in batches(tokens):
                saved = []  # filled inside the trace (nnsight runs the block's code itself)
                with model.trace(b, return_type=None) as tracer:
                    for p in hook_paths:
                        saved.append(envoy(p).output.save())
                    tracer.stop()
                for n, t in zip(names, saved):
                    kept[n].append(t.cpu())
        return {n: torch.cat(v) for n, v in kept.items()}
    return run


def _tokens(wb, n_windows: int, window: int):
    from ffnmem.data.corpus import default_corpus, windows

    toks = windows(wb, default_corpus(), window=window, max_windows=n_windows)
    if toks.shape[0] < n_windows:
        raise SystemExit(f"the default corpus gives only {toks.shape[0]} windows of {window} for {wb.model_id}")
    return toks


def worker(spec: dict) -> dict:
    """Time one method on one model (this process only); returns a result row."""
    import torch

    import ffnmem
    from ffnmem.methods.capture import hook_names

    row = {"model": spec["model"], "method": spec["method"]}
    rss_start = rss_mb()
    wb = ffnmem.load_model(spec["model"], device=spec["device"])
    tokens = _tokens(wb, spec["windows"], spec["window"])
    names = hook_names(wb, ["post"])
    gc.collect()
    row.update(rss_model_mb=rss_mb(), rss_python_mb=rss_start, n_tokens=int(tokens.numel()),
               n_layers=wb.n_layers, d_mlp=wb.d_mlp, batch_size=spec["batch_size"])
    try:
        run = _make_method(spec["method"], wb, names, spec["batch_size"], spec["k"])
        bases = {b: _make_method(b, wb, names, spec["batch_size"], spec["k"]) for b in ("forward", "forward stop")}
        warm = tokens[:1]  # first-call setup only; the timed passes use full batches
        for f in (run, *bases.values()):
            f(warm)
        times = {"method": [], "forward": [], "forward stop": []}
        for _ in range(spec["repeats"]):
            for key, f in (("method", run), *bases.items()):
                if key == spec["method"]:
                    continue  # a baseline is not timed against itself twice
                t0 = time.perf_counter()
                out = f(tokens)
                times[key].append(time.perf_counter() - t0)
                del out
                gc.collect()
        if spec["method"] in bases:  # a baseline's own times stand in for its pair
            times[spec["method"]] = times["method"]
        best = {key: min(v) for key, v in times.items()}

        def paired(base):  # median over repeats of base / method, each pair timed back to back
            return statistics.median(b / m for b, m in zip(times[base], times["method"]))

        row.update(seconds=best["method"], seconds_forward=best["forward"], seconds_forward_stop=best["forward stop"],
                   tokens_per_s=tokens.numel() / best["method"], forward_tokens_per_s=tokens.numel() / best["forward"],
                   ratio=paired("forward"), ratio_stop=paired("forward stop"), times=times, note="")
    except Exception as exc:  # noqa: BLE001 - a peer that cannot wrap the model is a result, not a crash
        row.update(tokens_per_s=None, ratio=None, note=f"failed: {type(exc).__name__}: {str(exc)[:200]}")
    row.update(peak_rss_mb=peak_rss_mb(), torch_threads=torch.get_num_threads())
    row["peak_above_model_mb"] = row["peak_rss_mb"] - row["rss_model_mb"]
    return row


def memory_worker(spec: dict) -> dict:
    """The issue's memory check: TopK(k) + NeuronStats on all layers over ``tokens`` tokens."""
    import ffnmem
    from ffnmem.methods.capture import hook_names, stats_and_top

    wb = ffnmem.load_model(spec["model"], device=spec["device"])
    n_windows = -(-spec["memory_tokens"] // spec["window"])
    tokens = _tokens(wb, n_windows, spec["window"])
    names = hook_names(wb, ["post"])
    gc.collect()
    rss_model = rss_mb()
    peak_before = peak_rss_mb()  # includes loading transients (the GGUF/safetensors read)
    t0 = time.perf_counter()
    stats, topk = stats_and_top(wb, tokens, names, spec["k"], batch_size=spec["batch_size"], progress="memory check")
    seconds = time.perf_counter() - t0
    # ru_maxrss is a high-water mark: if loading peaked above the capture, the capture's own
    # peak is hidden; report both so the reader can tell.
    peak = peak_rss_mb()
    state_mb = sum(t.numel() * t.element_size() for r in topk.result().values() for t in r.values()) / 2**20
    return {"model": spec["model"], "method": f"memory: TopK({spec['k']})+NeuronStats", "n_tokens": int(tokens.numel()),
            "n_layers": wb.n_layers, "seconds": seconds, "tokens_per_s": tokens.numel() / seconds,
            "rss_model_mb": rss_model, "peak_rss_mb": peak, "peak_before_capture_mb": peak_before,
            "rss_after_mb": rss_mb(), "peak_above_model_mb": peak - rss_model, "topk_state_mb": state_mb,
            "n_stats_hooks": len(stats.result()), "within_1gb": (peak - rss_model) <= 1024}


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


# --- reducers alone: today's against the ones before issue 13 -----------------------------------

class _TopKBefore:
    """TopK.update as of a931641: one ``torch.topk`` over the state and the whole batch."""

    def __init__(self, k: int):
        self.k, self.state = k, {}

    def update(self, name, acts, start):
        import torch

        b, p, d = acts.shape
        flat = acts.reshape(b * p, d).float()
        idx = torch.arange(start * p, start * p + b * p, device=acts.device).unsqueeze(1).expand(-1, d)
        if name in self.state:
            vals, ids = self.state[name]
            flat, idx = torch.cat([vals, flat]), torch.cat([ids, idx])
        top = flat.topk(min(self.k, flat.shape[0]), dim=0)
        self.state[name] = (top.values, idx.gather(0, top.indices))


def _stats_before(acts, s: dict) -> None:
    """NeuronStats.update as of a931641 (``max(0)`` with indices, an int64 count)."""
    flat = acts.reshape(-1, acts.shape[-1]).float()
    s["sum"] = s.get("sum", 0) + flat.sum(0).double()
    s["sq"] = s.get("sq", 0) + (flat * flat).sum(0).double()
    s["pos"] = s.get("pos", 0) + (flat > 0).sum(0)
    s["max"] = flat.max(0).values


def micro(spec: dict) -> dict:
    """Milliseconds per update of one layer's reducer, before and after, on random activations.

    TopK is timed on the 1st batch of a hook (no state yet), the 2nd (the default benchmark's
    16 windows are 2 batches) and the 50th (a 50k-token capture): the running threshold makes
    later batches cheaper. Before and after alternate, so load on the machine hits both alike.
    """

    import torch

    from ffnmem.methods.capture import NeuronStats, TopK

    g = torch.Generator().manual_seed(0)
    shape = (spec["batch_size"], spec["window"], spec["d"])
    acts = [torch.randn(shape, generator=g) for _ in range(8)]
    cases = {}
    for label, make in (("after", lambda: TopK(spec["k"])), ("before", lambda: _TopKBefore(spec["k"]))):
        for nth in (1, 2, 50):
            r = make()
            for i in range(nth - 1):
                r.update("h", acts[i % 8], i * shape[0])
            held = dict(r.state)
            cases[f"TopK({spec['k']}) batch {nth}, {label}"] = (r, held, nth)
    times = {name: [] for name in cases}
    times.update({"NeuronStats, after": [], "NeuronStats, before": []})
    for rep in range(spec["repeats"]):
        for name, (r, held, nth) in cases.items():
            r.state = dict(held)  # the update replaces the held tensors, never changes them
            a = acts[(nth - 1) % 8]
            t0 = time.perf_counter()
            r.update("h", a, (nth - 1) * shape[0])
            times[name].append(time.perf_counter() - t0)
        for name, f in (("NeuronStats, after", lambda a: NeuronStats().update("h", a, 0)),
                        ("NeuronStats, before", lambda a: _stats_before(a, {}))):
            t0 = time.perf_counter()
            f(acts[rep % 8])
            times[name].append(time.perf_counter() - t0)
    return {"shape": list(shape), "k": spec["k"], "repeats": spec["repeats"], "torch_threads": torch.get_num_threads(),
            "ms_median": {n: 1e3 * statistics.median(v) for n, v in times.items()},
            "ms_min": {n: 1e3 * min(v) for n, v in times.items()}}


def _spawn(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "note": f"failed: timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "note": f"failed (exit {proc.returncode}): {tail[:200]}"}
    return json.loads(lines[-1])


# --- driver ------------------------------------------------------------------------------------

def _table(rows: list[dict], title: str):
    from rich.table import Table

    t = Table(title=title)
    for col in ("model", "method", "tokens/s", "× forward", "× forward stop", "peak RSS MB", "above model MB", "note"):
        t.add_column(col, justify="left" if col in ("model", "method", "note") else "right")

    def num(r, key, fmt):
        return format(r[key], fmt) if r.get(key) else "—"

    for r in rows:
        t.add_row(r["model"], r["method"], num(r, "tokens_per_s", ",.0f"), num(r, "ratio", ".2f"),
                  num(r, "ratio_stop", ".2f"), num(r, "peak_rss_mb", ",.0f"), num(r, "peak_above_model_mb", ",.0f"),
                  r.get("note", ""))
    return t


def _micro_table(res: dict):
    from rich.table import Table

    t = Table(title=f"reducers alone, ms per layer per batch {tuple(res['shape'])}, "
                    f"{res['torch_threads']} threads, {res['repeats']} runs")
    for col in ("update", "before median", "after median", "before min", "after min", "speed-up (median)"):
        t.add_column(col, justify="left" if col == "update" else "right")
    for name in res["ms_median"]:
        if name.endswith(", after"):
            case = name[: -len(", after")]
            med, mn = res["ms_median"], res["ms_min"]
            before = f"{case}, before"
            t.add_row(case, f"{med[before]:.2f}", f"{med[name]:.2f}", f"{mn[before]:.2f}", f"{mn[name]:.2f}",
                      f"{med[before] / med[name]:.1f}×")
    return t


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: PYTHONPATH=src python bench/capture.py --windows 32 --memory --micro")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model specs (default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD",
                   help=f"methods to time (default: all of {', '.join(METHODS)})")
    p.add_argument("--windows", type=int, default=16, help="token windows per pass (default: %(default)s)")
    p.add_argument("--window", type=int, default=128, help="tokens per window (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per method, best kept (default: %(default)s)")
    p.add_argument("--k", type=int, default=20, help="TopK reducer's k (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each worker (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument("--memory", action="store_true", help="also run the memory check (TopK+NeuronStats, all layers)")
    p.add_argument("--memory-only", action="store_true", help="run only the memory check")
    p.add_argument("--memory-model", default="smollm2-135m", help="model of the memory check (default: %(default)s)")
    p.add_argument("--memory-tokens", type=int, default=50_000, help="tokens of the memory check (default: %(default)s)")
    p.add_argument("--micro", action="store_true", help="also time the reducers alone, before and after issue 13")
    p.add_argument("--micro-only", action="store_true", help="run only the reducers' micro-benchmark")
    p.add_argument("--micro-d", type=int, default=1536, help="units of the micro-benchmark (default: SmolLM2's d_mlp)")
    p.add_argument("--micro-repeats", type=int, default=20, help="runs per micro case (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per subprocess (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON results (default: bench/results)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def _run_methods(args, base: dict, console) -> list[dict]:
    rows = []
    for model in args.models:
        for method in args.methods:
            console.print(f"  {model}: {method} …", highlight=False)
            rows.append(_spawn({**base, "model": model, "method": method}, args.timeout))
            r = rows[-1]
            console.print(f"    {r.get('tokens_per_s') or 0:,.0f} tokens/s, × forward {r.get('ratio') or 0:.2f}, "
                          f"× forward stop {r.get('ratio_stop') or 0:.2f}, peak RSS {r.get('peak_rss_mb', 0):,.0f} MB "
                          f"{r.get('note', '')}", highlight=False)
    console.print(_table(rows, f"FFN coefficient capture, all layers, {args.windows}×{args.window} tokens, "
                               f"batch {args.batch_size}, ratios: median of {args.repeats} paired rounds"))
    return rows


def _run_memory(args, base: dict, console) -> dict:
    console.print(f"memory check: {args.memory_model}, {args.memory_tokens:,} tokens …")
    memory = _spawn({**base, "model": args.memory_model, "memory": True, "memory_tokens": args.memory_tokens},
                    args.timeout)
    console.print(_table([memory], "memory check"))
    if "within_1gb" in memory:
        console.print(f"peak RSS above the loaded model: {memory['peak_above_model_mb']:,.0f} MB "
                      f"({'within' if memory['within_1gb'] else 'OVER'} the ~1 GB budget)")
    return memory


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        _set_threads(spec.get("threads"))
        job = micro if spec.get("micro") else memory_worker if spec.get("memory") else worker
        print(json.dumps(job(spec)), flush=True)
        return 0

    from rich.console import Console

    console = Console(width=max(Console().width, 150))
    info = machine_info()
    console.print(f"[bold]{info['cpu']}[/], {info['cores']} cores, torch {info['versions']['torch']}, "
                  f"load average {info['loadavg_at_start'][0]:.2f}")
    base = dict(windows=args.windows, window=args.window, batch_size=args.batch_size, repeats=args.repeats,
                k=args.k, device=args.device, threads=args.threads)
    only = args.memory_only or args.micro_only
    rows = [] if only else _run_methods(args, base, console)
    memory = _run_memory(args, base, console) if args.memory or args.memory_only else None
    reducers = None
    if args.micro or args.micro_only:
        reducers = _spawn({**base, "micro": True, "d": args.micro_d, "repeats": args.micro_repeats}, args.timeout)
        console.print(_micro_table(reducers) if "ms_median" in reducers else reducers.get("note"))
    info["loadavg_at_end"] = os.getloadavg()
    console.print(f"load average at the end {info['loadavg_at_end'][0]:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"capture-{stamp}.json"
    path.write_text(json.dumps({"machine": info, "settings": base, "rows": rows, "memory": memory,
                                "reducers": reducers}, indent=2))
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
