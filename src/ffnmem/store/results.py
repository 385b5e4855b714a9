"""Result objects with provenance, saved as a folder: Parquet tables, safetensors, a JSON header.

Layout of a saved result::

    result/
      header.json          kind, schema version, provenance, meta
      tables/NAME.parquet  one file per table
      tensors.safetensors  all tensors

Writes go to a temp folder that then replaces the target as a whole (:func:`ffnmem.core.outputs.atomic_dir`):
an interrupted save never leaves a half-written result, an older result at the same path stays intact
until then, and a folder ffnmem did not write is never replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from ffnmem.core.errors import BadInput, FfnmemError
from ffnmem.core.outputs import atomic_dir, recover
from ffnmem.core.paths import atomic_write_json

SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Result:
    """Tables (pyarrow), tensors and metadata, with the provenance that produced them."""

    kind: str
    tables: dict[str, pa.Table] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str):
        """Table ``name`` as a pandas DataFrame."""
        return self.tables[name].to_pandas()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_dir(path) as tmp:
            (tmp / "tables").mkdir()
            for name, table in self.tables.items():
                pq.write_table(table, tmp / "tables" / f"{name}.parquet")
            if self.tensors:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.tensors.items()},
                          str(tmp / "tensors.safetensors"))
            atomic_write_json(tmp / "header.json", {"kind": self.kind, "schema_version": SCHEMA_VERSION,
                                                    "provenance": self.provenance, "meta": self.meta})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Result:
        path = Path(path)
        if not path.exists():
            recover(path)  # a save killed between its two renames leaves the old result as a backup
        header_path = path / "header.json"
        if not header_path.exists():
            raise BadInput(f"{path} is not an ffnmem result (no header.json)")
        try:
            header = json.loads(header_path.read_text())
        except ValueError as exc:
            raise BadInput(f"{header_path} is damaged ({exc}); re-run the analysis") from None
        if header.get("schema_version", 0) > SCHEMA_VERSION:
            raise BadInput(f"{path} was written by a newer ffnmem (schema {header['schema_version']}); upgrade ffnmem")
        tables = {p.stem: pq.read_table(p) for p in sorted((path / "tables").glob("*.parquet"))}
        tfile = path / "tensors.safetensors"
        tensors = load_file(str(tfile)) if tfile.exists() else {}
        return cls(kind=header["kind"], tables=tables, tensors=tensors, meta=header.get("meta", {}),
                   provenance=header.get("provenance", {}))


def table_from_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """A pyarrow table from a list of dicts (columns from the first row)."""
    return pa.Table.from_pylist(rows)


class NonFiniteResult(FfnmemError):
    """A result holds NaN or inf: the computation broke (NaN weights, overflow)."""


def check_finite(result: Result) -> None:
    """Refuse NaN/inf in any float column (lists of floats included) or float tensor, naming the first.

    Convention: a value that is undefined (a bin without rows, a subject span too short) is stored
    as NULL, never NaN (see the causal_trace analysis), so NaN here means the numbers are broken.
    """
    for name, table in result.tables.items():
        for col in table.column_names:
            values = _floats(table.column(col))
            if values is not None:
                bad = pc.sum(pc.cast(pc.invert(pc.is_finite(values)), pa.int64())).as_py() or 0
                if bad:
                    raise NonFiniteResult(f"{result.kind}: table {name}, column {col} holds {bad} NaN/inf of "
                                          f"{len(values)} values; the computation broke (NaN weights, overflow?)")
    for name, t in result.tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteResult(f"{result.kind}: tensor {name} holds {int((~torch.isfinite(t)).sum())} NaN/inf "
                                  "values; the computation broke (NaN weights, overflow?)")


def _floats(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The float values of a column, lists flattened; None when it holds no floats."""
    while pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    return column if pa.types.is_floating(column.type) else None
