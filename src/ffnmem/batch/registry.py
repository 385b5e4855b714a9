"""The analysis registry of batch runs: names -> adapters over the library's analysis modules.

Each entry is one small :class:`Analysis`: a pydantic model of its parameters (unknown names are
refused), the data it reads (``facts`` — sharded across units —, ``corpus`` — one unit — or
``none``: the analysis makes its own data and model, e.g. a synthetic corpus it trains on; it gets
``wb=None`` and runs once per seed whatever the batch's models) and a function
``fn(wb, data, params, seed) -> Result`` that *calls* the analysis module and returns its
tables. A new module registers with one decorated function::

    class MyParams(Params):
        k: int = 10

    @register("my_analysis", MyParams, data="facts")
    def _my(wb, data, p, seed):
        return Result(kind="my_analysis", tables={...})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ffnmem.store.results import Result, make_provenance, table_from_rows


class Params(BaseModel):
    """Base of analysis parameters: unknown names are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    data: Literal["facts", "corpus", "none"] = "facts"
    doc: str = ""


ANALYSES: dict[str, Analysis] = {}


def register(name: str, params: type[Params], *, data: Literal["facts", "corpus", "none"] = "facts"):
    """Decorator adding ``fn`` to :data:`ANALYSES` under ``name``."""

    if name in ANALYSES:
        raise ValueError(f"analysis {name!r} is registered twice")  # a programming error, not user input

    def deco(fn):
        ANALYSES[name] = Analysis(name, params, fn, data, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def _prov(wb, data: UnitData, seed: int, p: Params) -> dict:
    return make_provenance(wb, data_hash=data.data_hash, seed=seed, params=p.model_dump())


# --- facts -----------------------------------------------------------------------------------

class RecallParams(Params):
    scoring: Literal["first_token", "sequence"] = "first_token"
    k: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)


@register("recall", RecallParams)
def _recall(wb, data: UnitData, p: RecallParams, seed: int) -> Result:
    """Recall of each fact (ffnmem.methods.recall.recall): rank, top-1/top-k, p(answer)."""
    from ffnmem.methods.recall import recall

    res = recall(wb, data.facts, scoring=p.scoring, k=p.k, batch_size=p.batch_size)
    return Result(kind="recall", tables=res.tables, meta=res.meta, provenance=_prov(wb, data, seed, p))


class FirstTokenParams(Params):
    # "strict": refuse answers whose first token is a bare space (facts.check_first_token);
    # "any": use the first token whatever it is (byte-level tiny models: machinery tests only)
    first_token: Literal["strict", "any"] = "strict"


def _encoded(wb, data: UnitData, p: FirstTokenParams) -> list:
    from ffnmem.data.facts import check_first_token, encode_facts

    enc = encode_facts(wb, data.facts)
    if p.first_token == "strict":
        for e in enc:
            check_first_token(wb, e)
    return enc


class DirectEffectsParams(FirstTokenParams):
    top: int = Field(10, ge=1)


@register("direct_effects", DirectEffectsParams)
def _direct_effects(wb, data: UnitData, p: DirectEffectsParams, seed: int) -> Result:
    """Direct logit attribution (ffnmem.methods.attribution.direct_effects): per-layer FFN/attention, top neurons."""
    from ffnmem.methods.attribution import direct_effects

    enc = _encoded(wb, data, p)
    fx = direct_effects(wb, [e.fact.prompt for e in enc], [e.answer_ids[0] for e in enc])
    layers, neurons = [], []
    for b, e in enumerate(enc):
        for l in range(wb.n_layers):
            layers.append({"subject": e.fact.subject, "relation": e.fact.relation, "layer": l,
                           "ffn_direct": float(fx.mlp[b, l]), "attn_direct": float(fx.attn[b, l])})
        for rank, (l, n, v) in enumerate(fx.top(b, p.top)):
            neurons.append({"subject": e.fact.subject, "rank": rank, "layer": l, "neuron": n, "direct_effect": v})
    return Result(kind="direct_effects", tables={"layers": table_from_rows(layers), "neurons": table_from_rows(neurons)},
                  provenance=_prov(wb, data, seed, p))


class AblationParams(FirstTokenParams):
    k: int = Field(20, ge=1)
    mode: Literal["zero", "mean", "resample"] = "zero"  # mean/resample: reference over the built-in corpus
    positions: Literal["last", "all"] = "last"


@register("ablation_topk_vs_random", AblationParams)
def _ablation(wb, data: UnitData, p: AblationParams, seed: int) -> Result:
    """Top-k DLA neurons vs k random ones (ffnmem.methods.ablation.top_vs_random): p(answer) before/after."""
    from ffnmem.methods.ablation import top_vs_random

    enc = _encoded(wb, data, p)
    reference = None
    if p.mode != "zero":  # reference coefficients: 32 windows of 64 tokens of the built-in corpus
        from ffnmem.data.corpus import default_corpus, windows
        from ffnmem.methods.ablation import reference_coefficients

        tokens = windows(wb, data.texts or default_corpus(), window=data.window, max_windows=data.max_windows)
        reference = reference_coefficients(wb, tokens, list(range(wb.n_layers)), seed=seed)
    rows = top_vs_random(wb, [e.fact.prompt for e in enc], [e.answer_ids[0] for e in enc], k=p.k, mode=p.mode,
                         positions=p.positions, seed=seed, reference=reference)
    for r, e in zip(rows, enc):
        r["subject"] = e.fact.subject
    return Result(kind="ablation_topk_vs_random", tables={"prompts": table_from_rows(rows)},
                  provenance=_prov(wb, data, seed, p))


class TraceParams(FirstTokenParams):
    n_samples: int = Field(10, ge=1)
    window: int = Field(10, ge=1)
    kinds: list[Literal["resid", "mlp", "attn"]] = ["resid", "mlp", "attn"]
    max_rows: int = Field(256, ge=1)
    noise_scale: float = Field(3.0, gt=0)


@register("causal_trace", TraceParams)
def _causal_trace(wb, data: UnitData, p: TraceParams, seed: int) -> Result:
    """Causal tracing (ffnmem.methods.tracing.trace) per fact, as subject-aligned effects (long table)."""
    from ffnmem.methods.tracing import POSITIONS, aligned, trace

    rows, facts = [], []
    for e in _encoded(wb, data, p):
        # a per-fact seed: shards of the same batch give the same numbers as one unit
        fact_seed = seed + _stable_int(e.fact.prompt)
        t = trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, kinds=tuple(p.kinds), n_samples=p.n_samples,
                  window=p.window, seed=fact_seed, max_rows=p.max_rows, noise_scale=p.noise_scale)
        facts.append({"subject": e.fact.subject, "prompt": e.fact.prompt, "p_clean": t.p_clean,
                      "p_corrupt": t.p_corrupt})
        for kind, eff in t.effects.items():
            al = aligned(eff, t.subject)
            for l in range(al.shape[0]):
                for j, pos in enumerate(POSITIONS):
                    rows.append({"subject": e.fact.subject, "kind": kind, "layer": l, "position": pos,
                                 "effect": None if al[l, j].isnan() else float(al[l, j])})  # SQL NULL
    return Result(kind="causal_trace", tables={"effects": table_from_rows(rows), "facts": table_from_rows(facts)},
                  provenance=_prov(wb, data, seed, p))


def _stable_int(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:6], 16)


# --- corpus ----------------------------------------------------------------------------------

class KeyAgreementParams(Params):
    layers: list[int] | Literal["all"] = "all"
    k: int = Field(20, ge=1)
    value_k: int = Field(10, ge=1)
    n_triggers: int = Field(10, ge=1)
    n_shuffles: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1)


@register("key_agreement", KeyAgreementParams, data="corpus")
def _key_agreement(wb, data: UnitData, p: KeyAgreementParams, seed: int) -> Result:
    """Key-value agreement vs shuffled pairings (ffnmem.methods.triggers.mine + agreement_by_layer)."""
    from ffnmem.methods import triggers as T
    from ffnmem.methods.capture import tokens_hash
    from ffnmem.data.corpus import windows

    tokens = windows(wb, data.texts, window=data.window, max_windows=data.max_windows)
    layers = list(range(wb.n_layers)) if p.layers == "all" else [wb.check_layer(l) for l in p.layers]
    tr = T.mine(wb, tokens, layers, k=p.k, batch_size=p.batch_size, progress=False)
    ag = T.agreement_by_layer(wb, tr, value_k=p.value_k, n_triggers=min(p.n_triggers, p.k),
                              n_shuffles=p.n_shuffles, seed=seed)
    bands = [{"band": b, "agreement": o, "baseline": base} for b, (o, base) in ag.bands(wb.n_layers).items()]
    return Result(kind="key_agreement",
                  tables={"layers": table_from_rows(ag.rows()), "bands": table_from_rows(bands)},
                  provenance=make_provenance(wb, data_hash=tokens_hash(tokens), seed=seed, params=p.model_dump()))


# --- no pretrained model: the analysis builds its own data and model --------------------------

class ToySuperpositionParams(Params):
    n_features: int = Field(20, ge=1)
    n_hidden: int = Field(5, ge=1)
    sparsities: list[float] = [0.0, 0.9, 0.99]
    decay: float = Field(0.7, gt=0, le=1)
    steps: int = Field(2000, ge=1)


@register("toy_superposition", ToySuperpositionParams, data="none")
def _toy_superposition(wb, data: UnitData, p: ToySuperpositionParams, seed: int) -> Result:
    """Toy models of superposition (ffnmem.methods.superposition.sparsity_sweep): features represented per sparsity."""
    from ffnmem.methods import superposition

    models = superposition.sparsity_sweep(p.sparsities, n_features=p.n_features, n_hidden=p.n_hidden,
                                          decay=p.decay, steps=p.steps, seed=seed)
    rows = [{"sparsity": s, "n_hidden": p.n_hidden, "n_features": p.n_features,
             "represented": int(models.metrics["represented"][i]),
             "dims_per_feature": float(models.metrics["dims_per_feature"][i]), "loss": float(models.loss[i])}
            for i, s in enumerate(p.sparsities)]
    return Result(kind="toy_superposition", tables={"sweep": table_from_rows(rows)},
                  provenance=make_provenance(None, seed=seed, params=p.model_dump()))


class ExposureParams(Params):
    preset: Literal["tiny", "paper"] = "tiny"
    steps: int | None = Field(None, ge=1)
    n_boot: int = Field(200, ge=10)


@register("exposure_recall", ExposureParams, data="none")
def _exposure_recall(wb, data: UnitData, p: ExposureParams, seed: int) -> Result:
    """Train on a synthetic fact corpus (ffnmem.methods.training) and measure recall per exposure bin, capacity, and
    the FFN / attention share of each bin's answer margin (table dla_bins)."""
    import dataclasses

    from ffnmem.methods import frequency, training
    from ffnmem.data import synthetic

    fact_cfg, train_cfg = training.preset(p.preset)
    train_cfg = dataclasses.replace(train_cfg, seed=seed, **({"steps": p.steps} if p.steps else {}))
    corpus = synthetic.generate(fact_cfg)
    run = training.train(corpus, train_cfg, None, device="cpu", progress=False)
    rows = frequency.score_queries(run.wb, corpus.queries, value_sets=corpus.values,
                                   value_noise=corpus.config.value_noise)
    bins = frequency.by_exposure(rows, n_boot=p.n_boot, seed=seed)
    cap = frequency.capacity_bits(rows, corpus.config.n_values, run.wb.n_params())
    rho = frequency.spearman_over_bins(bins)  # nan when recall is the same in every bin: undefined, NULL
    summary = {"spearman_accuracy": None if rho != rho else rho, **cap,
               "kl_bits_final": run.evals[-1]["kl_bits"] if run.evals else None,
               "kl_bits_first": run.evals[0]["kl_bits"] if run.evals else None}
    queries = [q for q in corpus.queries if not q["heldout"]]
    dla_bins = frequency.dla_by_exposure(frequency.dla_rows(run.wb, queries, contrast=corpus.values),
                                         n_boot=p.n_boot, seed=seed)
    return Result(kind="exposure_recall", tables={"bins": table_from_rows(bins), "summary": table_from_rows([summary]),
                                                  "dla_bins": table_from_rows(dla_bins)},
                  provenance=make_provenance(run.wb, seed=seed, facts_config=fact_cfg.to_dict(), params=p.model_dump()))
