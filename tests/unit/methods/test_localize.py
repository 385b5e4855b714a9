"""locate(): every method ranks memories on the tiny model; margin vs logit; exactness of DLA and
activation patching; Dai's refining and cross-fact filtering; held-out paraphrases never select."""

from __future__ import annotations

import math

import pytest
import torch

import ffnmem
from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import EMBED, hook_name
from ffnmem.data.facts import Fact, encode_facts
from ffnmem.methods.attribution import answer_directions, direct_effects
from ffnmem.methods.interventions import Margin, Noise, Restore, run_metric
from ffnmem.methods.knowledge_neurons import drop_shared, kn_ranking, refine_neurons
from ffnmem.methods.localize import METHODS, locate, selection_prompts
from ffnmem.methods.tracing import noise_sigma, subject_noise

ALTS = [80, 90, 100]  # byte tokens: every answer of tiny's byte tokenizer starts with the same " "


def _facts():
    return [Fact(subject=s, relation="capital_of", prompt=f"The capital of {s} is", target=f" {c}",
                 paraphrases=(f"{s}'s capital city is", f"The capital city of {s} is called"), where=f"t:{s}")
            for s, c in (("France", "Paris"), ("Germany", "Berlin"))]


@pytest.fixture(scope="module")
def enc(tiny):
    return encode_facts(tiny, _facts())


@pytest.fixture(scope="module")
def located(tiny, enc):
    alts = [ALTS] * len(enc)
    return {m: locate(tiny, enc, m, k=8, alternatives=alts, n_samples=3) if m not in ("dla", "knowledge_neurons")
            else locate(tiny, enc, m, k=8, alternatives=alts, **({"steps": 4} if m == "knowledge_neurons" else {}))
            for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_ranks_k_memories_with_finite_scores(located, method):
    for i, loc in enumerate(located[method]):
        assert loc.method == method and loc.fact == i
        ranked = loc.cells if method == "tracing" else loc.memories
        assert len(ranked) == 8 and all(math.isfinite(s) for *_, s in ranked)
        assert [s for *_, s in ranked] == sorted((s for *_, s in ranked), reverse=True)
        if method == "tracing":
            assert loc.memories == []
        else:
            assert len({(l, n) for l, n, _ in loc.memories}) == 8


@pytest.mark.parametrize("method", METHODS)
def test_selection_never_uses_the_held_out_paraphrase(located, enc, method):
    for e, loc in zip(enc, located[method]):
        assert loc.prompts and e.fact.paraphrases[-1] not in loc.prompts
        want = (e.fact.prompt, *e.fact.paraphrases[:-1]) if method == "knowledge_neurons" else (e.fact.prompt,)
        assert loc.prompts == want


def test_selection_prompts_hold_out_the_last_paraphrase():
    f = _facts()[0]
    assert selection_prompts(f, "prompt") == (f.prompt,)
    assert selection_prompts(f, "paraphrases") == (f.prompt, f.paraphrases[0])
    one = Fact(subject="X", relation="r", prompt="X is", target=" y", paraphrases=("X was",))
    assert selection_prompts(one, "paraphrases") == ("X is",)
    with pytest.raises(BadInput, match="selection"):
        selection_prompts(f, "all")


@pytest.fixture(scope="module")
def even_neuron():
    """tiny-2l with neuron 7 of layer 1 always on (m = GELU(8)) writing *equally* toward the answer
    and the one alternative: a "some city comes next" neuron."""
    wb = ffnmem.load_model("tiny-2l", device="cpu", seed=0)
    enc = encode_facts(wb, _facts()[:1])
    ans, alt = enc[0].answer_ids[0], ALTS[0]
    d = answer_directions(wb, torch.tensor([ans, alt]))  # [2 d_model], effective directions
    gram = d @ d.T
    coef = torch.linalg.solve(gram, torch.full((2,), 1.0))  # v = D^T c with v·d_ans = v·d_alt = 1
    ffn = wb.ffn(1)
    with torch.no_grad():
        ffn.keys[7] = 0.0
        ffn.b_in[7] = 8.0
        ffn.values[7] = 40.0 * (coef @ d)
    return wb, enc, alt


def test_margin_cancels_a_neuron_that_writes_answer_and_alternative_alike(even_neuron):
    wb, enc, alt = even_neuron
    logit = locate(wb, enc, "dla", k=wb.n_layers * wb.d_mlp, target="logit")[0].memories
    margin = locate(wb, enc, "dla", k=wb.n_layers * wb.d_mlp, alternatives=[[alt]])[0].memories
    assert logit[0][:2] == (1, 7) and logit[0][2] > 5 * abs(logit[1][2])
    score = {(l, n): s for l, n, s in margin}
    assert abs(score[(1, 7)]) < 1e-3 * logit[0][2]
    assert margin[0][:2] != (1, 7)


def test_dla_margin_scores_sum_to_the_measured_margin(tiny_gated):
    """RMSNorm, no biases: memories + attention + embedding direct effects add up to the margin."""
    wb = tiny_gated
    f = Fact(subject="some", relation="r", prompt="some text", target=" q", where="t:1")
    enc = encode_facts(wb, [f])
    alts = [ord("a"), ord("b")]
    mem = locate(wb, enc, "dla", k=wb.n_layers * wb.d_mlp, alternatives=[alts])[0].memories
    ans = enc[0].answer_ids[0]
    fx = direct_effects(wb, [f.prompt], [ans], [alts])
    tokens = wb.to_tokens(f.prompt)
    _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in (EMBED, "ln_final.hook_scale"))
    d = answer_directions(wb, torch.tensor([ans]), torch.tensor([alts]))
    embed = float((cache[EMBED][0, -1] * d[0]).sum() / cache["ln_final.hook_scale"][0, -1, 0])
    total = sum(s for *_, s in mem) + float(fx.mlp_bias.sum() + fx.attn.sum()) + embed
    measured = float(run_metric(wb, tokens, torch.tensor([ans]), Margin(alts))[0])
    assert total == pytest.approx(measured, abs=2e-3)


def test_activation_patching_equals_a_one_neuron_at_a_time_loop(tiny, enc):
    loc = locate(tiny, enc[:1], "activation_patching", k=5, alternatives=[ALTS], n_samples=3, sample=12,
                 max_rows=7)[0]  # max_rows 7: chunks of 2 neurons, several layers: the batching is exercised
    e = enc[0]
    tokens = tiny.to_tokens(e.fact.prompt)
    sigma = noise_sigma(tiny, [tokens], [e.subject])
    noise = Noise(subject_noise(tiny, e.subject, 3, 0, sigma), e.subject)
    names = [hook_name("post", l) for l in range(tiny.n_layers)]
    _, cache = tiny.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    rows, answers, metric = tokens.expand(3, -1), torch.full((3,), e.answer_ids[0]), Margin(ALTS)
    base = float(run_metric(tiny, rows, answers, metric, [(EMBED, noise)]).mean())
    for layer, neuron, score in loc.memories:
        mask = torch.zeros(1, tokens.shape[1], tiny.d_mlp, dtype=torch.bool)
        mask[0, :, neuron] = True
        hooks = [(EMBED, noise), (names[layer], Restore(cache[names[layer]], mask))]
        ref = float(run_metric(tiny, rows, answers, metric, hooks).mean()) - base
        assert score == pytest.approx(ref, abs=1e-4)


def test_refining_keeps_prompt_shared_neurons_and_drops_cross_fact_ones():
    a, b, c, x = (0, 1), (1, 5), (1, 9), (0, 3)
    fact1 = refine_neurons([[a, b, x], [b, a]], share=0.7)  # x on one prompt of two: not shared
    fact2 = refine_neurons([[b, c], [c, b]], share=0.7)
    fact3 = refine_neurons([[b], [b]], share=0.7)  # another relation: its b is not counted for capital_of
    assert fact1 == [a, b] and fact2 == [b, c]
    kept = drop_shared([fact1, fact2, fact3], ["capital_of", "capital_of", "currency"], share=0.1)
    assert kept == [[a], [c], [b]]  # b is in two capital_of facts: a relation neuron there
    assert drop_shared([fact1, fact2], ["r", "r"], min_facts=3) == [fact1, fact2]  # shared by 2 < 3 facts: kept
    with pytest.raises(BadInput):
        drop_shared([fact1], ["r", "s"])


def test_kn_ranking_puts_refined_first_and_leaves_out_dropped():
    mean = torch.tensor([[5.0, 4.0, 0.1], [3.0, 2.0, 1.0]])
    ranked = kn_ranking(mean, refined=[(1, 2), (1, 0)], dropped={(0, 0)}, k=4)
    assert [(l, n) for l, n, _ in ranked] == [(1, 0), (1, 2), (0, 1), (1, 1)]
    assert ranked[0][2] == 3.0


def test_bad_requests_are_user_errors(tiny, enc):
    with pytest.raises(BadInput, match="unknown localization method"):
        locate(tiny, enc, "saliency")
    with pytest.raises(BadInput, match="no option 'steps'"):
        locate(tiny, enc, "dla", alternatives=[ALTS] * 2, steps=3)
    with pytest.raises(BadInput, match="linear in the logits"):
        locate(tiny, enc, "dla", target="prob")
