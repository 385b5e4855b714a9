"""Streaming capture: same numbers as a full cache, bounded state, clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ffnmem import capture as cap
from ffnmem.errors import BadInput, NonFiniteActivation


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
