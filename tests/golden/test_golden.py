"""Equivalence with results frozen before the layout changed (issue 13): same seed, same numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from .golden import GOLDEN, assert_same

DATA = Path(__file__).parent / "data"


def _frozen(name: str):
    tensors = {k: v for k, v in load_file(str(DATA / f"{name}.safetensors")).items() if k != "_"}
    tables = {p.name.split(".")[1]: pd.read_parquet(p) for p in sorted(DATA.glob(f"{name}.*.parquet"))}
    return tensors, tables


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_same_numbers_as_frozen(name):
    assert_same(name, GOLDEN[name](), _frozen(name))
