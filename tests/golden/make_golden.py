"""Freeze the golden results: ``python tests/golden/make_golden.py [NAME ...]`` (see golden.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden.golden import GOLDEN  # noqa: E402

DATA = Path(__file__).parent / "data"


def main(names: list[str]) -> None:
    DATA.mkdir(exist_ok=True)
    for name in names or list(GOLDEN):
        tensors, tables = GOLDEN[name]()
        save_file({k: v.contiguous() for k, v in tensors.items()} or {"_": torch.zeros(0)},
                  str(DATA / f"{name}.safetensors"))
        for t, df in tables.items():
            df.to_parquet(DATA / f"{name}.{t}.parquet", index=False)
        print(f"froze {name}: {len(tensors)} tensors, {len(tables)} tables")


if __name__ == "__main__":
    main(sys.argv[1:])
