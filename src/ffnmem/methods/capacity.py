"""Knowledge capacity against model size: the estimator, the size sweep and its per-run records.

Allen-Zhu & Li (2024, Physics of LMs 3.3) find that a language model stores about 2 bits of knowledge
per parameter once each fact has been seen ~1,000 times (about 1 at 100 exposures). A sweep trains
one model per size (depth and/or width) and seed on the same fact table and counts the bits each
stores (:func:`knowledge_bits`). Only when the table holds more bits than the model can store does
bits/param measure the model; otherwise it measures the table (the old width sweep: 0.046 → 0.0045).
The capacity-limited presets (``capacity-100x``, ``capacity-1000x``; :data:`SWEEPS`) are sized so
the table exceeds 2 bits per non-embedding parameter by at least 2× at every size. Counting every
parameter they are not: at these sizes the embeddings are ~90% of the parameters and hold part of
the knowledge (L1-d10 stores 3.95 bits per non-embedding parameter of ``capacity-1000x`` at 8
passes; docs/FINDINGS.md), so a table that binds them needs ≥ 4 bits × all parameters. Fits, the
more-steps check and the scaling law are in :mod:`ffnmem.methods.capacity_fit`; ``passes`` in
:func:`sweep` trains toward the plateau.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.paths import atomic_write_json
from ffnmem.data.synthetic import FactCorpus, noisy_entropy_bits
from ffnmem.methods.frequency import capacity_bits, score_queries, summarize
from ffnmem.methods.training import TrainConfig, steps_for_epochs, train

log = logging.getLogger(__name__)

# Top-level modules of a native model whose weights are indexed by the vocabulary or position: the
# token embedding, the positional embedding and the unembedding (untied here, so counted too).
EMBEDDING_MODULES = frozenset({"tok_embed", "pos", "head", "embed", "pos_embed", "unembed"})


def param_counts(wb) -> dict:
    """``params_all`` (every trainable weight) and ``params_non_embedding`` (without the token and
    positional embeddings and the unembedding, as Kaplan et al. count N). A module of that name at any
    depth counts: the encoder-decoder's positional tables are ``encoder.pos`` and ``decoder.pos``."""
    total = emb = 0
    for name, p in wb.bridge.original_model.named_parameters():
        total += p.numel()
        if EMBEDDING_MODULES.intersection(name.split(".")[:-1]):
            emb += p.numel()
    return {"params_all": total, "params_non_embedding": total - emb}


def knowledge_bits(rows: list[dict], value_sets: dict[str, list[str]], value_noise: float = 0.0) -> dict:
    """Bits of knowledge stored, from scored queries (:func:`ffnmem.methods.frequency.score_queries`).

    - ``bits``: Σ over facts of (log2|V_a| − CE bits), NOT clipped per fact, where CE is the
      cross-entropy against the data's own distribution at the value (H + KL; the loss on the true
      value when there is no noise). A fact the model does not know counts ≤ 0 on average, so it cannot
      inflate the sum (clipping at 0 turns guessing noise into stored bits).
    - ``ceiling``: Σ (log2|V_a| − H_a) with H_a the exact entropy of the noisy value
      (:func:`~ffnmem.data.synthetic.noisy_entropy_bits`): what a model that learned every fact stores.
      ``max_bits`` = Σ log2|V_a| is the noise-free table.
    - ``bits_true``: Σ (log2|V_a| − loss bits on the true value), unclipped (above ``ceiling`` when
      there is noise: predicting v* with p = 1 − ε + ε/|V| beats the data's CE).
    - ``bits_clipped``: the OLD figure, Σ max(0, log2|V_a| − loss bits), kept for comparison only.
    - ``bits_azl``: Allen-Zhu & Li's bit-complexity value part, Σ_a N_a·log2(|V_a| / e^{p_a}) with
      p_a the mean loss (nats) of attribute a's values. Their name part (N·log2(N0/e^{p1}), the bits
      to generate names) is left out: names are given in our prompts, not asked for. With one token
      per value and p_a measured on the same rows, the mean is linear and this equals ``bits``
      exactly; they differ only where the loss is measured: theirs on the value tokens of the
      training documents (every mention, previous sentences about the entity in context, and the
      noisy values themselves, so its expectation is our CE), ours on one query prompt per fact with
      a corpus template and no preceding sentence.
    """
    if not rows:
        raise BadInput("no scored queries to count bits from")
    attrs = sorted({r["attribute"] for r in rows})
    missing = [a for a in attrs if a not in value_sets]
    if missing:
        raise BadInput(f"no value set for attribute {missing[0]!r}")
    logv = np.array([math.log2(len(value_sets[r["attribute"]])) for r in rows])
    h = np.array([noisy_entropy_bits(value_noise, len(value_sets[r["attribute"]])) for r in rows])
    ce = np.array([r.get("ce_bits", r["loss_bits"]) for r in rows], dtype=float)
    loss = np.array([r["loss_bits"] for r in rows], dtype=float)
    azl = 0.0
    for a in attrs:
        m = np.array([r["attribute"] == a for r in rows])
        p_nats = ce[m].mean() * math.log(2)
        azl += m.sum() * math.log2(len(value_sets[a]) / math.exp(p_nats))
    return {"n_facts": len(rows), "bits": float((logv - ce).sum()), "ceiling": float((logv - h).sum()),
            "max_bits": float(logv.sum()), "bits_true": float((logv - loss).sum()),
            "bits_clipped": float(np.maximum(0.0, logv - loss).sum()), "bits_azl": float(azl),
            "per_fact_bits": (logv - ce).tolist()}


@dataclass(frozen=True)
class Size:
    """One model shape of a sweep; the rest of the training config comes from the preset."""

    n_layers: int
    d_model: int
    n_heads: int = 2
    mlp_ratio: int = 4

    @property
    def name(self) -> str:
        return f"L{self.n_layers}-d{self.d_model}"

    def apply(self, base: TrainConfig) -> TrainConfig:
        return dataclasses.replace(base, n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                                   d_mlp=self.mlp_ratio * self.d_model)


def non_embedding_params(size: Size) -> int:
    """Non-embedding parameters of a native LN model of ``size`` (matches :func:`param_counts`)."""
    d, dm = size.d_model, size.mlp_ratio * size.d_model
    per_layer = 2 * d + 4 * d * d + 4 * d + 2 * d + 2 * d * dm + dm + d  # ln1, attn W+b, ln2, MLP W+b
    return size.n_layers * per_layer + 2 * d  # + the final LayerNorm


@dataclass(frozen=True)
class Sweep:
    """A capacity sweep: sizes (smallest first) and the sizes the more-steps check retrains."""

    sizes: tuple[Size, ...]
    check: tuple[Size, ...]
    check_factor: int = 2
    epochs: float = 1.0  # passes over the corpus (each fact seen epochs × its exposures times)


# Sizes span 23× in non-embedding parameters (522 → 12,232). capacity-100x's table (2,000 entities
# × 4 attributes × log2 100 = 53,151 bits) is 2.17× the 2 bits/param of the largest; the check
# retrains the smallest and the largest (the one most likely to be training-limited) with 2× steps.
_SIZES = (Size(1, 6), Size(1, 10), Size(2, 10), Size(2, 16), Size(2, 22))
SWEEPS: dict[str, Sweep] = {
    "capacity-100x": Sweep(sizes=_SIZES, check=(_SIZES[0], _SIZES[-1])),
    # 1,000 exposures: only the two smallest sizes fit the budget (210 entities: 5,581 bits ≥ 2×2×1,350)
    "capacity-1000x": Sweep(sizes=_SIZES[:2], check=(_SIZES[0],)),
    # --quick: the same code on a table small enough for CI (two sizes, a few seconds each)
    "capacity-quick": Sweep(sizes=(Size(1, 4), Size(1, 8)), check=(Size(1, 4),)),
}


def sweep_spec(name: str) -> Sweep:
    if name not in SWEEPS:
        raise BadInput(f"no capacity sweep for preset {name!r}; choose from {', '.join(SWEEPS)}")
    return SWEEPS[name]


RECORD = "capacity.json"


def run_one(corpus: FactCorpus, cfg: TrainConfig, where: Path | None, *, label: str, device: str = "auto",
            progress: bool = True) -> dict:
    """Train (resumably, in ``where``) and score one model; the record is cached in ``where/capacity.json``
    (reused only when its training and corpus settings match)."""
    fingerprint = json.loads(json.dumps({"train": dataclasses.asdict(cfg), "facts": corpus.config.to_dict()}))
    if where is not None and (where / RECORD).exists():
        try:
            rec = json.loads((where / RECORD).read_text())
            if rec.get("fingerprint") == fingerprint:
                return rec
        except ValueError:
            pass
        log.warning("%s/%s is stale or damaged; scoring again", where, RECORD)
    run = train(corpus, cfg, where, device=device, progress=progress)
    queries = [q for q in corpus.queries if not q["heldout"]]
    scored = score_queries(run.wb, queries, value_sets=corpus.values, value_noise=corpus.config.value_noise)
    kb = knowledge_bits(scored, corpus.values, corpus.config.value_noise)
    counts = param_counts(run.wb)
    s = summarize(scored)
    exposures = float(np.mean([f["exposures"] for f in corpus.facts]))  # per pass over the corpus
    rec = {"label": label, "seed": cfg.seed, "n_layers": cfg.n_layers, "d_model": cfg.d_model, "d_mlp": cfg.d_mlp,
           **counts, **{k: v for k, v in kb.items() if k != "per_fact_bits"},
           "bits_per_param": kb["bits"] / counts["params_non_embedding"],
           "bits_per_param_all": kb["bits"] / counts["params_all"],
           "bits_clipped_old": capacity_bits(scored, corpus.config.n_values, counts["params_all"])["bits"],
           "recall": s["accuracy"], "loss_bits": s["loss_bits"], "ce_bits": s["ce_bits"], "h_bits": s["h_bits"],
           "kl_bits": s["kl_bits"], "exposures": exposures, "steps": run.step, "seconds": run.seconds,
           "tokens_seen": run.tokens_seen,
           "epochs": run.epochs,
           "evals": [{"step": e["step"], "exposures": exposures * e["step"] / run.steps_per_epoch, "ce_bits": e["ce_bits"],
                      "accuracy": e["accuracy"]} for e in run.evals],
           "per_fact_bits": kb["per_fact_bits"], "fingerprint": fingerprint}
    if where is not None:
        atomic_write_json(where / RECORD, rec)
    return rec


def sweep(corpus: FactCorpus, base: TrainConfig, spec: Sweep, seeds: list[int], *, run_dir: str | Path | None = None,
          check: bool = True, passes: int = 1, device: str = "auto",
          progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Every size × seed (``run_dir/SIZE/seedN``), then the check: ``spec.check`` sizes retrained with
    ``spec.check_factor``× the steps on the first seed (``run_dir/SIZE-steps×F/seedN``). Resumable at
    both levels: finished runs are read back, interrupted ones resume from their last checkpoint.

    ``passes`` multiplies every model's steps (and warmup): each fact is then seen ``passes`` × its
    exposures times, the way to train a size toward its plateau; the check doubles that again. A run
    with k× the preset's steps lives in ``SIZE-steps×k`` whichever way k arose, so ``passes=2`` reuses
    the check run of ``passes=1``. Returns (rows, check rows); per-fact bits are kept in each row
    (``per_fact_bits``)."""
    if not seeds:
        raise BadInput("give at least one seed, e.g. --seeds 0,1,2")
    if passes < 1:
        raise BadInput(f"passes must be at least 1, not {passes}")
    jobs = [(s, seed, 1) for seed in seeds for s in spec.sizes]  # seed-major: each seed's fit is ready early
    if check:
        jobs += [(s, seeds[0], spec.check_factor) for s in spec.check]
    rows, checks = [], []
    steps = steps_for_epochs(corpus, base, spec.epochs)  # packed rows: the same for every size
    for size, seed, factor in tqdm(jobs, desc="capacity sweep", unit="model", disable=not progress):
        k = factor * passes
        cfg = dataclasses.replace(size.apply(base), seed=seed, steps=steps * k, eval_every=max(1, steps * k // 8),
                                  checkpoint_every=max(1, steps * k // 4), warmup=base.warmup * k)
        label = size.name if k == 1 else f"{size.name}-steps×{k}"
        where = Path(run_dir) / label / f"seed{seed}" if run_dir is not None else None
        rec = run_one(corpus, cfg, where, label=label, device=device, progress=progress)
        rec = {**rec, "size": size.name, "steps_factor": factor, "passes": passes}
        (rows if factor == 1 else checks).append(rec)
    return rows, checks


def select_sizes(spec: Sweep, names: list[str] | None) -> Sweep:
    """``spec`` restricted to the sizes named (e.g. ``["L1-d6"]``); the check keeps its sizes among
    them, or the smallest named when none is."""
    if not names:
        return spec
    known = {s.name: s for s in spec.sizes}
    bad = [n for n in names if n not in known]
    if bad:
        raise BadInput(f"no size {bad[0]!r} in this sweep; choose from {', '.join(known)}")
    sizes = tuple(s for s in spec.sizes if s.name in names)
    return dataclasses.replace(spec, sizes=sizes, check=tuple(s for s in spec.check if s in sizes) or sizes[:1])


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

    With ``run_dir`` each width trains (resumably) in ``run_dir/d{width}``. ``bits`` is the clipped
    figure of :func:`ffnmem.methods.frequency.capacity_bits` (as before); ``bits_unclipped`` and the
    noise-aware ``ceiling`` come from :func:`knowledge_bits`.
    """
    rows = []
    configs = width_configs(base, widths, mlp_ratio)
    for cfg in tqdm(configs, desc="widths", unit="model", disable=not progress):
        where = Path(run_dir) / f"d{cfg.d_model}" if run_dir is not None else None
        run = train(corpus, cfg, where, device=device, progress=progress)
        scored = score_queries(run.wb, corpus.queries, value_sets=corpus.values,
                               value_noise=corpus.config.value_noise)
        cap = capacity_bits(scored, corpus.config.n_values, run.wb.n_params())
        kb = knowledge_bits(scored, corpus.values, corpus.config.value_noise)
        rows.append({"d_model": cfg.d_model, "d_mlp": cfg.d_mlp, "n_layers": cfg.n_layers, "params": cap["n_params"],
                     "bits": cap["bits"], "max_bits": cap["max_bits"], "bits_per_param": cap["bits_per_param"],
                     "bits_unclipped": kb["bits"], "ceiling": kb["ceiling"],
                     "accuracy": summarize(scored)["accuracy"], "steps": run.step, "seconds": run.seconds})
    return rows
