"""Rich objects (ffnmem.viz.rich, ffnmem.viz.tables): each renders its numbers and tokens inline as
escaped HTML with an embedded figure, leaves no figure open, and the HTML report and the browse
site embed the same rendering."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pytest
import torch

from ffnmem import viz
from ffnmem.core.errors import BadInput
from ffnmem.data.facts import Fact
from ffnmem.jobs import attribute, probe, recall, trace
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.methods.recall import summarise
from ffnmem.methods.tracing import Trace
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import browse
from ffnmem.viz.rich import _average

NASTY = "<b>&amp;"  # a token that is markup if not escaped
PNG = re.compile(r"<img alt='[^']*' style='max-width:100%' src='data:image/png;base64,iVBORw0KGgo[A-Za-z0-9+/=]{200,}'/>")


def _facts():
    # byte-level tiny-2l: a first answer token without a leading space
    return [Fact(subject="France", relation="capital_of", prompt="The capital of France is ", target="Paris"),
            Fact(subject=NASTY, relation="capital_of", prompt=f"The capital of {NASTY} is ", target="Rome")]


@pytest.fixture(autouse=True)
def no_open_figures():
    plt.close("all")
    yield
    assert not plt.get_fignums(), "a rich object left a figure open (a notebook would show it twice)"


def test_trace_view_shows_heatmap_answer_and_top_cells():
    effects = {"mlp": torch.zeros(3, 5), "resid": torch.zeros(3, 5)}
    effects["mlp"][2, 3] = 0.4321  # the top cell: layer 2, token 3
    effects["mlp"][1, 0] = 0.0123
    t = Trace(tokens=["<s>", "The", " Eiff&l", NASTY, " is"], subject=(2, 4), p_clean=0.5, p_corrupt=0.0625,
              effects=effects, window=3)
    h = viz.TraceView(t, prompt="The Eiff&l <b> is", answer=" <Paris>", top=2, kind="mlp")._repr_html_()
    assert len(PNG.findall(h)) == 1
    assert "&lt;Paris&gt;" in h and "<Paris>" not in h and "<b>&amp;" not in h
    assert "0.5" in h and "0.0625" in h  # p clean, p corrupted
    cells = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td><td><code[^>]*>([^<]*)</code></td><td>([^<]+)</td></tr>", h)
    assert cells == [("2", "3", "&lt;b&gt;&amp;amp;", "0.432"), ("1", "0", "&lt;s&gt;", "0.0123")]


@pytest.fixture(scope="module")
def traced(tiny):
    return trace.compute(tiny, _facts(), trace.TraceParams(n_samples=2, window=1, kinds=["resid", "mlp"]))


def test_causal_traces_average_is_the_jobs_and_facts_are_escaped(traced):
    view = viz.show(traced)
    assert isinstance(view, viz.CausalTraces)
    avg = _average(view.effects)  # what the report draws from the catalogue's rows
    for kind in ("resid", "mlp"):
        torch.testing.assert_close(avg[kind], traced.tensors[f"average/{kind}"], equal_nan=True)
    h = view.to_html()
    assert len(PNG.findall(h)) == 1 and "2 facts traced" in h
    assert "The capital of &lt;b&gt;&amp;amp; is" in h and NASTY not in h
    one = view.fact(1)
    assert one.answer == traced.table("facts").traced[1]
    torch.testing.assert_close(one.trace.effects["mlp"], trace.traces_of(traced)[1].effects["mlp"])
    assert len(PNG.findall(one.to_html())) == 1


def test_direct_effects_rank_memories_with_the_tokens_they_promote(tiny):
    res = attribute.attribute(tiny, "The cat sat on", "t", top=3)
    h = viz.show(res, tiny).to_html()
    assert len(PNG.findall(h)) == 1
    top = res.table("neurons").iloc[0]
    first = re.search(r"<tr><td>1</td><td>(L\d+\.\d+)</td><td>([^<]+)</td>", h)
    assert first.groups() == (f"L{top.layer}.{top.neuron}", f"{top.direct_effect:.3g}")
    assert "answer <code style='white-space:pre'>t</code>" in h


def test_direct_effects_promoted_tokens_follow_the_coefficient_sign(tiny):
    neurons = [{"prompt": "p", "rank": r, "layer": 1, "neuron": 7, "direct_effect": 0.5, "coefficient": c}
               for r, c in enumerate((2.0, -2.0))]
    layers = [{"prompt": "p", "layer": l, "ffn_direct": 0.1, "attn_direct": 0.2} for l in range(2)]
    res = Result(kind="direct_effects", tables={"neurons": table_from_rows(neurons), "layers": table_from_rows(layers)})
    view = viz.direct_effects_table(res, tiny, n_tokens=4)
    for row, sign in zip(view.neurons, (1.0, -1.0)):
        ids = value_tokens(tiny, 1, [7], k=4, signs=torch.tensor([sign])).top_ids[0].tolist()
        assert row["promotes"] == [tiny.decode([i]) for i in ids]
    assert view.neurons[0]["promotes"] != view.neurons[1]["promotes"]
    assert "value promotes" in view.to_html()


def test_recall_table_numbers_and_escaping(tiny):
    res = recall.compute(tiny, _facts(), recall.RecallParams(scoring="sequence", k=5))
    h = viz.show(res).to_html()
    assert len(PNG.findall(h)) == 1
    every = res.table("relations").set_index("relation").loc["ALL"]
    assert f"2 facts: top-1 {every.top1:.1%}, top-5 {every.top5:.1%}" in h
    assert "Scoring: sequence" in h and "The capital of &lt;b&gt;&amp;amp; is" in h and NASTY not in h
    for f in res.table("facts").itertuples():
        assert f"<td>{f.rank}</td><td>{f.p_answer:.3g}</td>" in h


def test_recall_from_fact_rows_recomputes_the_summary_and_finds_k():
    rows = [{"relation": r, "subject": s, "prompt": f"{s} is in", "target": " x", "predicted": " y", "rank": k,
             "top1": k == 0, "top3": k < 3, "p_answer": 0.5 / (k + 1), "loss_bits": 1.0 + k}
            for r, s, k in (("a", "A", 0), ("a", "B", 2), ("b", "C", 7))]
    view = viz.RecallTable.from_facts(rows, scoring="first_token")
    assert view.k == 3 and view.relations == summarise(rows, 3)
    assert "3 facts: top-1 33.3%, top-3 66.7%" in view.to_html()
    with pytest.raises(BadInput):
        viz.RecallTable.from_facts([])


def test_probe_curves_name_the_most_selective_layer():
    curves = [{"task": "city<continent>", "layer": l, "hook": f"blocks.{l}.hook_resid_post", "accuracy": a,
               "accuracy_std": 0.01, "control": c, "selectivity": a - c, "majority": 0.25}
              for l, a, c in ((0, 0.5, 0.45), (3, 0.9, 0.4), (6, 0.95, 0.7))]
    h = viz.ProbeCurves(curves).to_html()
    assert len(PNG.findall(h)) == 1
    assert "city&lt;continent&gt;: most selective at layer 3 (accuracy 0.90, control 0.40)" in h
    assert "<td>0.25</td>" in h  # the majority class


def test_probe_result_renders(tiny):
    tasks = {"word_category": probe.builtin_task("word_category", templates=2)}
    res = probe.compute(tiny, tasks, probe.ProbeParams(layers=[0, 1], folds=2, draws=1))
    h = viz.show(res).to_html()
    assert len(PNG.findall(h)) == 1 and h.count("<td>word_category</td>") == 2


CLAIMS = [{"claim": "kv-<agree>", "status": "PASS", "estimate [95% CI]": "0.1 [0.05, 0.2]", "value vs null": "a vs b",
           "p (Holm)": "0.001 (0.01)", "n": "40", "control": "0.0, p = 0.5", "why": "p < 0.05 & effect", "paper": "Geva"},
          {"claim": "trace", "status": "NOT REPRODUCED", "why": "not significant"}]


def test_claims_table_escapes_colours_and_is_the_browse_page():
    view = viz.show(CLAIMS)
    h = view.to_html()
    assert "<td>kv-&lt;agree&gt;</td><td><b style='color:#2a7d2a'>PASS</b></td>" in h
    assert "p &lt; 0.05 &amp; effect" in h and "1 PASS, 1 NOT REPRODUCED" in h
    assert h in browse.claims_page(CLAIMS)


def test_show_refuses_what_it_cannot_render():
    with pytest.raises(BadInput, match="no rich view of a 'capacity' result"):
        viz.show(Result(kind="capacity"))
    with pytest.raises(BadInput, match="no rich view of a dict"):
        viz.show({"a": 1})


RUN = """name = "rich-report"
models = ["tiny-2l"]
seeds = [0, 1]
[data]
facts = "capital_of.jsonl"
limit_per_relation = 2
[[analysis]]
name = "recall"
scoring = "sequence"
[[analysis]]
name = "direct_effects"
top = 3
first_token = "any"
[[analysis]]
name = "causal_trace"
n_samples = 2
window = 1
kinds = ["resid", "mlp"]
first_token = "any"
[[analysis]]
name = "probe_selectivity"
tasks = ["word_category"]
layers = [0, 1]
folds = 2
draws = 1
templates = 2
"""


def test_report_embeds_the_same_rich_objects(tmp_path):
    """report.html shows each analysis with the object a notebook shows for the unit's Result (one
    shard, so the catalogue's rows are the Result's; seed 0 of two: seeds are not pooled)."""
    from ffnmem.batch.runner import load_batch, run_batch
    from ffnmem.jobs.report import render
    from ffnmem.store import catalog

    (tmp_path / "b.toml").write_text(RUN)
    run = run_batch(load_batch(tmp_path / "b.toml"), tmp_path / "run", progress=False)
    page = render(run)
    units = {(u["analysis"], u["seed"]): Result.load(catalog.unit_dir(run, u["unit_id"]))
             for u in catalog.read_manifest(run)["units"]}
    expected = [viz.RecallTable.of(units["recall", 0], title="recall · tiny-2l"),
                viz.CausalTraces.of(units["causal_trace", 0], title="causal tracing · tiny-2l"),
                viz.DirectEffectsTable(units["direct_effects", 0].table("neurons").to_dict("records"),
                                       units["direct_effects", 0].table("layers").to_dict("records"), limit=5,
                                       title="direct effects on the answer logit · tiny-2l")]
    for view in expected:
        assert view.to_html() in page, type(view).__name__
    assert "<h4>linear probes by layer · tiny-2l</h4>" in page and page.count("data:image/png;base64,") >= 4
