"""Validation of ranked memories by ablation, on tiny-2l with a planted fact neuron: neuron 7 of layer 1
fires on "The cat sat on" (and "The cow sat on") at the last token and writes token 300, and is silent
on the other facts' prompts."""

from __future__ import annotations

import math

import pytest
import torch

import ffnmem
from ffnmem.core.errors import BadInput
from ffnmem.data.corpus import windows
from ffnmem.data.facts import EncodedFact, Fact
from ffnmem.methods.ablation import layer_histogram, reference_coefficients
from ffnmem.methods.validation import activation_deciles, matched_random, validate
from ffnmem.methods.validation_summary import concentration, summarise_validation

CLEAN, CORRUPT, PLANTED, ANSWER = "The cat sat on", "The dog sat on", (1, 7), 300
# (prompt, answer = the model's top token there, relation); the planted neuron is silent on all but the first
FACTS = [(CLEAN, ANSWER, "sit"), (CORRUPT, 6, "sit"), ("The rat sat on", 6, "sit"), ("A bird flew over", 167, "move"),
         ("The sun is", 103, "be"), ("The dog ran to", 4, "move"), ("A frog sat in", 6, "be")]
ALTS = [200, 210, 220, 230]  # low-logit tokens on every prompt: each fact's margin is positive
TEXT = ("The old man walked to the market and bought bread. A small bird sang on the roof while the rain fell. "
        "Numbers like one, two and three are easy to count. She wrote a letter to her friend in the city. ") * 4


@pytest.fixture(scope="module")
def planted():
    wb = ffnmem.load_model("tiny-2l", device="cpu", seed=0)
    name = "blocks.1.ln2.hook_out"
    xs = [wb.bridge.run_with_cache(wb.to_tokens(p), names_filter=lambda n: n == name)[1][name][0, -1]
          for p in (CLEAN, CORRUPT)]
    diff = xs[0] - xs[1]
    key = 16.0 * diff / diff.dot(diff)
    ffn = wb.ffn(1)
    d = wb.W_U[:, ANSWER] * wb.final_norm_weight()
    with torch.no_grad():
        ffn.keys[PLANTED[1]] = key
        ffn.b_in[PLANTED[1]] = -key.dot(xs[0] + xs[1]) / 2
        ffn.values[PLANTED[1]] = 1.5 * (d - d.mean()) / (d - d.mean()).norm()
    enc = [_enc(wb, p, a, r) for p, a, r in FACTS]
    ref = reference_coefficients(wb, windows(wb, [TEXT], window=32), [0, 1])
    return wb, enc, ref


def _enc(wb, prompt, answer, relation):
    f = Fact(subject=prompt.split()[1], relation=relation, prompt=prompt, target=" x", where=f"t:{prompt}")
    return EncodedFact(fact=f, prompt_ids=wb.encode(prompt), answer_ids=[answer], subject=(2, 3), distractor_ids=[])


def _validate(planted, ranked, **kw):
    wb, enc, ref = planted
    held = [["The cow sat on"]] + [[] for _ in enc[1:]]
    kw = {"alternatives": [ALTS] * len(enc), "heldout_prompts": held, "reference": ref, **kw}
    return validate(wb, enc, ranked, **kw)


def _fillers(wb, n):
    """Layer-1 neurons (the last layer) with the smallest |coefficient| at CLEAN's last token: ablating
    them cannot move the last position's logits."""
    name = "blocks.1.mlp.hook_post"
    c = wb.bridge.run_with_cache(wb.to_tokens(CLEAN), names_filter=lambda x: x == name)[1][name][0, -1]
    return [(1, int(i)) for i in c.abs().argsort()[:n] if int(i) != PLANTED[1]]


@pytest.fixture(scope="module")
def rows(planted):
    wb, enc, _ = planted
    ranked = [[PLANTED]] + [[(0, 3), (1, 5)] for _ in enc[1:]]
    return _validate(planted, ranked, k=1, ks=(1, 2), n_random=4)


def _cat(rows, mode):
    return next(r for r in rows if r["subject"] == "cat" and r["mode"] == mode)


def test_planted_neuron_is_localized_and_specific(rows):
    r = _cat(rows, "zero")
    assert r["known"] and r["n_set"] == 1 and r["layer_hist"] == "1:1"
    assert r["target_drop"] == pytest.approx(1.0, abs=0.2)
    assert abs(r["random_drop"]) < 0.05  # matched random neurons of layer 1 carry nothing of it
    assert r["n_same_relation"] == 2 and abs(r["same_relation_drop"]) < 0.05
    assert r["n_other_relation"] == 4 and abs(r["other_relation_drop"]) < 0.05
    assert r["specificity"] == pytest.approx(r["target_drop"] - r["same_relation_drop"])
    assert r["n_paraphrases"] == 1 and r["paraphrase_drop"] > 0.5  # the neuron fires on the paraphrase too
    assert r["k_half"] == 1 and not r["k_half_censored"]


def test_one_row_per_known_fact_and_mode(rows):
    assert len(rows) == len(FACTS) * 3
    assert {r["mode"] for r in rows} == {"zero", "mean", "resample"}
    dog = next(r for r in rows if r["prompt"] == CORRUPT and r["mode"] == "zero")
    assert math.isnan(dog["paraphrase_drop"]) and dog["n_paraphrases"] == 0


def test_unknown_facts_get_no_row_and_are_no_collateral(planted):
    wb, enc, ref = planted
    enc = [enc[0], _enc(wb, CORRUPT, 200, "sit"), *enc[2:]]  # a low-logit answer: this fact is not known
    alts = [ALTS] * len(enc)
    alts[1] = [6, 294]
    kw = {"k": 1, "ks": (1,), "modes": ("zero",), "alternatives": alts, "reference": ref, "n_random": 1}
    out = validate(wb, enc, [[PLANTED]] * len(enc), **kw)
    assert CORRUPT not in {r["prompt"] for r in out} and len(out) == len(enc) - 1
    assert all(r["margin_clean"] > 0 for r in out)
    assert _cat(out, "zero")["n_same_relation"] == 1  # the rat only
    every = validate(wb, enc, [[PLANTED]] * len(enc), known_only=False, **kw)
    assert len(every) == len(enc)
    assert next(r for r in every if r["prompt"] == CORRUPT)["known"] is False


def test_matched_random_keeps_layer_and_decile_and_avoids_the_set():
    g = torch.Generator().manual_seed(3)
    coeffs = torch.randn(3, 40, generator=g)
    dec = activation_deciles(coeffs)
    assert (torch.stack([torch.bincount(row, minlength=10) for row in dec]) == 4).all()  # equal-count bins
    top = [(0, int(coeffs[0].abs().argmax())), (2, 5), (2, 6), (0, 1)]
    for seed in range(20):
        draw, widened = matched_random(top, dec, torch.Generator().manual_seed(seed))
        assert widened == 0
        assert layer_histogram(draw) == layer_histogram(top)
        assert [int(dec[l, n]) for l, n in draw] == [int(dec[l, n]) for l, n in top]
        assert not set(draw) & set(top) and len(set(draw)) == len(draw)


def test_matched_random_widens_to_the_nearest_decile_when_one_is_used_up():
    dec = activation_deciles(torch.arange(20.0)[None])  # two neurons per decile
    draw, widened = matched_random([(0, 18), (0, 19)], dec, torch.Generator().manual_seed(0))
    assert widened == 2 and sorted(n for _, n in draw) == [16, 17]  # decile 9 is all in the set: decile 8


def test_k_half_is_the_smallest_k_that_halves_the_margin(planted):
    wb, enc, _ = planted
    fill = _fillers(wb, 8)
    ranked = [fill[:3] + [PLANTED] + fill[3:]] + [fill for _ in enc[1:]]
    r = _cat(_validate(planted, ranked, k=1, ks=(1, 2, 4, 8), modes=("zero",), n_random=1), "zero")
    assert r["k_half"] == 4 and not r["k_half_censored"]
    assert abs(r["target_drop"]) < 0.05  # top-1 is a filler
    r = _cat(_validate(planted, [fill] * len(enc), k=1, ks=(1, 2, 4, 8), modes=("zero",), n_random=1), "zero")
    assert r["k_half_censored"] and math.isnan(r["k_half"])


def test_zero_mean_and_resample_differ(rows):
    # an ordinary neuron (0, 3) ablated on "The dog sat on"; the planted neuron would not do: it is ~0 on
    # nearly every reference token, so resampling it is zero ablation
    m = [next(r for r in rows if r["prompt"] == CORRUPT and r["mode"] == mode)["margin_ablated"]
         for mode in ("zero", "mean", "resample")]
    assert min(abs(a - b) for a, b in [(m[0], m[1]), (m[0], m[2]), (m[1], m[2])]) > 1e-3


def _same(a, b):
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_seeded_determinism(planted):
    wb, enc, _ = planted
    ranked = [[PLANTED]] + [[(0, 3), (1, 5)] for _ in enc[1:]]
    kw = {"k": 1, "ks": (1,), "n_random": 4, "modes": ("resample",)}  # resampling and random sets both draw
    first, again = _validate(planted, ranked, **kw), _validate(planted, ranked, **kw)
    assert all(_same(a[c], b[c]) for a, b in zip(first, again) for c in a)
    other = _validate(planted, ranked, seed=1, **kw)
    assert any(not _same(a["random_drop"], b["random_drop"]) for a, b in zip(first, other))
    assert any(not _same(a["margin_ablated"], b["margin_ablated"]) for a, b in zip(first, other))


def test_bad_inputs_are_named(planted):
    wb, enc, ref = planted
    with pytest.raises(BadInput, match="one per fact"):
        validate(wb, enc, [[PLANTED]], reference=ref)
    with pytest.raises(BadInput, match="repeats a memory"):
        validate(wb, enc, [[PLANTED, PLANTED]] * len(enc), reference=ref)
    with pytest.raises(BadInput, match="ks non-empty"):
        validate(wb, enc, [[PLANTED]] * len(enc), ks=(), reference=ref)
    with pytest.raises(BadInput, match="unknown ablation mode"):
        validate(wb, enc, [[PLANTED]] * len(enc), modes=("scale",))


def test_summary_cis_contain_mean_and_median(rows):
    out = summarise_validation(rows)
    assert [s["mode"] for s in out] == ["zero", "mean", "resample"]
    for s in out:
        assert s["n_facts"] == len(FACTS)
        for col in ("target_drop", "random_drop", "specificity"):
            assert s[f"{col}_lo"] <= s[f"{col}_mean"] <= s[f"{col}_hi"]
            assert s[f"{col}_median_lo"] <= s[f"{col}_median"] <= s[f"{col}_median_hi"]
        assert s["paraphrase_drop_n"] == 1 and 0 <= s["frac_target_gt_random"] <= 1
    zero = [r for r in rows if r["mode"] == "zero"]
    assert out[0]["target_drop_mean"] == pytest.approx(sum(r["target_drop"] for r in zero) / len(zero))


def test_summary_k_half_median_counts_censored_facts_as_large():
    base = {c: 0.0 for c in ("target_drop", "random_drop", "same_relation_drop", "other_relation_drop",
                             "specificity", "paraphrase_drop", "target_delta", "random_delta")}
    rows = [base | {"mode": "zero", "k_half": k, "k_half_censored": c}
            for k, c in [(2, False), (8, False), (math.nan, True)]]
    s = summarise_validation(rows)[0]
    assert s["k_half_median"] == 8 and s["k_half_censored_frac"] == pytest.approx(1 / 3)
    s = summarise_validation(rows + [rows[2]])[0]
    assert s["k_half_median"] == 8  # half censored: the lower median is still a k that was tried
    assert summarise_validation(rows + [rows[2]] * 2)[0]["k_half_median"] == math.inf


def test_concentration_counts_memories():
    one = concentration(torch.tensor([0.0, -3.0, 0.0, 0.0]))
    assert one["share_top1"] == 1 and one["participation_ratio"] == pytest.approx(1)
    assert one["effective_number"] == pytest.approx(1)
    flat = concentration(-torch.ones(5, 40))
    assert flat["share_top1"] == pytest.approx(1 / 200) and flat["share_top100"] == pytest.approx(0.5)
    assert flat["participation_ratio"] == pytest.approx(200) and flat["effective_number"] == pytest.approx(200)
    two = concentration(torch.tensor([3.0, 1.0]))
    assert two["participation_ratio"] == pytest.approx(16 / 10)
    assert two["effective_number"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert math.isnan(concentration(torch.zeros(3))["participation_ratio"])
