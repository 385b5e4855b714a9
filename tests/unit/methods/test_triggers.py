"""Trigger mining and key-value agreement on the tiny native models."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ffnmem.core.errors import BadInput
from ffnmem.methods import capture as cap
from ffnmem.methods import triggers as T
from ffnmem.methods.keyvalue import agreement, derangement, value_top_ids
from ffnmem.store.provenance import tokens_hash


@pytest.fixture(scope="module")
def tokens(tiny):
    g = torch.Generator().manual_seed(0)
    t = torch.randint(32, 127, (6, 24), generator=g)
    t[:, 0] = tiny.tokenizer.bos_token_id
    return t


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_mine_matches_brute_force(tiny, tokens, sign):
    tr = T.mine(tiny, tokens, [0, 1], k=4, sign=sign, batch_size=4, progress=False)
    acts = cap.collect(tiny, tokens, ["blocks.1.mlp.hook_post"], progress=False)["blocks.1.mlp.hook_post"]
    body = acts[:, 1:].reshape(-1, acts.shape[-1]) * sign  # BOS position excluded
    want = body.topk(4, dim=0).values
    assert torch.allclose(tr.values[1], want, atol=1e-5)
    # flat indices point at the reported activations, never at position 0
    assert (tr.index[1] % tokens.shape[1] != 0).all()
    got = acts.reshape(-1, acts.shape[-1]).gather(0, tr.index[1]) * sign
    assert torch.allclose(got, tr.values[1], atol=1e-5)
    assert torch.allclose(tr.stats[1]["max"], acts[:, 1:].reshape(-1, acts.shape[-1]).max(0).values, atol=1e-5)
    assert tr.values[1].shape == (4, tiny.d_mlp)  # O(k · d_mlp), whatever the corpus size


def test_next_tokens_and_rows(tiny, tokens):
    idx = torch.tensor([1, 23, 24 + 5])
    nxt = T.next_tokens(tokens, idx)
    assert nxt.tolist() == [int(tokens[0, 2]), -1, int(tokens[1, 6])]
    tr = T.mine(tiny, tokens, [0], k=3, progress=False)
    rows = T.example_rows(tiny, tr, 0, [5], context=4)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    r = rows[0]
    assert r["trigger_id"] == int(tokens.flatten()[r["window"] * 24 + r["pos"]])
    assert len(r["context"]) <= 4 and r["coeff"] == pytest.approx(float(tr.values[0][0, 5]))


def test_result_roundtrip(tiny, tokens, tmp_path):
    tr = T.mine(tiny, tokens, [1], k=2, progress=False)
    res = T.to_result(tiny, tr, context=3, corpus="random")
    back = T.from_result(type(res).load(res.save(tmp_path / "r")))
    assert torch.equal(back.index[1], tr.index[1]) and back.layers == [1]
    assert res.tables["examples"].num_rows == 2 * tiny.d_mlp
    assert set(res.table("stats").columns) >= {"mean", "frac_active", "max"}
    assert res.provenance["data_hash"] == tokens_hash(tokens)


def test_agreement_pure():
    vids = torch.tensor([[1, 2], [3, 4], [5, 6]])
    nxt = torch.tensor([[2, -1], [9, 9], [-1, -1]])
    assert agreement(vids, nxt).tolist() == [True, False, False]
    perm = torch.tensor([1, 0, 2])
    assert agreement(vids, torch.tensor([[3], [9], [0]]), perm).tolist() == [False, True, False]
    for n in (2, 3, 10, 257):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and not (p == torch.arange(n)).any()
    assert torch.equal(derangement(50, 1), derangement(50, 1))


def test_value_top_ids_matches_full_projection(tiny):
    from ffnmem.methods.keyvalue import value_tokens

    ids = value_top_ids(tiny, 1, k=5, chunk=100)
    full = value_tokens(tiny, 1, list(range(tiny.d_mlp)), k=5)
    assert torch.equal(ids, full.top_ids)


def test_agreement_by_layer_seeded(tiny, tokens):
    tr = T.mine(tiny, tokens, [0, 1], k=3, progress=False)
    a = T.agreement_by_layer(tiny, tr, value_k=20, n_triggers=3, n_shuffles=3, seed=1)
    b = T.agreement_by_layer(tiny, tr, value_k=20, n_triggers=3, n_shuffles=3, seed=1)
    assert a == b and len(a.rows()) == 2
    # independent recount with Python sets: value i's top-20 tokens vs the next tokens of its top-3
    # triggers (observed), and vs those of key perm[i] for each seeded derangement (baseline)
    for j, l in enumerate([0, 1]):
        vids = [set(r) for r in value_top_ids(tiny, l, 20).tolist()]
        nxt = [set(c) - {-1} for c in tr.next_ids(l)[:3].T.tolist()]
        def hits(pairing, vids=vids, nxt=nxt):
            return sum(bool(vids[i] & nxt[pairing[i]]) for i in range(len(vids))) / len(vids)
        assert a.observed[j] == pytest.approx(hits(list(range(len(vids)))))
        base = [hits(derangement(len(vids), 1 + s).tolist()) for s in range(3)]
        assert a.baseline[j] == pytest.approx(sum(base) / 3)
    assert any(x > 0 for x in a.observed + a.baseline), "no hit anywhere: the recount would be vacuous"
    assert set(a.bands(tiny.n_layers)) <= {"lower", "middle", "upper"}


def test_agreement_neuron_rows_are_the_layer_means(tiny, tokens):
    tr = T.mine(tiny, tokens, [0, 1], k=3, progress=False)
    a = T.agreement_by_layer(tiny, tr, value_k=20, n_triggers=3, n_shuffles=4, seed=0)
    rows = pd.DataFrame(a.neuron_rows(tiny.n_layers))
    assert len(rows) == 2 * tiny.d_mlp and set(rows.agreement) <= {0.0, 1.0}
    means = rows.groupby("layer")[["agreement", "shuffled"]].mean()
    assert means.agreement.tolist() == pytest.approx(a.observed, abs=1e-6)
    assert means.shuffled.tolist() == pytest.approx(a.baseline, abs=1e-6)
    # per neuron: value i with the triggers of key perm[i], averaged over the shuffles
    vids, nxt = value_top_ids(tiny, 1, 20, sign=tr.sign), tr.next_ids(1)[:3].T
    want = torch.stack([agreement(vids, nxt, derangement(nxt.shape[0], s)).float() for s in range(4)]).mean(0)
    assert rows[rows.layer == 1].shuffled.tolist() == pytest.approx(want.tolist())
    assert [T.band_of(l, 30) for l in (0, 9, 10, 19, 20, 29)] == ["lower"] * 2 + ["middle"] * 2 + ["upper"] * 2
    assert T.band_of(1, 2) == "middle" and T.band_of(0, 2) == "lower"  # as the old per-band means


@pytest.mark.parametrize("kw, msg", [
    (dict(layers=[5]), "out of range"),
    (dict(k=10_000), "k=10000 is out of range"),
    (dict(k=0), "out of range"),
    (dict(layers=[]), "no layers"),
])
def test_mine_bad_input(tiny, tokens, kw, msg):
    args = dict(layers=[0], k=2) | kw
    with pytest.raises(BadInput, match=msg):
        T.mine(tiny, tokens, args["layers"], k=args["k"], progress=False)


def test_bad_context_and_empty(tiny, tokens):
    tr = T.mine(tiny, tokens, [0], k=2, progress=False)
    with pytest.raises(BadInput, match="context window"):
        T.example_rows(tiny, tr, 0, [0], context=24)
    with pytest.raises(BadInput, match="empty corpus"):
        T.mine(tiny, tokens[:0], [0], k=1, progress=False)
    with pytest.raises(BadInput, match="n_triggers"):
        T.agreement_by_layer(tiny, tr, n_triggers=3)


def test_card_histograms_from_one_shared_pass_match_a_card_alone(tiny):
    """keys_job computes every card's histogram in one pass; a card alone re-reads its own."""
    import torch

    from ffnmem.methods.triggers import mine
    from ffnmem.viz.cards import histogram_coefficients, neuron_card

    tokens = torch.randint(3, 300, (6, 16), generator=torch.Generator().manual_seed(1))
    tr = mine(tiny, tokens, [0, 1], k=3, progress=False)
    shared = histogram_coefficients(tiny, tr, {0: [5, 9], 1: [2]})
    assert shared[0].shape == (6 * 15, 2) and shared[1].shape == (6 * 15, 1)
    alone = histogram_coefficients(tiny, tr, {1: [2]})[1][:, 0]
    torch.testing.assert_close(shared[1][:, 0], alone)
    assert neuron_card(tiny, tr, 0, 9, acts=shared[0][:, 1]).layer == 0


def test_histogram_counts_match_numpy_per_column():
    """Each column's counts are numpy's histogram over that column's [min, max] (the last bin closed);
    a constant column lands in bin 0."""
    import numpy as np

    from ffnmem.methods.triggers import histogram_counts

    g = torch.Generator().manual_seed(0)
    acts = torch.cat([torch.randn(500, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1]), torch.full((500, 1), 2.0)], 1)
    counts, edges = histogram_counts(acts, bins=7)
    assert counts.shape == (4, 7) and counts.sum(1).tolist() == [500] * 4
    for j in range(3):
        want, _ = np.histogram(acts[:, j].numpy(), bins=7, range=(float(edges[j, 0]), float(edges[j, 1])))
        assert counts[j].tolist() == want.tolist()
    assert counts[3, 0] == 500 and edges[3].tolist() == [2.0, 2.0]
