"""Ablation hooks: zero/mean/resample/scale replace exactly the chosen coefficients."""

from __future__ import annotations

import pytest
import torch

from ffnmem.methods.ablation import (ablate_sets, answer_probs, derangement, layer_histogram, layer_matched_random,
                                     make_hooks, masks_for, random_neurons, reference_coefficients, relative_drop,
                                     summarise_drops, top_vs_random, whole_layers)
from ffnmem.methods.attribution import direct_effects
from ffnmem.core.errors import BadInput


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
    p_other = answer_probs(tiny, tokens, ans, make_hooks(tiny, masks, "resample", reference=ref, seed=2))
    assert not torch.allclose(p_other, p1), "resampling ignores its seed"
    with pytest.raises(BadInput, match="needs reference"):
        make_hooks(tiny, masks, "mean")
    with pytest.raises(BadInput, match="unknown ablation mode"):
        make_hooks(tiny, masks, "delete")


def test_random_neurons_seeded(tiny):
    a = random_neurons(tiny, 5, torch.Generator().manual_seed(0))
    assert a == random_neurons(tiny, 5, torch.Generator().manual_seed(0)) and len(set(a)) == 5


def test_top_vs_random_rows(tiny):
    rows = top_vs_random(tiny, ["abc", "xyz"], [100, 101], k=4)
    assert len(rows) == 2 and set(summarise_drops(rows)) == {"drop_top", "drop_random", "factor"}


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
