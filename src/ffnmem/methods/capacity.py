"""Knowledge capacity against model size: one model per width on the same facts, bits per parameter.

Allen-Zhu & Li (2024) find that a language model stores about 2 bits of knowledge per parameter
once each fact has been seen often enough, across sizes. Here every width trains with the same
corpus, seed, schedule and depth; only ``d_model`` (and ``d_mlp = mlp_ratio · d_model``) change.
Bits stored are counted as in :func:`ffnmem.methods.frequency.capacity_bits`: Σ over facts of
max(0, log2|V| − loss bits on the value). When the corpus holds fewer bits than a model can store,
bits/param falls as the model grows: the figure then measures the corpus, not the model, and the
plot draws the corpus' bits as a ceiling so that this is visible.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactCorpus
from ffnmem.methods.frequency import capacity_bits, score_queries, summarize
from ffnmem.methods.training import TrainConfig, train


def width_configs(base: TrainConfig, widths: list[int], mlp_ratio: int = 4) -> list[TrainConfig]:
    """One training config per residual width (FFN width ``mlp_ratio`` times it), checked first."""
    if not widths:
        raise BadInput("give at least one width, e.g. --widths 16,32,64")
    if mlp_ratio < 1:
        raise BadInput(f"mlp ratio {mlp_ratio} must be at least 1")
    bad = [w for w in widths if w < base.n_heads or w % base.n_heads]
    if bad:
        raise BadInput(f"width {bad[0]} is not a positive multiple of the {base.n_heads} attention heads; "
                       f"use multiples of {base.n_heads}")
    return [dataclasses.replace(base, d_model=w, d_mlp=mlp_ratio * w) for w in sorted(set(widths))]


def sweep_widths(corpus: FactCorpus, base: TrainConfig, widths: list[int], *, mlp_ratio: int = 4,
                 run_dir: str | Path | None = None, device: str = "auto", progress: bool = True) -> list[dict]:
    """Train one model per width and measure the bits it stores; one row per width.

    With ``run_dir`` each width trains (resumably) in ``run_dir/d{width}``.
    """
    rows = []
    configs = width_configs(base, widths, mlp_ratio)
    for cfg in tqdm(configs, desc="widths", unit="model", disable=not progress):
        where = Path(run_dir) / f"d{cfg.d_model}" if run_dir is not None else None
        run = train(corpus, cfg, where, device=device, progress=progress)
        scored = score_queries(run.wb, corpus.queries, value_sets=corpus.values,
                               value_noise=corpus.config.value_noise)
        cap = capacity_bits(scored, corpus.config.n_values, run.wb.n_params())
        rows.append({"d_model": cfg.d_model, "d_mlp": cfg.d_mlp, "n_layers": cfg.n_layers, "params": cap["n_params"],
                     "bits": cap["bits"], "max_bits": cap["max_bits"], "bits_per_param": cap["bits_per_param"],
                     "accuracy": summarize(scored)["accuracy"], "steps": run.step, "seconds": run.seconds})
    return rows
