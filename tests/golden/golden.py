"""Golden results frozen before the package was reorganised (issue 13), recomputed by the tests.

Each ``golden_*`` function runs one analysis on ``tiny-2l`` (or a micro synthetic corpus) with a
fixed seed and returns ``(tensors, tables)``. ``make_golden.py`` writes them to ``data/``;
``test_golden.py`` recomputes them and asserts equality. A change that is *meant* to change the
numbers (a method fixed to match its paper) regenerates them in the same commit and says so.
"""

from __future__ import annotations

import pandas as pd
import torch

import ffnmem

PROMPTS = [("The capital of France is", " Paris", "France"), ("The capital of Japan is", " Tokyo", "Japan")]


def _tiny():
    return ffnmem.load_model("tiny-2l", device="cpu", seed=0)


def golden_capture():
    from ffnmem.data.corpus import default_corpus, windows
    from ffnmem.methods.capture import NeuronStats, TopK, hook_names, reduce

    wb = _tiny()
    tokens = windows(wb, default_corpus(), window=32, max_windows=12)
    stats, top = reduce(wb, tokens, hook_names(wb, ["post", "pre"]), [NeuronStats(), TopK(5)],
                        batch_size=4, progress=False)
    tensors = {"tokens": tokens}
    for name, d in stats.result().items():
        tensors.update({f"{name}/{k}": v for k, v in d.items()})
    for name, d in top.result().items():
        tensors.update({f"{name}/topk_{k}": v for k, v in d.items()})
    return tensors, {}


def golden_trace():
    from ffnmem.methods.tracing import trace

    wb = _tiny()
    tensors, rows = {}, []
    for i, (prompt, answer, subject) in enumerate(PROMPTS):
        ids = wb.encode(prompt)
        start = prompt.index(subject)
        span = (len(wb.encode(prompt[:start])), len(wb.encode(prompt[: start + len(subject)])))
        t = trace(wb, prompt, wb.encode(answer, prepend_bos=False)[0], span, kinds=("resid", "mlp", "attn"),
                  n_samples=3, window=2, seed=7 + i, max_rows=64)
        tensors.update({f"{i}/{k}": v for k, v in t.effects.items()})
        rows.append({"prompt": prompt, "n_tokens": len(ids), "p_clean": t.p_clean, "p_corrupt": t.p_corrupt})
    return tensors, {"facts": pd.DataFrame(rows)}


def golden_demo():
    from ffnmem.methods.attribution import direct_effects

    wb = _tiny()
    answers = [wb.encode(a, prepend_bos=False)[0] for _, a, _ in PROMPTS]
    fx = direct_effects(wb, [p for p, _, _ in PROMPTS], answers)
    tensors = {"neurons": fx.neurons, "mlp": fx.mlp, "attn": fx.attn, "probs": fx.probs}
    top = pd.DataFrame([{"fact": b, "rank": r, "layer": l, "neuron": n, "effect": v}
                        for b in range(len(PROMPTS)) for r, (l, n, v) in enumerate(fx.top(b, 8))])
    return tensors, {"top": top}


def golden_exposure():
    from ffnmem.data.synthetic import FactConfig, generate
    from ffnmem.methods.frequency import by_exposure, dla_by_exposure, dla_rows, score_queries
    from ffnmem.methods.training import TrainConfig, train

    corpus = generate(FactConfig(n_entities=12, bins=(1, 4), n_values=6, seed=1))
    cfg = TrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, steps=30, batch_size=8, warmup=3, eval_every=30,
                      checkpoint_every=30, seed=0)
    run = train(corpus, cfg, device="cpu", progress=False)
    rows = score_queries(run.wb, corpus.queries, value_sets=corpus.values)
    queries = [q for q in corpus.queries if not q["heldout"]]
    dla = dla_rows(run.wb, queries, contrast=corpus.values)
    # the columns frozen before score_queries also named the answer and the model's predictions
    frozen = pd.DataFrame(rows).drop(columns=["answer", "prediction", "value_prediction"])
    tables = {"facts": frozen, "bins": pd.DataFrame(by_exposure(rows, n_boot=50, seed=0)),
              "dla_bins": pd.DataFrame(dla_by_exposure(dla, n_boot=50, seed=0))}
    weights = {f"w/{k}": v.detach().clone() for k, v in sorted(run.wb.bridge.state_dict().items())
               if ".mlp." in k}
    return weights, tables


def golden_toy():
    from ffnmem.methods.superposition import sparsity_sweep

    models = sparsity_sweep([0.0, 0.9], steps=200, batch=256, seed=0)
    return {"W": models.W.detach(), "b": models.b.detach()}, {}


GOLDEN = {"capture": golden_capture, "trace": golden_trace, "demo": golden_demo, "exposure": golden_exposure,
          "toy": golden_toy}


def assert_same(name: str, got: tuple[dict, dict], frozen: tuple[dict, dict]) -> None:
    """Tensors equal to float tolerance 1e-6 (exact for integers); tables equal column by column."""
    gt, gtab = got
    ft, ftab = frozen
    assert sorted(gt) == sorted(ft), f"{name}: tensor names differ"
    for k in ft:
        a, b = gt[k].cpu(), ft[k].cpu()
        assert a.shape == b.shape and a.dtype == b.dtype, f"{name}/{k}: shape or dtype changed"
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True, msg=f"{name}/{k} changed")
        else:
            assert torch.equal(a, b), f"{name}/{k} changed"
    assert sorted(gtab) == sorted(ftab), f"{name}: table names differ"
    for k in ftab:
        pd.testing.assert_frame_equal(gtab[k].reset_index(drop=True), ftab[k].reset_index(drop=True),
                                      check_exact=False, rtol=1e-5, atol=1e-6, check_dtype=False, obj=f"{name}/{k}")
