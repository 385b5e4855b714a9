"""Ablation hooks: zero/mean/resample/scale replace exactly the chosen coefficients."""

from __future__ import annotations

import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods.ablation import (
    ablate_sets,
    answer_probs,
    derangement,
    layer_histogram,
    layer_matched_random,
    make_hooks,
    masks_for,
    random_neurons,
    reference_coefficients,
    relative_drop,
    summarise_drops,
    top_vs_random,
    whole_layers,
)
from ffnmem.methods.attribution import direct_effects


def test_zero_whole_layer_matches_capture(tiny):
    tokens = tiny.to_tokens("hello world")
    seen = {}
    hooks = make_hooks(tiny, masks_for(tiny, [whole_layers(tiny, [1])]), "zero")
    hooks.append(("blocks.1.hook_mlp_out", lambda a, hook=None: seen.setdefault("out", a.clone())))
    with torch.inference_mode(), tiny.bridge.hooks(fwd_hooks=hooks):
        tiny.bridge(tokens)
    b_out = tiny.ffn(1).b_out
    torch.testing.assert_close(seen["out"][0], b_out.expand_as(seen["out"][0]), atol=1e-5, rtol=0)


def test_mean_and_resample_are_seeded(tiny):
    tokens = tiny.to_tokens(["abcdefgh", "ijklmnop"])
    ref = reference_coefficients(tiny, tokens, [0])
    masks = masks_for(tiny, [[(0, 3), (0, 5)]])
    ans = torch.tensor([10, 10])
    clean = answer_probs(tiny, tokens, ans)
    for mode in ("mean", "resample"):
        p1 = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, mode, reference=ref, seed=1))
        p2 = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, mode, reference=ref, seed=1))
        torch.testing.assert_close(p1, p2)
        assert not torch.allclose(p1, clean), f"{mode} ablation changed nothing"
    # mean ablation is the reference mean written into those units at every position (hand-written hook)
    mean = ref[0].mean(0)

    def write_mean(act, hook=None):
        act = act.clone()
        act[:, :, [3, 5]] = mean[[3, 5]].to(act.dtype)
        return act
    with torch.inference_mode(), tiny.bridge.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", write_mean)]):
        want = tiny.bridge(tokens)[:, -1].float().softmax(-1)[[0, 1], [10, 10]]
    got = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, "mean", reference=ref))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    p_other = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, "resample", reference=ref, seed=2))
    assert not torch.allclose(p_other, p1), "resampling ignores its seed"
    with pytest.raises(BadInput, match="needs reference"):
        make_hooks(tiny, masks, "mean")
    with pytest.raises(BadInput, match="unknown ablation mode"):
        make_hooks(tiny, masks, "delete")


def test_random_neurons_seeded(tiny):
    a = random_neurons(tiny, 5, torch.Generator().manual_seed(0))
    assert a == random_neurons(tiny, 5, torch.Generator().manual_seed(0)) and len(set(a)) == 5


def manual_p(wb, prompt: str, answer: int, neurons, factor: float = 0.0) -> float:
    """p(answer) from a hand-written hook that multiplies each (layer, neuron) coefficient by
    ``factor`` at the last position only: an independent reference for the ablation machinery."""
    def edit(layer):
        def hook(act, hook=None):
            act = act.clone()
            for l, n in neurons:
                if l == layer:
                    act[:, -1, n] = act[:, -1, n] * factor
            return act
        return hook
    hooks = [(f"blocks.{l}.mlp.hook_post", edit(l)) for l in sorted({l for l, _ in neurons})]
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=hooks):
        logits = wb.bridge(wb.to_tokens(prompt))
    return float(logits[0, -1].float().softmax(-1)[answer])


def test_top_vs_random_ablates_the_top_dla_set_and_the_seeded_random_set(tiny):
    prompts, answers = ["abc", "xyz"], [100, 101]
    rows = top_vs_random(tiny, prompts, answers, k=4, seed=3)
    fx = direct_effects(tiny, prompts, answers)
    g = torch.Generator().manual_seed(3)  # the documented draw: one generator, one set per prompt
    for b, (prompt, ans) in enumerate(zip(prompts, answers)):
        top = [(l, n) for l, n, _ in fx.top(b, 4)]
        rand = random_neurons(tiny, 4, g)
        r = rows[b]
        assert r["p_clean"] == pytest.approx(manual_p(tiny, prompt, ans, []), rel=1e-4)
        assert r["p_top"] == pytest.approx(manual_p(tiny, prompt, ans, top), rel=1e-4)
        assert r["p_random"] == pytest.approx(manual_p(tiny, prompt, ans, rand), rel=1e-4)
        assert abs(r["p_top"] - r["p_clean"]) > 1e-4 * r["p_clean"], "the top-k ablation changed nothing"


def test_summarise_drops_known_answer():
    rows = [{"p_clean": 0.5, "p_top": 0.1, "p_random": 0.4}, {"p_clean": 0.2, "p_top": 0.1, "p_random": 0.2}]
    s = summarise_drops(rows)
    assert s["drop_top"] == pytest.approx((0.8 + 0.5) / 2) and s["drop_random"] == pytest.approx(0.1)
    assert s["factor"] == pytest.approx(6.5)
    assert summarise_drops(rows[1:])["factor"] == float("inf")  # random set changed nothing


def test_layer_matched_random_keeps_histogram_and_avoids_the_set(tiny):
    pairs = [(1, 0), (1, 1), (1, 2), (0, 5)]
    g = torch.Generator().manual_seed(0)
    draws = [layer_matched_random(tiny, pairs, g) for _ in range(20)]
    for d in draws:
        assert layer_histogram(d) == {0: 1, 1: 3} and not set(d) & set(pairs) and len(set(d)) == 4
    assert len({tuple(d) for d in draws}) > 1  # not the same set every time
    assert layer_matched_random(tiny, pairs, torch.Generator().manual_seed(3)) == \
        layer_matched_random(tiny, pairs, torch.Generator().manual_seed(3))
    half = [(1, i) for i in range(0, tiny.d_mlp, 2)]  # the only disjoint draw: the odd neurons of layer 1
    assert sorted(layer_matched_random(tiny, half, g)) == [(1, i) for i in range(1, tiny.d_mlp, 2)]
    with pytest.raises(BadInput, match="cannot draw"):
        layer_matched_random(tiny, [(0, i) for i in range(tiny.d_mlp // 2 + 1)], g)


def test_derangement_stays_in_group_and_never_maps_to_itself():
    groups = ["a", "b", "a", "a", "c", "b", "a"]
    for seed in range(10):
        d = derangement(groups, torch.Generator().manual_seed(seed))
        assert d[4] is None  # alone in its group
        for i, j in enumerate(d):
            if j is not None:
                assert j != i and groups[j] == groups[i]
        assert sorted(j for j in d if j is not None) == [0, 1, 2, 3, 5, 6]  # a permutation
    assert derangement(groups, torch.Generator().manual_seed(1)) == derangement(groups, torch.Generator().manual_seed(1))


def test_ablate_sets_changes_only_the_ablated_rows(tiny):
    top = [(l, n) for l, n, _ in direct_effects(tiny, ["hello wor"], [108]).top(0, 8)]
    p = ablate_sets(tiny, "hello wor", 108, [top, [], top])
    clean = answer_probs(tiny, tiny.to_tokens("hello wor"), torch.tensor([108]))
    torch.testing.assert_close(p[[0, 2]], clean.expand(2))  # row 0 and the empty set: clean
    assert float(p[1]) < float(p[0]) - 1e-4  # zeroing the top direct effects lowers p(answer): the hooks act
    assert float(p[3]) == pytest.approx(float(p[1]))  # same set, same result
    assert relative_drop(0.5, 0.1) == pytest.approx(0.8)
