"""Knowledge capacity against model width: the job behind ``ffnmem capacity``.

:func:`compute` trains one model per width on the same facts (resumably, in ``run_dir/d{width}``;
:func:`ffnmem.methods.capacity.sweep_widths`) and returns a ``capacity`` Result with the ``widths``
table; :func:`write` adds ``capacity_vs_size.png`` with the corpus' bits drawn as a ceiling.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ffnmem.data.synthetic import FactCorpus
from ffnmem.methods.capacity import sweep_widths
from ffnmem.methods.training import TrainConfig
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_capacity, save_figure


def compute(corpus: FactCorpus, base: TrainConfig, widths: list[int], *, run_dir: str | Path | None = None,
            mlp_ratio: int = 4, device: str = "auto", progress: bool = True) -> Result:
    """Sweep the widths; one row per width (params, bits stored, bits per parameter, accuracy)."""
    rows = sweep_widths(corpus, base, widths, mlp_ratio=mlp_ratio, run_dir=run_dir, device=device,
                        progress=progress)
    return Result(kind="capacity", tables={"widths": table_from_rows(rows)},
                  meta={"mlp_ratio": mlp_ratio, "train": dataclasses.asdict(base),
                        "corpus_bits": rows[0]["max_bits"], "value_entropy_bits": corpus.value_entropy_bits()},
                  provenance=make_provenance(None, seed=base.seed, facts_config=corpus.config.to_dict()))


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` and ``capacity_vs_size.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_capacity(result.table("widths").to_dict("records")), out / "capacity_vs_size.png", dpi=120)
    return result.save(out / "result")
