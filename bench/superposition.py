"""Benchmark: toy-model instances trained per second; representation extraction vs a forward pass.

Usage: python bench/superposition.py [--model smollm2-135m] [--steps 1000]
Prints a JSON line per measurement (CPU, whatever torch.get_num_threads() is).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def toy(instances: int, steps: int) -> dict:
    from ffnmem.methods import superposition as sp

    cfg = sp.ToyConfig(n_features=20, n_hidden=5, sparsity=tuple([0.9] * instances), steps=steps, batch=1024)
    t = time.perf_counter()
    sp.train(cfg)
    dt = time.perf_counter() - t
    return {"bench": "toy", "instances": instances, "steps": steps, "seconds": dt,
            "instances_per_s": instances / dt, "instance_steps_per_s": instances * steps / dt}


def extraction(model: str, n_prompts: int) -> dict:
    import ffnmem
    from ffnmem.methods import probes as P
    from ffnmem.jobs.probe import builtin_task

    wb = ffnmem.load_model(model, device="cpu")
    prompts = (builtin_task("city_continent")[0] * 4)[:n_prompts]
    hooks = [f"blocks.{l}.hook_resid_post" for l in range(wb.n_layers)]
    groups: dict[int, list[list[int]]] = {}
    for p in prompts:
        ids = wb.encode(p)
        groups.setdefault(len(ids), []).append(ids)
    with torch.inference_mode():
        t = time.perf_counter()
        for rows in groups.values():
            for s in range(0, len(rows), 8):
                wb.bridge(torch.tensor(rows[s : s + 8]), return_type=None)
        fwd = time.perf_counter() - t
    t = time.perf_counter()
    P.representations(wb, prompts, hooks, positions="last")
    ext = time.perf_counter() - t
    return {"bench": "extraction", "model": model, "prompts": n_prompts, "hooks": len(hooks),
            "forward_prompts_s": n_prompts / fwd, "extract_prompts_s": n_prompts / ext, "ratio": fwd / ext}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--prompts", type=int, default=192)
    args = ap.parse_args()
    for inst in (1, 16, 128):
        print(json.dumps(toy(inst, args.steps)), flush=True)
    print(json.dumps(extraction(args.model, args.prompts)), flush=True)


if __name__ == "__main__":
    main()
