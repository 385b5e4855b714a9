"""The analysis registry of batch runs: each name pairs a job's parameters with a call of that job.

An :class:`Analysis` names its parameter model (pydantic: unknown names are refused), the data it
reads (``facts`` — sharded across units —, ``corpus`` — one unit —, ``model`` — the model only, the
job brings its own prompts: one unit per model and seed — or ``none``: the job makes its own data
and model and runs once per seed whatever the batch's models, with ``wb=None``) and
``fn(wb, data, params, seed) -> Result``, which only calls the job (:mod:`ffnmem.jobs`): the CLI
command of the same analysis calls the same job, so both give the same tables for the same facts
and seed. A name registered twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ffnmem.data.corpus import windows
from ffnmem.jobs import (
    ablation,
    attribute,
    capacity,
    exposure,
    fair,
    groundtruth,
    keys,
    knowledge,
    localization,
    lossy,
    probe,
    recall,
    superposition,
    trace,
)
from ffnmem.jobs.params import Params
from ffnmem.store.results import Result


@dataclass(frozen=True)
class UnitData:
    """What one unit reads: its shard of facts, or the corpus settings."""

    facts: list = field(default_factory=list)
    texts: list[str] | None = None
    window: int = 64
    max_windows: int | None = 32
    data_hash: str | None = None


@dataclass(frozen=True)
class Analysis:
    name: str
    params: type[Params]
    fn: Callable[..., Result]
    data: Literal["facts", "corpus", "model", "none"] = "facts"
    doc: str = ""


ANALYSES: dict[str, Analysis] = {}


def register(name: str, params: type[Params], fn: Callable[..., Result], *,
             data: Literal["facts", "corpus", "model", "none"] = "facts", doc: str = "") -> Analysis:
    """Add an analysis under ``name`` (refused if the name is taken)."""
    if name in ANALYSES:
        raise ValueError(f"analysis {name!r} is registered twice")  # a programming error, not user input
    ANALYSES[name] = Analysis(name, params, fn, data, doc)
    return ANALYSES[name]


register("recall", recall.RecallParams, lambda wb, d, p, seed: recall.compute(wb, d.facts, p, seed),
         doc="Recall of each fact: rank, top-1/top-k, p(answer), loss bits (jobs.recall)")
register("popularity", recall.PopularityParams,
         lambda wb, d, p, seed: recall.compute_popularity(wb, d.facts, p, seed),
         doc="Recall vs wordfreq popularity per fact, and wrong answers' substitutes with their nulls (jobs.recall)")
register("direct_effects", attribute.DirectEffectsParams,
         lambda wb, d, p, seed: attribute.compute(wb, d.facts, p, seed),
         doc="Direct logit attribution per layer, neuron and head (jobs.attribute)")
register("ablation_topk_vs_random", ablation.AblationParams,
         lambda wb, d, p, seed: ablation.compute(wb, d.facts, p, seed),
         doc="Top-k DLA memories vs k random ones ablated: p(answer) before and after (jobs.ablation)")
register("ablation_heldout", ablation.HeldoutParams,
         lambda wb, d, p, seed: ablation.compute_heldout(wb, d.facts, p, seed),
         doc="Top-k DLA memories selected on the prompt, ablated on a held-out paraphrase vs layer-matched "
             "random sets and another fact's top-k (jobs.ablation)")
register("knowledge_neurons_heldout", knowledge.KnowledgeNeuronParams,
         lambda wb, d, p, seed: knowledge.compute_heldout(wb, d.facts, p, seed),
         doc="Knowledge neurons (integrated gradients, refined over paraphrases) ablated on a held-out "
             "paraphrase vs layer-matched random sets (jobs.knowledge)")
register("causal_trace", trace.TraceParams, lambda wb, d, p, seed: trace.compute(wb, d.facts, p, seed),
         doc="Causal tracing per fact, aligned on subject and last tokens (jobs.trace)")
register("key_agreement", keys.KeyAgreementParams,
         lambda wb, d, p, seed: keys.compute_agreement(
             wb, windows(wb, d.texts, window=d.window, max_windows=d.max_windows), p, seed),
         data="corpus", doc="Key-value agreement against shuffled pairings (jobs.keys)")
register("probe_selectivity", probe.ProbeParams,
         lambda wb, d, p, seed: probe.compute(wb, {t: probe.builtin_task(t, p.templates) for t in p.tasks}, p, seed),
         data="model", doc="Linear probes per layer vs Hewitt-Liang control tasks, per control draw and fold (jobs.probe)")
register("sae_units", probe.SaeParams,
         lambda wb, d, p, seed: probe.compute_sae_units(
             wb, windows(wb, d.texts, window=d.window, max_windows=d.max_windows), p, seed),
         data="corpus", doc="SAE per layer on FFN coefficients; token concentration per neuron and latent (jobs.probe)")
register("toy_superposition", superposition.ToyParams, lambda wb, d, p, seed: superposition.compute(p, seed),
         data="none", doc="Toy models of superposition: features represented per sparsity (jobs.superposition)")
register("exposure_recall", exposure.TrainExposureParams,
         lambda wb, d, p, seed: exposure.train_and_compute(p, seed), data="none",
         doc="Train on a synthetic preset; recall, capacity and FFN share per exposure bin (jobs.exposure)")
register("localization", localization.LocalizationParams,
         lambda wb, d, p, seed: localization.compute(wb, d.facts, p, seed),
         doc="Every localization method's top-k memories per known fact, validated by ablation (target, random "
             "matched sets, same/other-relation collateral, held-out paraphrase, k for half the margin) (jobs.localization)")
register("localization_synthetic", localization.SyntheticLocalizationParams,
         lambda wb, d, p, seed: localization.train_and_compute(p, seed), data="none",
         doc="The localization comparison on a model trained on a synthetic preset, against exposure (jobs.localization)")
register("localization_groundtruth", groundtruth.GroundTruthParams, lambda wb, d, p, seed: groundtruth.compute(p, seed),
         data="none", doc="Localization methods scored against facts injected into known neurons (INJ) (jobs.groundtruth)")
register("architectures_fair", fair.FairParams, lambda wb, d, p, seed: fair.compute(p, seed), data="none",
         doc="Architectures at equal supervised tokens / FLOPs / steps / convergence, per fact and seed, with "
             "every arm at its initial weights as the control; bits per arm; with analyses=true the position probe, "
             "attention rank and direct effect by layer (jobs.fair)")
register("lossy_compression", lossy.LossyParams, lambda wb, d, p, seed: lossy.run(p, seed, progress=False),
         data="none", doc="Zipf values + skewed exposure on small models: recall by exposure and value frequency, "
                          "substitution test vs value-frequency/uniform nulls, KL gap rare vs frequent, survival "
                          "by exposure across widths (jobs.lossy)")
register("capacity_sweep", capacity.CapacityParams,
         lambda wb, d, p, seed: capacity.compute_sweep(p.preset, [seed], run_dir=None if p.run_dir is None else
                                                       f"{p.run_dir}/seed-unit-{seed}", check=p.check,
                                                       passes=p.passes, sizes=p.sizes, n_boot=p.n_boot, device="cpu", progress=False),
         data="none", doc="Capacity-limited size sweep on a synthetic preset for one seed: bits stored (unclipped, "
                          "noise-aware ceiling), bits = c·params, the more-steps check, cross-entropy vs size (jobs.capacity)")
