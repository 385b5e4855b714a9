"""Streaming capture: same numbers as a full cache, bounded state, clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ffnmem.core.errors import BadInput, NonFiniteActivation
from ffnmem.methods import capture as cap


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(3, 300, (10, 16), generator=torch.Generator().manual_seed(0))


def test_collect_matches_run_with_cache(tiny, tokens):
    names = cap.hook_names(tiny, ["post", "out", "resid_post"])
    got = cap.collect(tiny, tokens, names, batch_size=3, progress=False)
    _, cache = tiny.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    for n in names:
        torch.testing.assert_close(got[n], cache[n])


def test_forward_stops_after_last_layer_needed(tiny, tokens):
    fired = []
    cap.run_hooks(tiny, tokens, ["blocks.0.mlp.hook_post"], lambda n, t, s: fired.append(s), progress=False)
    assert fired == [0, 8]  # 10 windows in batches of 8: one call per batch, with its first window
    assert cap._stop_layer(["blocks.0.mlp.hook_post"], tiny.n_layers) == 0
    assert cap._stop_layer(["blocks.1.mlp.hook_post"], tiny.n_layers) == 1  # skips the unembedding
    assert cap._stop_layer(["blocks.0.mlp.hook_post", "ln_final.hook_scale"], tiny.n_layers) is None
    # a hook in a later layer never fires: the pass stopped after block 0
    seen = []
    with tiny.bridge.hooks(fwd_hooks=[("blocks.1.mlp.hook_post", lambda t, hook: seen.append(1))]):
        cap.run_hooks(tiny, tokens[:2], ["blocks.0.mlp.hook_post"], lambda n, t, s: None, progress=False)
    assert not seen


def test_reducers_match_full_statistics(tiny_gated, tokens):
    name = "blocks.1.mlp.hook_post"
    full = cap.collect(tiny_gated, tokens, [name], progress=False)[name].reshape(-1, tiny_gated.d_mlp)
    stats, topk = cap.reduce(tiny_gated, tokens, [name], [cap.NeuronStats(), cap.TopK(5)], batch_size=4, progress=False)
    s, t = stats.result()[name], topk.result()[name]
    torch.testing.assert_close(s["mean"], full.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(s["var"], full.var(0, unbiased=False), atol=1e-5, rtol=1e-3)
    torch.testing.assert_close(s["max"], full.max(0).values)
    torch.testing.assert_close(s["frac_active"], (full > 0).float().mean(0))
    torch.testing.assert_close(t["values"], full.topk(5, dim=0).values)
    # the stored flat index points at the activation it reports
    picked = full.gather(0, t["index"])
    torch.testing.assert_close(picked, t["values"])


def test_topk_state_does_not_grow_with_the_stream(tiny, tokens):
    topk = cap.TopK(3)
    cap.reduce(tiny, tokens, ["blocks.0.mlp.hook_post"], [topk], batch_size=2, progress=False)
    assert topk.state["blocks.0.mlp.hook_post"][0].shape == (3, tiny.d_mlp)


def test_shards_round_trip_and_resume(tmp_path, tiny, tokens):
    names = ["blocks.0.mlp.hook_post"]
    folder = cap.write_shards(tiny, tokens, names, tmp_path / "acts", windows_per_shard=4, progress=False)
    index = json.loads((folder / "index.json").read_text())
    assert index["shards"] == ["shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    got = torch.cat([load_file(str(folder / s))[names[0]] for s in index["shards"]]).float()
    want = cap.collect(tiny, tokens, names, progress=False)[names[0]]
    torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)
    # an interrupted run resumes: complete shards are kept, not recomputed
    mtime = (folder / "shard-00000.safetensors").stat().st_mtime_ns
    (folder / "shard-00002.safetensors").unlink()
    cap.write_shards(tiny, tokens, names, folder, windows_per_shard=4, progress=False)
    assert (folder / "shard-00000.safetensors").stat().st_mtime_ns == mtime
    assert (folder / "shard-00002.safetensors").exists()


def test_nan_is_reported_with_its_layer(tokens):
    import ffnmem

    wb = ffnmem.load_model("tiny-2l", seed=0)
    with torch.no_grad():
        wb.ffn(1).keys[7, 0] = float("nan")
    with pytest.raises(NonFiniteActivation, match="blocks.1.mlp.hook_post"):
        cap.collect(wb, tokens, cap.hook_names(wb, ["post"]), progress=False)


def test_bad_input(tiny):
    with pytest.raises(BadInput, match="empty input"):
        cap.collect(tiny, torch.zeros((0, 5), dtype=torch.long), ["blocks.0.mlp.hook_post"], progress=False)
    with pytest.raises(BadInput, match="unknown hook"):
        cap.collect(tiny, torch.ones((1, 5), dtype=torch.long), ["blocks.0.mlp.hook_nope"], progress=False)
    with pytest.raises(BadInput, match="reads at most"):
        cap.collect(tiny, torch.ones((1, 500), dtype=torch.long), ["blocks.0.mlp.hook_post"], progress=False)
    with pytest.raises(BadInput, match="out of range"):
        cap.hook_names(tiny, ["post"], [5])
    with pytest.raises(BadInput, match="unknown activation kind"):
        cap.hook_names(tiny, ["nope"], [0])


# --- reducers against the implementation they replaced ------------------------------------------

class _TopKBefore:
    """Frozen copy of TopK.update as of a931641 (one torch.topk over the state and the batch)."""

    def __init__(self, k):
        self.k, self.state = k, {}

    def update(self, name, acts, start):
        b, p, d = acts.shape
        flat = acts.reshape(b * p, d).float()
        idx = torch.arange(start * p, start * p + b * p, device=acts.device).unsqueeze(1).expand(-1, d)
        if name in self.state:
            vals, ids = self.state[name]
            flat, idx = torch.cat([vals, flat]), torch.cat([ids, idx])
        top = flat.topk(min(self.k, flat.shape[0]), dim=0)
        self.state[name] = (top.values, idx.gather(0, top.indices))


class _NeuronStatsBefore:
    """Frozen copy of NeuronStats as of a931641."""

    def __init__(self):
        self.s = {"sum": 0, "sq": 0, "pos": 0, "max": None, "n": 0}

    def update(self, name, acts, start):
        flat, s = acts.reshape(-1, acts.shape[-1]).float(), self.s
        s["sum"] = s["sum"] + flat.sum(0).double()
        s["sq"] = s["sq"] + (flat * flat).sum(0).double()
        s["pos"] = s["pos"] + (flat > 0).sum(0)
        m = flat.max(0).values
        s["max"] = m if s["max"] is None else torch.maximum(s["max"], m)
        s["n"] += flat.shape[0]

    def result(self):
        s = self.s
        mean = s["sum"] / s["n"]
        var = (s["sq"] / s["n"] - mean * mean).clamp_min(0)
        return {"mean": mean.float(), "var": var.float(), "max": s["max"].float(),
                "frac_active": (s["pos"].double() / s["n"]).float()}


def _stream(seed, n_batches, pos, d, *, ties, max_windows=30):
    """Random batches of varied size; with ties, small integers (most values repeat many times)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        b = int(torch.randint(1, max_windows + 1, (1,), generator=g))
        out.append(torch.randint(-3, 4, (b, pos, d), generator=g).float() if ties else torch.randn(b, pos, d, generator=g))
    return out


def _fold(reducer, batches):
    start = 0
    for a in batches:
        reducer.update("h", a, start)
        start += a.shape[0]
    return reducer


def _stable_top(batches, k):
    """Reference: the k largest per unit over the whole stream, ties to the earlier token."""
    flat = torch.cat([a.reshape(-1, a.shape[-1]) for a in batches])
    vals, order = flat.sort(dim=0, descending=True, stable=True)
    return vals[:k], order[:k]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("k", "n_batches", "pos", "max_windows"), [
    (5, 12, 8, 30),     # many batches, k below one batch
    (40, 9, 3, 4),      # k above the rows of one batch (several batches to fill)
    (500, 3, 4, 6),     # k above all rows seen: everything is kept
    (20, 6, 64, 8),     # batches of >= 40 blocks: the first batch takes the block-maxima bound
    (1, 5, 128, 8),
])
def test_topk_matches_the_reducer_it_replaced(ties, k, n_batches, pos, max_windows):
    for seed in range(3):
        batches = _stream(seed, n_batches, pos, 23, ties=ties, max_windows=max_windows)
        new = _fold(cap.TopK(k), batches).result()["h"]
        old_vals, old_ids = _fold(_TopKBefore(k), batches).state["h"]
        assert torch.equal(new["values"], old_vals)  # the same values, exactly
        ref_vals, ref_ids = _stable_top(batches, k)
        assert torch.equal(new["values"], ref_vals)
        assert torch.equal(new["index"], ref_ids)  # ties go to the earlier token
        if not ties:  # without ties the index is unique, and the old reducer found it too
            assert torch.equal(new["index"], old_ids)


def test_topk_ties_do_not_depend_on_the_batch_size():
    acts = _stream(7, 1, 16, 11, ties=True, max_windows=1)[0].expand(12, 16, 11).clone()
    acts[:, 0] = float("-inf")  # what trigger mining feeds for the BOS position
    one = _fold(cap.TopK(30), [acts]).result()["h"]
    parts = _fold(cap.TopK(30), list(acts.split(5))).result()["h"]
    assert torch.equal(one["values"], parts["values"]) and torch.equal(one["index"], parts["index"])


def test_topk_ranks_nan_first_like_torch_topk():
    acts = torch.randn(4, 64, 6, generator=torch.Generator().manual_seed(3))
    acts[1, 5, 2] = acts[3, 7, 2] = float("nan")
    top = _fold(cap.TopK(3), list(acts.split(1))).result()["h"]
    assert top["values"][:2, 2].isnan().all() and top["index"][:2, 2].tolist() == [1 * 64 + 5, 3 * 64 + 7]
    torch.testing.assert_close(top["values"][:, 0], acts[..., 0].flatten().topk(3).values)


def test_neuron_stats_match_the_reducer_they_replaced():
    batches = _stream(4, 10, 7, 33, ties=False)
    batches = [a.clamp_min(0) for a in batches]  # exact zeros: frac_active counts only > 0
    new = _fold(cap.NeuronStats(), batches).result()["h"]
    old = _fold(_NeuronStatsBefore(), batches).result()
    for key in ("mean", "var", "max", "frac_active"):
        assert torch.equal(new[key], old[key]), key


@pytest.mark.parametrize("k", [0, -3, True])
def test_topk_needs_k_of_at_least_one(k):
    with pytest.raises(BadInput, match="k of at least 1"):
        cap.TopK(k)
