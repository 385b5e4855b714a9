"""Per-variant analyses of the architecture comparison (issue 17 item 3): position probe, attention
rank, direct effect by layer, and their aggregation over seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ffnmem.data.synthetic import FactConfig, generate
from ffnmem.methods.fair import aggregate_analyses
from ffnmem.methods.objectives import parse
from ffnmem.methods.training import TrainConfig, train
from ffnmem.methods.variant_analysis import analyse, position_probe

FACTS = FactConfig(n_entities=12, bins=(1, 4), n_values=8, seed=0)
CFG = TrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=30, batch_size=32,
                  eval_every=10_000, checkpoint_every=10_000, seed=0)


def test_position_probe_reads_a_position_code_and_not_noise():
    rng = np.random.default_rng(0)
    n, pos, d = 20, 12, 16
    table = rng.normal(size=(pos, d))  # arbitrary vectors per position, as a learned positional table
    coded = table[None] + 0.3 * rng.normal(size=(n, pos, d))
    noise = rng.normal(size=(n, pos, d))
    good, bad = position_probe(coded), position_probe(noise)
    assert good["positions"] == pos - 1 and good["chance"] == pytest.approx(1 / (pos - 1))
    assert good["accuracy"] > 0.9 and good["r2"] > 0.5
    assert good["null_accuracy"] < 0.25 and good["null_r2"] < 0.1  # permuted labels: no signal
    assert bad["accuracy"] < 0.25 and bad["r2"] < 0.1


@pytest.fixture(scope="module")
def analyses(one_thread):
    corpus = generate(FACTS)
    out = {}
    for v in ("causal", "causal-nopos", "mlm-nopos", "encdec-nopos"):
        obj = parse(v)
        tr = dataclasses.replace(CFG, batch_size=CFG.batch_size * len(FACTS.attributes)) if obj.kind == "encdec" else CFG
        run = train(corpus, tr, device="cpu", progress=False, objective=obj)
        init = train(corpus, tr, device="cpu", progress=False, objective=obj, stop_at=0)
        out[v] = analyse(run.wb, init.wb, corpus, obj, probe_docs=40, dla_facts=8, n_ctx=CFG.n_ctx)
    return out


def _probe(a, model, inputs, depth):
    return next(r for r in a["position_probe"] if (r["model"], r["inputs"], r["depth"]) == (model, inputs, depth))


def test_learned_positions_probe_near_perfectly_at_the_embeddings(analyses):
    for inputs in ("documents", "random"):
        assert _probe(analyses["causal"], "trained", inputs, 0)["accuracy"] > 0.9


def test_causal_nope_recovers_position_and_bidirectional_nope_cannot(analyses):
    # random tokens: the embeddings carry no position (depth 0); a causal model can count its
    # predecessors, a bidirectional NoPE model is permutation-equivariant (Haviv et al. 2022)
    for model in ("trained", "init"):
        causal0 = _probe(analyses["causal-nopos"], model, "random", 0)
        causal = _probe(analyses["causal-nopos"], model, "random", CFG.n_layers)
        assert causal["r2"] > causal["null_r2"] + 0.1 and causal["r2"] > causal0["r2"] + 0.1
        for depth in range(CFG.n_layers + 1):
            mlm = _probe(analyses["mlm-nopos"], model, "random", depth)
            assert mlm["r2"] < 0.02 and mlm["accuracy"] < mlm["chance"] + 0.03


def test_direct_effect_shares_cover_every_layer_and_ranks_are_bounded(analyses):
    for v, a in analyses.items():
        assert sum(r["share"] for r in a["dla_by_layer"]) == pytest.approx(1.0, abs=1e-4), v
        assert {r["component"] for r in a["dla_by_layer"]} == {"attention", "ffn"}
        assert {r["model"] for r in a["attention_rank"]} == {"trained", "init"}
        assert all(1 - 1e-4 <= r["erank"] <= r["max_rank"] + 1e-4 for r in a["attention_rank"]), v
    assert {r["stack"] for r in analyses["encdec-nopos"]["dla_by_layer"]} == {"encoder", "decoder"}
    heads = {(r["layer"], r["head"]) for r in analyses["causal"]["attention_rank"]}
    assert heads == {(layer, h) for layer in range(CFG.n_layers) for h in range(CFG.n_heads)}


def test_aggregate_over_seeds_gives_the_mean_and_a_t_interval():
    def unit(seed, acc, bits):
        probe = {"model": "trained", "inputs": "random", "depth": 1, "accuracy": acc, "r2": acc, "mae": 1.0,
                 "null_accuracy": 0.1, "null_r2": 0.0, "chance": 0.1, "positions": 10}
        cap = {"bits": bits, "bits_per_param": bits / 100, "fraction_of_ceiling": 0.5, "ceiling": 10.0,
               "bits_per_param_all": bits / 200, "params_non_embedding": 100, "params_all": 200, "bits_clipped": bits}
        return {"budget": "steps", "arm": "causal-nopos", "seed": seed, "rows": {"causal-nopos": {"capacity": cap}},
                "analyses": {"position_probe": [probe], "attention_rank": [], "dla_by_layer": []}}

    out = aggregate_analyses([unit(0, 0.4, 10.0), unit(1, 0.6, 20.0), unit(2, 0.5, 30.0)])
    (p,) = out["position_probe"]
    assert (p["arm"], p["depth"], p["n_seeds"]) == ("causal-nopos", 1, 3)
    assert p["accuracy"] == pytest.approx(0.5) and p["accuracy_lo"] < 0.4 and p["accuracy_hi"] > 0.6
    (c,) = out["capacity"]
    assert c["bits"] == pytest.approx(20.0) and c["bits_per_param"] == pytest.approx(0.2)


def test_encdec_positional_tables_count_as_embeddings():
    from ffnmem.methods.capacity import param_counts

    run = train(generate(FACTS), CFG, device="cpu", progress=False, objective=parse("encdec"), stop_at=0)
    named = dict(run.wb.bridge.original_model.named_parameters())
    emb = sum(p.numel() for n, p in named.items() if n.split(".")[0] in ("embed", "unembed") or ".pos." in n)
    assert any(n.startswith("encoder.pos.") for n in named)  # nested: a top-level name check missed it
    pc = param_counts(run.wb)
    assert pc["params_all"] - pc["params_non_embedding"] == emb
