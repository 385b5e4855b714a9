"""ffnmem.viz: every plot returns a Figure, draws into the caller's axes, and nothing selects a backend."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import matplotlib
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from ffnmem import viz
from ffnmem.core.errors import BadInput
from ffnmem.methods import superposition as sp
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import report as vr


def _recall_result():
    rows = [{"relation": r, "top1": a, "top5": b} for r, a, b in (("capital_of", 0.5, 0.75), ("continent", 0.25, 1.0))]
    return Result(kind="recall", tables={"relations": table_from_rows(rows)}, meta={"k": 5, "scoring": "sequence"})


def _popularity_result():
    bins = [{"by": by, "zipf_mean": z, "accuracy": a, "accuracy_lo": a - 0.1, "accuracy_hi": a + 0.1}
            for by in ("subject_zipf", "target_zipf") for z, a in ((3.0, 0.2), (5.0, 0.6))]
    subs = [{"kind": "more_frequent", "target_zipf": 3.1, "substitute_zipf": 4.2, "target": "Bern",
             "substitute": "Zurich", "relation": "capital_of"}]
    return Result(kind="popularity", meta={"n_facts": 4, "substitution": {"substitution_rate": 1.0, "chance_rate": 0.5}},
                  tables={"popularity_bins": table_from_rows(bins), "substitutions": table_from_rows(subs)})


def _exposure_bins():
    return [{"exposures": e, "accuracy": a, "accuracy_lo": a - 0.1, "accuracy_hi": min(1.0, a + 0.1)}
            for e, a in ((1, 0.1), (4, 0.5), (16, 0.9))]


def _dla_bins():
    return [{"exposures": e, "ffn_share_L0": 0.3, "ffn_share_L1": 0.2, "attn_share_L0": 0.25, "attn_share_L1": 0.25,
             "ffn": 1.0 * e, "attn": 0.5, "rest": 0.1, "logit": 1.6, "logit_lo": 1.2, "logit_hi": 2.0} for e in (1, 4)]


def _variants():
    return [{"variant": v, "bins": [{"exposures": 1, "accuracy": 0.2}, {"exposures": 8, "accuracy": 0.7}],
             "capacity": {"bits_per_param": 0.1 * i}, "summary": {"h_bits": 1.0, "kl_bits": 0.5 * i},
             "signal_fraction": 0.3, "ffn_share": [0.4, 0.6],
             "probe": [{"layer": 0, "mae": 3.0, "baseline_mae": 5.0}, {"layer": 1, "mae": 2.0, "baseline_mae": 5.0}],
             "attention_erank": [[1.5, 2.0], [1.2, 3.0]]} for i, v in enumerate(("causal", "prefix", "masked"))]


def _toy():
    return sp.train(sp.ToyConfig(n_features=4, n_hidden=2, sparsity=(0.0, 0.9), steps=5, batch=16))


TRACE = SimpleNamespace(tokens=["<bos>", "The", " Eiffel", " Tower", " is"], subject=(2, 4), p_clean=0.4, p_corrupt=0.1,
                        window=3, effects={k: torch.rand(2, 5) for k in ("resid", "mlp", "attn")})
NEURONS = [{"subject": s, "layer": l, "neuron": n, "direct_effect": 0.1 * n} for s in ("France", "Italy")
           for l, n in ((0, 3), (1, 7))]
SURVIVAL = [{"model": m, "params": p, "bin_lo": lo, "bin_hi": hi, "recall": r, "recall_lo": r - 0.1,
             "recall_hi": r + 0.1} for m, p, k in (("d8", 100, 0.2), ("d32", 400, 0.6))
            for lo, hi, r in ((1, 1, k / 2), (2, 3, k))]
SUBSTITUTION = [{"model": "d8", "arm": a, "key": "prediction", "n_substitutions": 9, "top_rate": 0.8, "top_rate_lo": 0.6,
                 "top_rate_hi": 0.9, "null_frequency": 0.3, "null_uniform": 0.01} for a in ("trained", "init")]
VALUE_BINS = [{"model": "d8", "bin_lo": lo, "bin_hi": hi, "accuracy": a, "accuracy_lo": a - 0.1, "accuracy_hi": a + 0.1}
              for lo, hi, a in ((1, 1, 0.7), (2, 3, 0.3))]
PROBE_SEEDS = [{"budget": "steps", "arm": a, "model": m, "inputs": i, "depth": d, "accuracy": 0.5, "accuracy_lo": 0.4,
                "accuracy_hi": 0.6, "null_accuracy": 0.03} for a in ("causal-nopos", "mlm-nopos")
               for m in ("trained", "init") for i in ("documents", "random") for d in (0, 1, 2)]
# name -> (data builder returning (args, kwargs), panels: None for one Axes, else (rows, cols) of the axes grid)
CASES = {
    "plot_agreement": (lambda: ((SimpleNamespace(layers=[0, 1], observed=[0.1, 0.2], baseline=[0.01, 0.02],
                                                 baseline_std=[0.0, 0.01], value_k=10),), {}), None),
    "plot_attention_erank": (lambda: ((_variants(),), {}), (1, 3)),
    "plot_attribution": (lambda: ((torch.randn(2), torch.randn(2), NEURONS[:2]), {"prompt": "p", "answer": "a"}),
                         (1, 2)),
    "plot_average": (lambda: (({k: torch.rand(2, 5) for k in ("mlp", "attn")},), {"n_facts": 3}), (1, 2)),
    "plot_capacity": (lambda: (([{"params": p, "bits": p / 10, "max_bits": 500, "bits_per_param": 0.1, "d_model": d}
                                 for p, d in ((1000, 16), (4000, 32))],), {}), (1, 2)),
    "plot_capacity_entropy_signal": (lambda: ((_variants(),), {}), (1, 3)),
    "plot_capacity_sweep": (lambda: (([{"params_non_embedding": p, "bits": 1.1 * p + s, "ceiling": 9000, "seed": s}
                                       for p in (500, 2000, 8000) for s in (0, 1)],
                                      {"c": 1.1, "c_lo": 1.0, "c_hi": 1.2}), {}), (1, 2)),
    "plot_steps_curve": (lambda: (([{"size": z, "params_non_embedding": p, "bits": p * (1 - 1 / k) + s, "seed": s,
                                     "exposures_total": 1000 * k} for z, p in (("L1-d6", 522), ("L1-d10", 1350))
                                    for k in (1, 2, 4) for s in (0, 1)],), {}), None),
    "plot_coefficient_histogram": (lambda: ((torch.randn(200),), {"title": "layer 0 neuron 1"}), None),
    "plot_curves": (lambda: (({"pos": [{"hook": f"blocks.{l}.hook_resid_post", "accuracy": 0.8, "control": 0.5,
                                        "majority": 0.4} for l in range(2)]},), {}), None),
    "plot_dimensionality": (lambda: ((_toy(),), {}), None),
    "plot_dla_by_exposure": (lambda: ((_dla_bins(),), {}), (1, 2)),
    "plot_ffn_share": (lambda: ((_variants(),), {}), None),
    "plot_heads": (lambda: ((torch.randn(2, 4),), {"prompt": "p", "answer": "a"}), None),
    "plot_layer_dla": (lambda: ((torch.randn(2, 3), torch.randn(2, 3), ["France", "Italy"]), {}), (1, 2)),
    "plot_loss_decomposition": (lambda: (([{"step": s, "h_bits": 1.0, "kl_bits": 2.0 / s, "ce_bits": 1.0 + 2.0 / s}
                                           for s in (1, 2, 4)],), {}), None),
    "plot_phase": (lambda: ((sp.phase_diagram([0.0, 0.9], [0.5, 2.0], restarts=1, steps=5, batch=16),), {}), None),
    "plot_position_probe": (lambda: ((_variants(),), {}), None),
    "plot_position_probe_seeds": (lambda: ((PROBE_SEEDS,), {}), (1, 2)),
    "plot_query": (lambda: ((pd.DataFrame({"layer": [0, 1], "ffn": [0.1, 0.3], "attention": [0.2, 0.0]}),
                             vr.lines("layer", ["ffn", "attention"])), {"title": "direct_effects"}), None),
    "plot_recall": (lambda: ((_recall_result(),), {}), None),
    "plot_recall_by_value_rank": (lambda: ((VALUE_BINS,), {}), None),
    "plot_recall_vs_exposure": (lambda: ((_exposure_bins(), {"x": [1, 16], "y": [0.1, 0.9], "lo": [0, 0.8],
                                                             "hi": [0.2, 1.0]}), {}), None),
    "plot_recall_vs_popularity": (lambda: ((_popularity_result(),), {}), None),
    "plot_substitution": (lambda: ((SUBSTITUTION,), {}), None),
    "plot_scaling": (lambda: (([{"size": f"s{i}", "params_non_embedding": p, "ce_bits": 3.0 / (i + 1), "ce_bits_sd": 0.1,
                                  "h_bits": 0.2} for i, p in enumerate((500, 2000, 8000))],
                                [{"size": "s0", "seed": 0, "exposures": e, "ce_bits": 5.0 / e} for e in (10, 50, 100)],
                                {"H": 0.2, "A": 30.0, "alpha": 0.5}), {}), (1, 2)),
    "plot_substitutions": (lambda: ((_popularity_result(),), {}), None),
    "plot_survival": (lambda: ((SURVIVAL,), {}), None),
    "plot_top_neurons": (lambda: ((NEURONS,), {}), (1, 4)),
    "plot_trace": (lambda: ((TRACE,), {}), (1, 3)),
    "plot_variant_recall": (lambda: ((_variants(),), {}), None),
    "plot_wtw": (lambda: ((_toy(),), {}), (2, 2)),
}


@pytest.fixture(autouse=True)
def no_backend_switch(monkeypatch):
    """Any matplotlib.use during a test is a bug: a notebook would lose its inline backend."""
    def refuse(*a, **k):
        raise AssertionError(f"matplotlib.use{a} called")

    monkeypatch.setattr(matplotlib, "use", refuse)


def test_every_plot_has_a_case():
    assert set(CASES) == {n for n in viz.__all__ if n.startswith("plot_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plot_returns_its_own_figure(name):
    import matplotlib.pyplot as plt

    make, _ = CASES[name]
    args, kw = make()
    fig = getattr(viz, name)(*args, **kw)
    assert isinstance(fig, Figure) and fig.axes
    assert any(ax.has_data() for ax in fig.axes)
    plt.close(fig)


@pytest.mark.parametrize("name", sorted(CASES))
def test_plot_draws_into_given_axes(name):
    import matplotlib.pyplot as plt

    make, panels = CASES[name]
    args, kw = make()
    fig, grid = plt.subplots(*(panels or (1, 1)), squeeze=False)
    before = plt.get_fignums()
    target = {"ax": grid[0, 0]} if panels is None else {"axes": grid}
    assert getattr(viz, name)(*args, **target, **kw) is fig
    assert plt.get_fignums() == before  # drew there, made no figure of its own
    assert grid[0, 0].has_data()
    plt.close(fig)


def test_wrong_number_of_axes_is_one_line():
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(1, 3)
    with pytest.raises(BadInput, match="2 panels") as e:
        viz.plot_capacity(*CASES["plot_capacity"][0]()[0], axes=grid)
    assert "\n" not in str(e.value)
    plt.close(fig)


def test_titles_and_labels_keep_their_look():
    import matplotlib.pyplot as plt

    fig = viz.plot_recall(_recall_result())
    ax = fig.axes[0]
    assert ax.get_title() == "recall per relation (sequence scoring)" and ax.get_ylabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["top-1", "top-5"]
    assert tuple(fig.get_size_inches()) == (6, 3.5)
    fig = viz.plot_trace(TRACE)
    assert fig.get_suptitle() == "causal trace: p clean 0.400, corrupted 0.100"
    assert [a.get_title() for a in fig.axes[:3]] == ["resid", "mlp (window 3)", "attn (window 3)"]
    plt.close("all")


def test_save_figure_writes_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    fig = viz.plot_heads(torch.randn(2, 4))
    path = viz.save_figure(fig, tmp_path / "heads.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.number not in plt.get_fignums()
    png = viz.png_bytes(viz.plot_heads(torch.randn(2, 4)), dpi=50)
    assert png[:4] == b"\x89PNG" and not plt.get_fignums()


def test_jobs_write_the_same_png_names(tiny, tmp_path):
    from ffnmem.jobs import attribute, report, superposition
    from ffnmem.viz import cards

    toy = superposition.ToyParams(n_features=4, n_hidden=2, steps=5, sparsities=[0.0, 0.9], phase_steps=5, phase_grid=2)
    superposition.write(superposition.compute(toy), tmp_path / "toy")
    assert {"wtw.png", "dimensionality.png", "phase.png"} <= {p.name for p in (tmp_path / "toy").iterdir()}
    attribute.write(attribute.attribute(tiny, "The cat sat on", " ", top=3), tmp_path / "att")  # tiny-2l: bytes
    assert (tmp_path / "att" / "attribution.png").stat().st_size > 1000
    assert (tmp_path / "att" / "heads.png").stat().st_size > 1000
    assert cards._histogram(torch.randn(50), "t")[:4] == b"\x89PNG"
    html = report._png(pd.DataFrame({"layer": [0, 1], "agreement": [0.1, 0.2], "baseline": [0.0, 0.1]}),
                       report.PLOTS["key_agreement"][1], "key_agreement")
    assert html.startswith('<img alt="key_agreement" src="data:image/png;base64,iVBOR')


IMPORT_ALL = """
import importlib, pkgutil, sys
import matplotlib
def refuse(*a, **k):
    raise SystemExit(f"matplotlib.use{a} called while importing")
matplotlib.use = refuse
import ffnmem
for m in pkgutil.walk_packages(ffnmem.__path__, "ffnmem."):
    if m.name != "ffnmem.__main__":
        importlib.import_module(m.name)
assert "ffnmem.viz.superposition" in sys.modules and "ffnmem.jobs.probe" in sys.modules
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_every_module_leaves_the_backend_alone():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {"MPLBACKEND": "svg"}
    p = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    backend, pyplot_loaded = p.stdout.split()
    assert backend == "svg" and pyplot_loaded == "False"  # importing ffnmem costs no pyplot either


def test_headless_default_is_agg_without_mplbackend(tmp_path):
    """With MPLBACKEND unset on a machine without a display, matplotlib picks Agg itself: jobs still write PNGs."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    code = ("import sys, torch; from ffnmem import viz; import matplotlib\n"
            "viz.save_figure(viz.plot_heads(torch.randn(2, 3)), sys.argv[1]); print(matplotlib.get_backend())")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "h.png")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().lower() == "agg" and (tmp_path / "h.png").stat().st_size > 0
