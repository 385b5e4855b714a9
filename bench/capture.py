"""Benchmark: FFN-coefficient capture for all layers vs a plain forward pass, and vs peers.

What is timed, on the same token windows of the default corpus (``ffnmem.corpus``), in batches:

* ``forward``            plain ``bridge(tokens, return_type=None)``, no hooks: the reference;
* ``ffnmem noop``        :func:`ffnmem.capture.run_hooks` with a sink that does nothing (hook cost);
* ``ffnmem collect``     :func:`ffnmem.capture.collect` (every coefficient kept in RAM);
* ``ffnmem topk``        :func:`ffnmem.capture.reduce` with ``TopK(k)``;
* ``ffnmem topk+stats``  ``reduce`` with ``TopK(k)`` and ``NeuronStats()``;
* ``TL run_with_cache``  TransformerLens ``run_with_cache`` with no names filter, keeping the
  coefficients (the rest of the cache is dropped after each batch);
* ``nnsight``            ``NNsight(bridge).trace`` saving the same hook points' outputs.

Every hook is ``blocks.{l}.mlp.hook_post`` for all layers. Each method runs in a fresh
subprocess (so peak RSS values do not mix); inside it, timed passes of the method alternate with
timed plain forward passes, so the ratio "× forward" is paired and robust to other load on the
machine. Times are the best of ``--repeats`` passes. ``--memory`` checks the memory budget:
TopK(20) + NeuronStats over all SmolLM2 layers on 50k tokens, peak RSS above the loaded model.

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
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("forward", "ffnmem noop", "ffnmem collect", "ffnmem topk", "ffnmem topk+stats",
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
    """A callable ``run(tokens) -> None`` for method ``name`` (imports happen here, untimed)."""
    import torch

    from ffnmem import capture

    def batches(tokens):
        for s in range(0, tokens.shape[0], batch_size):
            yield tokens[s : s + batch_size].to(wb.device)

    if name == "forward":
        def run(tokens):
            with torch.inference_mode():
                for b in batches(tokens):
                    wb.bridge(b, return_type=None)
        return run
    if name == "ffnmem noop":
        return lambda tokens: capture.run_hooks(wb, tokens, names, lambda n, t, s: None,
                                                batch_size=batch_size, progress=False)
    if name == "ffnmem collect":
        return lambda tokens: capture.collect(wb, tokens, names, batch_size=batch_size, progress=False)
    if name == "ffnmem topk":
        return lambda tokens: capture.reduce(wb, tokens, names, [capture.TopK(k)], batch_size=batch_size,
                                             progress=False)
    if name == "ffnmem topk+stats":
        return lambda tokens: capture.reduce(wb, tokens, names, [capture.TopK(k), capture.NeuronStats()],
                                             batch_size=batch_size, progress=False)
    if name == "TL run_with_cache":
        def run(tokens):
            kept = {n: [] for n in names}
            with torch.inference_mode():
                for b in batches(tokens):
                    _, cache = wb.bridge.run_with_cache(b, return_type=None)
                    for n in names:
                        kept[n].append(cache[n].cpu().clone())
                    del cache
            return {n: torch.cat(v) for n, v in kept.items()}
        return run
    if name == "nnsight":
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
                    with model.trace(b, return_type=None):
                        for p in hook_paths:
                            saved.append(envoy(p).output.save())
                    for n, t in zip(names, saved):
                        kept[n].append(t.cpu().clone())
            return {n: torch.cat(v) for n, v in kept.items()}
        return run
    raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def _tokens(wb, n_windows: int, window: int):
    from ffnmem.corpus import default_corpus, windows

    toks = windows(wb, default_corpus(), window=window, max_windows=n_windows)
    if toks.shape[0] < n_windows:
        raise SystemExit(f"the default corpus gives only {toks.shape[0]} windows of {window} for {wb.model_id}")
    return toks


def worker(spec: dict) -> dict:
    """Time one method on one model (this process only); returns a result row."""
    import torch

    import ffnmem
    from ffnmem.capture import hook_names

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
        plain = _make_method("forward", wb, names, spec["batch_size"], spec["k"])
        warm = tokens[:1]  # first-call setup only; the timed passes use full batches
        run(warm)
        plain(warm)
        t_method, t_plain = [], []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            out = run(tokens)
            t_method.append(time.perf_counter() - t0)
            del out
            gc.collect()
            if spec["method"] != "forward":
                t0 = time.perf_counter()
                plain(tokens)
                t_plain.append(time.perf_counter() - t0)
        t_plain = t_plain or t_method
        row.update(seconds=min(t_method), seconds_forward=min(t_plain),
                   tokens_per_s=tokens.numel() / min(t_method), forward_tokens_per_s=tokens.numel() / min(t_plain),
                   ratio=min(t_plain) / min(t_method), note="")
    except Exception as exc:  # noqa: BLE001 - a peer that cannot wrap the model is a result, not a crash
        row.update(tokens_per_s=None, ratio=None, note=f"failed: {type(exc).__name__}: {str(exc)[:200]}")
    row.update(peak_rss_mb=peak_rss_mb(), torch_threads=torch.get_num_threads())
    row["peak_above_model_mb"] = row["peak_rss_mb"] - row["rss_model_mb"]
    return row


def memory_worker(spec: dict) -> dict:
    """The issue's memory check: TopK(k) + NeuronStats on all layers over ``tokens`` tokens."""
    import ffnmem
    from ffnmem.capture import NeuronStats, TopK, hook_names, reduce

    wb = ffnmem.load_model(spec["model"], device=spec["device"])
    n_windows = -(-spec["memory_tokens"] // spec["window"])
    tokens = _tokens(wb, n_windows, spec["window"])
    names = hook_names(wb, ["post"])
    gc.collect()
    rss_model = rss_mb()
    peak_before = peak_rss_mb()  # includes loading transients (the GGUF/safetensors read)
    t0 = time.perf_counter()
    topk, stats = reduce(wb, tokens, names, [TopK(spec["k"]), NeuronStats()], batch_size=spec["batch_size"],
                         progress="memory check")
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
    for col in ("model", "method", "tokens/s", "× forward", "peak RSS MB", "above model MB", "note"):
        t.add_column(col, justify="left" if col in ("model", "method", "note") else "right")
    for r in rows:
        tps = r.get("tokens_per_s")
        ratio = r.get("ratio")
        t.add_row(r["model"], r["method"], f"{tps:,.0f}" if tps else "—", f"{ratio:.2f}" if ratio else "—",
                  f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else "—",
                  f"{r['peak_above_model_mb']:,.0f}" if "peak_above_model_mb" in r else "—", r.get("note", ""))
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: PYTHONPATH=src python bench/capture.py --windows 32 --memory")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model specs (default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD",
                   help=f"methods to time (default: all of {', '.join(METHODS)})")
    p.add_argument("--windows", type=int, default=16, help="token windows per pass (default: %(default)s)")
    p.add_argument("--window", type=int, default=128, help="tokens per window (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per method, best kept (default: %(default)s)")
    p.add_argument("--k", type=int, default=20, help="TopK reducer's k (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument("--memory", action="store_true", help="also run the memory check (TopK+NeuronStats, all layers)")
    p.add_argument("--memory-only", action="store_true", help="run only the memory check")
    p.add_argument("--memory-model", default="smollm2-135m", help="model of the memory check (default: %(default)s)")
    p.add_argument("--memory-tokens", type=int, default=50_000, help="tokens of the memory check (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per subprocess (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON results (default: bench/results)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(memory_worker(spec) if spec.get("memory") else worker(spec)), flush=True)
        return 0

    from rich.console import Console

    console = Console(width=max(Console().width, 150))
    info = machine_info()
    console.print(f"[bold]{info['cpu']}[/], {info['cores']} cores, torch {info['versions']['torch']}, "
                  f"load average {info['loadavg_at_start'][0]:.2f}")
    base = dict(windows=args.windows, window=args.window, batch_size=args.batch_size, repeats=args.repeats,
                k=args.k, device=args.device)
    rows: list[dict] = []
    if not args.memory_only:
        for model in args.models:
            for method in args.methods:
                console.print(f"  {model}: {method} …", highlight=False)
                rows.append(_spawn({**base, "model": model, "method": method}, args.timeout))
                r = rows[-1]
                console.print(f"    {r.get('tokens_per_s') or 0:,.0f} tokens/s, × forward {r.get('ratio') or 0:.2f}, "
                              f"peak RSS {r.get('peak_rss_mb', 0):,.0f} MB {r.get('note', '')}", highlight=False)
        console.print(_table(rows, f"FFN coefficient capture, all layers, {args.windows}×{args.window} tokens, "
                                   f"batch {args.batch_size}, best of {args.repeats}"))
    memory = None
    if args.memory or args.memory_only:
        console.print(f"memory check: {args.memory_model}, {args.memory_tokens:,} tokens …")
        memory = _spawn({**base, "model": args.memory_model, "memory": True, "memory_tokens": args.memory_tokens},
                        args.timeout)
        console.print(_table([memory], "memory check"))
        if "within_1gb" in memory:
            console.print(f"peak RSS above the loaded model: {memory['peak_above_model_mb']:,.0f} MB "
                          f"({'within' if memory['within_1gb'] else 'OVER'} the ~1 GB budget)")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out / f"capture-{stamp}.json"
    path.write_text(json.dumps({"machine": info, "settings": base, "rows": rows, "memory": memory}, indent=2))
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
