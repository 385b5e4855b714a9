"""Files from someone else: checkpoints, run folders, claim SQL. Nothing they hold may run or write."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ffnmem.errors import BadInput
from ffnmem.synthetic import FactConfig, generate
from ffnmem.training import TrainConfig, train

FACTS = FactConfig(n_entities=8, bins=(1, 2), n_values=6, seed=1)
CFG = TrainConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, steps=3, batch_size=4, warmup=1,
                  checkpoint_every=2, eval_every=3, seed=0)


class _Payload:
    """Unpickling this creates ``marker``: what a crafted checkpoint would do with real code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_checkpoint_state_is_refused_never_unpickled(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    step = run / "checkpoints" / "step-000009"
    step.mkdir(parents=True)
    torch.save({"optimizer": _Payload(marker)}, step / "state.pt")
    with pytest.raises(BadInput, match="pickled state.pt.*never loads") as exc:
        train(generate(FACTS), CFG, run, device="cpu", progress=False)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


def test_checkpoints_hold_no_pickle(tmp_path):
    train(generate(FACTS), CFG, tmp_path / "r", device="cpu", progress=False)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".safetensors", ".txt", ".model", ""}, files
    for p in files:
        assert not p.read_bytes().startswith(b"\x80"), p  # pickle protocol 2+ header
