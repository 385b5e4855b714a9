"""Causal tracing: batched restorations equal one forward per cell; alignment; seeding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.tracing import (
    aligned,
    aligned_columns,
    average_aligned,
    noise_sigma,
    peak,
    scaled_window,
    site_peak,
    trace,
    trace_one_cell_per_forward,
    window_layers,
)
from ffnmem.viz import plot_trace, save_figure

PROMPT, SPAN, ANS = "The cat sat on", (4, 8), 109  # BOS + "The " then "cat " (bytes 4..7)


def test_window_layers_trimmed_at_the_edges_as_rome():
    # ROME: range(max(0, l - w // 2), min(L, l - (-w // 2))); the window is cut, never shifted inward
    assert list(window_layers(0, 10, 30)) == [0, 1, 2, 3, 4]
    assert list(window_layers(3, 10, 30)) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert list(window_layers(12, 10, 30)) == list(range(7, 17))
    assert list(window_layers(29, 10, 30)) == [24, 25, 26, 27, 28, 29]
    assert list(window_layers(5, 5, 10)) == [3, 4, 5, 6, 7]
    assert list(window_layers(9, 4, 10)) == [7, 8, 9]
    assert list(window_layers(4, 1, 10)) == [4]
    # layers 0-5 restore six different windows (they tied under the shifted window)
    assert len({tuple(window_layers(l, 10, 30)) for l in range(6)}) == 6
    assert scaled_window(48) == 10 and scaled_window(30) == 6 and scaled_window(2) == 1


def test_subject_sigma_is_the_std_of_the_subject_embeddings(tiny):
    a, b = tiny.to_tokens(PROMPT), tiny.to_tokens("A dog ran")
    W_E = tiny.bridge.W_E.detach()
    by_hand = torch.cat([W_E[a[0, 4:8]], W_E[b[0, 2:5]]]).std()
    assert noise_sigma(tiny, [a, b], [SPAN, (2, 5)]) == pytest.approx(float(by_hand), rel=1e-6)
    assert noise_sigma(tiny, [a], [SPAN], source="matrix") == pytest.approx(float(W_E.std()), rel=1e-6)
    with torch.no_grad():
        _, cache = tiny.bridge.run_with_cache(a)
    after = cache["blocks.0.hook_resid_post"][0, 4:8].std()
    assert noise_sigma(tiny, [a], [SPAN], noise_at="mlp0_out") == pytest.approx(float(after), rel=1e-5)
    with pytest.raises(BadInput, match="noise_at='embed'"):
        noise_sigma(tiny, [a], [SPAN], noise_at="mlp0_out", source="matrix")


@pytest.mark.parametrize("noise_at", ["embed", "mlp0_out"])
def test_fast_path_equals_one_cell_per_forward(tiny, noise_at):
    kinds = ("resid", "mlp", "attn_w1")
    t = trace(tiny, PROMPT, ANS, SPAN, kinds=kinds, n_samples=3, window=2, max_rows=20, noise_at=noise_at)
    for kind in kinds:
        ref = trace_one_cell_per_forward(tiny, PROMPT, ANS, SPAN, kind=kind, n_samples=3, window=2,
                                         noise_at=noise_at)
        torch.testing.assert_close(t.effects[kind], ref, atol=1e-5, rtol=0)
    assert (t.effects["mlp"][:, : SPAN[0]] == 0).all()  # before the subject nothing is corrupted
    # restoring the whole residual stream at the top layer, last position, gives the clean answer back
    assert float(t.effects["resid"][-1, -1]) == pytest.approx(t.p_clean - t.p_corrupt, abs=1e-5)
    again = trace(tiny, PROMPT, ANS, SPAN, kinds=("resid",), n_samples=3, noise_at=noise_at)
    torch.testing.assert_close(again.effects["resid"], t.effects["resid"])


def test_aligned_and_peak(tmp_path, tiny):
    eff = torch.arange(12.0).reshape(2, 6)
    a = aligned(eff, (1, 4))
    assert a[0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert torch.isnan(aligned(eff, (1, 2))[0, 1])
    # peak on a hand-built profile: NaN cells never win, the largest finite one does
    prof = torch.tensor([[0.1, float("nan"), 0.3, 0.0, 0.2], [0.4, 0.9, float("nan"), -1.0, 0.5], [0.0] * 5])
    assert peak(prof) == (1, "middle_subject", pytest.approx(0.9))
    assert peak(-prof)[:2] == (1, "first_after")
    t = trace(tiny, PROMPT, ANS, SPAN, kinds=("attn",), n_samples=2, window=1)
    shifted = dataclasses.replace(t, effects={"attn": t.effects["attn"] + 1.0})
    avg = average_aligned([t, shifted])  # the mean of two facts, cell by cell
    torch.testing.assert_close(avg["attn"], aligned(t.effects["attn"], SPAN) + 0.5)
    save_figure(plot_trace(t), tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
    with pytest.raises(BadInput, match="unknown trace kind"):
        trace(tiny, PROMPT, ANS, SPAN, kinds=("ffn",))


def test_positions_trace_only_those_columns(tiny):
    full = trace(tiny, PROMPT, ANS, SPAN, kinds=("mlp",), n_samples=3, window=2)
    part = trace(tiny, PROMPT, ANS, SPAN, kinds=("mlp",), n_samples=3, window=2, positions=[SPAN[1] - 1, -1])
    cols = [SPAN[1] - 1, part.effects["mlp"].shape[1] - 1]
    torch.testing.assert_close(part.effects["mlp"][:, cols], full.effects["mlp"][:, cols], atol=1e-5, rtol=1e-4)
    others = [c for c in range(part.effects["mlp"].shape[1]) if c not in cols]
    assert part.effects["mlp"][:, others].isnan().all()
    with pytest.raises(BadInput, match="outside the prompt"):
        trace(tiny, PROMPT, ANS, SPAN, kinds=("mlp",), positions=[99])


def test_aligned_columns_and_site_peak():
    assert aligned_columns((1, 4), 7, ["last_subject", "last"]) == [3, 6]
    assert aligned_columns((1, 4), 7, ["middle_subject"]) == [2]
    with pytest.raises(BadInput, match="unknown trace position"):
        aligned_columns((1, 4), 7, ["subject"])
    eff = torch.zeros(30)
    eff[2] = 0.5  # trimmed windows: every layer is its own window's centre
    assert site_peak(eff) == (0.5, 2)
    eff[12] = 0.7
    eff[13] = float("nan")
    assert site_peak(eff) == (pytest.approx(0.7), 12)
    eff[29] = 0.9
    assert site_peak(eff)[1] == 29


def test_trace_job_sites_table(tiny):
    from ffnmem.data.facts import Fact
    from ffnmem.jobs.trace import TraceParams, compute
    from ffnmem.store.results import check_finite

    facts = [Fact(subject="cat", relation="r", prompt="The cat sat on", target=" the"),
             Fact(subject="dog", relation="r", prompt="A dog ran to", target=" the")]
    p = TraceParams(kinds=["mlp"], positions=["last_subject", "last"], target="prediction", n_samples=2,
                    window=2, first_token="any")
    res = compute(tiny, facts, p)
    sites, rows = res.table("sites"), res.table("facts")
    assert list(sites.fact_id) == ["r/cat", "r/dog"] and (sites.n_layers == tiny.n_layers).all()
    assert {"mlp_last_subject_max", "mlp_last_subject_peak", "mlp_last_max", "mlp_last_peak"} <= set(sites.columns)
    assert "mlp_first_subject_max" not in sites.columns
    # the traced token is the model's own top-1, so the clean p is the largest next-token probability
    for r in rows.itertuples():
        with torch.no_grad():
            probs = tiny.bridge(tiny.to_tokens(r.prompt))[0, -1].softmax(-1)
        assert r.p_clean == pytest.approx(float(probs.max()), abs=1e-5)
        assert r.known == (int(probs.argmax()) == tiny.encode(" the", prepend_bos=False)[0])
    eff = res.table("effects")
    last = eff[(eff.subject == "cat") & (eff.position == "last")].effect
    assert sites.mlp_last_max[0] == pytest.approx(float(last.max()), abs=1e-6)
    check_finite(res)  # the batch runner refuses NaN tensors: a partial trace stores none
    # ROME's defaults: the model's prediction, one noise level from all the facts' subjects, window 10
    assert TraceParams().target == "prediction" and TraceParams().window == 10
    toks = [tiny.to_tokens(f.prompt) for f in facts]
    spans = [(int(r.subject_start), int(r.subject_end)) for r in rows.itertuples()]
    assert spans == [(5, 8), (3, 6)]  # byte tokens: BOS T h e _ | c a t; BOS A _ | d o g
    assert res.meta["sigma"] == pytest.approx(noise_sigma(tiny, toks, spans), rel=1e-6)
    fixed = compute(tiny, facts[:1], p.model_copy(update={"noise_sigma": 0.5, "window": "scaled"}))
    assert fixed.meta["sigma"] == 0.5 and fixed.meta["window"] == 1  # round(10 * 2 / 48) = 0 -> 1


def test_plan_chunks_known_answer():
    from ffnmem.methods.tracing import plan_chunks

    cells = [(l, t) for l in range(4) for t in (1, 2)]
    # no prefix reuse, cost 1 per pass: by hand, n·T = 10 and a pass costs 1 + 10·(lo + cells·(4 − lo)):
    # layer 0 (81) + layer 1 (71) + layers 2-3 (101) beats every other cut (layers 1-3: 191; 2 | 3: 112)
    plan = plan_chunks(cells, 1, 4, n_samples=2, n_tokens=5, max_cells=8, forward_cost=1.0, prefix=False)
    assert [(lo, p0, len(c)) for lo, p0, c in plan] == [(0, 0, 2), (1, 0, 2), (2, 0, 4)]
    assert plan[2][2] == [(2, 1), (2, 2), (3, 1), (3, 2)]
    # with prefix reuse and a small per-pass cost, positions are never merged (a cell at 2 run from
    # 1 costs 8 token rows instead of 6): every pass runs from its own cells' position
    plan = plan_chunks(cells, 1, 4, 2, 5, 8, forward_cost=1.0)
    assert all({t for _, t in c} == {p0} for _, p0, c in plan) and {p0 for _, p0, _ in plan} == {1, 2}
    # a huge per-pass cost: one full pass from layer 0 and the first position; max_cells still caps a pass
    assert [(lo, p0, len(c)) for lo, p0, c in plan_chunks(cells, 1, 4, 2, 5, 8, forward_cost=1e9)] == [(0, 1, 8)]
    assert plan_chunks(cells, 1, 4, 2, 5, 3, forward_cost=1e9)[0][:2] == (0, 1)
    assert all(len(c) <= 3 for _, _, c in plan_chunks(cells, 1, 4, 2, 5, 3, forward_cost=1e9))
    # a pass starts at its cells' first position and lowest window start
    for lo, p0, c in plan_chunks(cells, 2, 4, 2, 5, 3, forward_cost=20.0):
        assert p0 == min(t for _, t in c) and lo == min(window_layers(l, 2, 4).start for l, _ in c)
    # window 4 on 4 layers: layers 0-2 start at 0, layer 3 at 1
    assert {lo for lo, _, _ in plan_chunks(cells, 4, 4, 2, 5, 8, forward_cost=0.0)} == {0, 1}
    assert sorted(c for _, _, cs in plan for c in cs) == sorted(cells)


def test_fast_path_is_exact_for_any_chunking(tiny):
    ref = trace(tiny, PROMPT, ANS, SPAN, kinds=("resid", "mlp"), n_samples=2, window=2, forward_cost=0.0)
    for cost in (1e9, 50.0):
        t = trace(tiny, PROMPT, ANS, SPAN, kinds=("resid", "mlp"), n_samples=2, window=2, max_rows=6,
                  forward_cost=cost)
        for k in ("resid", "mlp"):
            torch.testing.assert_close(t.effects[k], ref.effects[k], atol=1e-6, rtol=0)


def test_prefix_reuse_equals_one_cell_per_forward_on_smollm2(smol):
    """SmolLM2 runs passes from their first position on, against the corrupted run's cached keys and
    values; cells inside the subject (the suffix still carries noise) and after it equal one full
    forward per cell (``restore_batch`` on one cell: what ``trace_one_cell_per_forward`` runs)."""
    from ffnmem.core.hooks import hook_name
    from ffnmem.methods.prefix_cache import prefix_cache_supported
    from ffnmem.methods.tracing import (
        TRACED_HOOKS,
        kind_window,
        restore_batch,
        subject_noise,
    )

    assert prefix_cache_supported(smol)  # else the fast path silently ran whole prompts
    prompt, span, answer, layers = "Barack Obama was born in", (1, 4), smol.answer_token(" Hawaii"), [0, 11, 29]
    tokens = smol.to_tokens(prompt)
    t = trace(smol, prompt, answer, span, kinds=("mlp", "resid"), n_samples=3, window=10, sigma=0.12,
              layers=layers, forward_cost=0.0)
    noise = subject_noise(smol, span, 3, 0, 0.12)
    with torch.no_grad():
        _, cache = smol.bridge.run_with_cache(tokens)
    for kind in ("mlp", "resid"):
        clean = {l: cache[hook_name(TRACED_HOOKS[kind], l)] for l in range(smol.n_layers)}
        for l in layers:
            for pos in range(span[0], tokens.shape[1]):
                ref = restore_batch(smol, tokens, answer, span, noise, clean, [(l, pos)], kind,
                                    kind_window(kind, 10))[0] - t.p_corrupt
                assert float(t.effects[kind][l, pos]) == pytest.approx(float(ref), abs=1e-5), (kind, l, pos)
        assert (t.effects[kind][layers, : span[0]] == 0).all()
    # restoring the last position's whole residual stream at the top gives the clean answer back
    assert float(t.effects["resid"][-1, -1]) == pytest.approx(t.p_clean - t.p_corrupt, abs=1e-5)


def test_models_without_a_prefix_cache_fall_back_to_whole_prompts(tiny):
    from ffnmem.methods.prefix_cache import prefix_cache_supported
    from ffnmem.methods.tracing import corrupted_run, subject_noise

    assert not prefix_cache_supported(tiny)  # the native TransformerLens models take no HF cache
    noise = subject_noise(tiny, SPAN, 2, 0, 0.1)
    p, kv = corrupted_run(tiny, tiny.to_tokens(PROMPT), ANS, SPAN, noise)
    assert kv is None and 0.0 <= p <= 1.0
