"""``NAME@init=random``: a pretrained model's shape and tokenizer with fresh seeded weights (claims' control)."""

from __future__ import annotations

import pytest
import torch

from ffnmem.core.errors import ModelNotFound
from ffnmem.core.models import load_model, spec_options


def test_spec_options():
    assert spec_options("smollm2-135m@init=random,seed=2") == ("smollm2-135m", {"init": "random", "seed": 2})
    assert spec_options("tiny-2l@seed=3") == ("tiny-2l", {"seed": 3})
    for bad in ("smollm2-135m@init=zeros", "tiny-2l@init=random", "smollm2-135m@seed=2"):
        with pytest.raises(ModelNotFound):
            spec_options(bad)


def test_random_init_has_the_shape_not_the_weights():
    trained = load_model("smollm2-135m", device="cpu")
    a = load_model("smollm2-135m@init=random", device="cpu")
    b = load_model("smollm2-135m@init=random,seed=1", device="cpu")
    again = load_model("smollm2-135m@init=random", device="cpu")
    sa, st = a.bridge.original_model.state_dict(), trained.bridge.original_model.state_dict()
    assert sa.keys() == st.keys() and all(sa[k].shape == st[k].shape for k in sa)
    name = next(k for k in sa if k.endswith("down_proj._original_component.weight") or k.endswith("down_proj.weight"))
    assert not torch.equal(sa[name], st[name]) and not torch.equal(sa[name], b.bridge.original_model.state_dict()[name])
    assert torch.equal(sa[name], again.bridge.original_model.state_dict()[name])  # seeded: same weights again
    assert a.model_id == "smollm2-135m@init=random,seed=0" and "random" in a.source
