"""Benchmark trigger mining: tokens/s vs a plain forward pass, and peak RSS at two corpus sizes.

Each corpus size runs in its own subprocess so peak RSS (ru_maxrss) is measured per size.
Usage: python bench/keys.py [--model smollm2-135m] [--layers 0,15,29] [--sizes 16,64] [--window 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(model: str, layers: list[int], n_windows: int, window: int) -> dict:
    import torch

    import ffnmem
    from ffnmem.methods import triggers as T
    from ffnmem.data.corpus import default_corpus, windows

    wb = ffnmem.load_model(model, device="cpu")
    tokens = windows(wb, default_corpus(), window=window, max_windows=n_windows)
    with torch.inference_mode():
        t = time.perf_counter()
        for s in range(0, len(tokens), 8):
            wb.bridge(tokens[s : s + 8], return_type=None)
        fwd = time.perf_counter() - t
    t = time.perf_counter()
    T.mine(wb, tokens, layers, k=20, progress=False)
    mine = time.perf_counter() - t
    n = tokens.numel()
    return {"windows": n_windows, "tokens": n, "forward_tok_s": n / fwd, "mine_tok_s": n / mine,
            "ratio": fwd / mine, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layers", default="0,15,29")
    ap.add_argument("--sizes", default="16,64")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    layers = [int(x) for x in a.layers.split(",")]
    if a.one is not None:
        print(json.dumps(one(a.model, layers, a.one, a.window)))
        return
    for size in map(int, a.sizes.split(",")):
        res = subprocess.run([sys.executable, __file__, "--model", a.model, "--layers", a.layers,
                              "--window", str(a.window), "--one", str(size)], capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{r['tokens']:>7} tokens: forward {r['forward_tok_s']:.0f} tok/s, mining {r['mine_tok_s']:.0f} tok/s "
              f"(ratio {r['ratio']:.2f}), peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
