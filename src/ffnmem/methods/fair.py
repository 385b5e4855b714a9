"""The fair comparison of architectures (issue 17): arms × budgets × seeds on the same facts.

An *arm* is a variant of :mod:`ffnmem.methods.architectures` (``causal``, ``prefix``, ``mlm``,
``encdec``, with position suffixes) or the control ``causal-sentences``: the causal LM trained on
the encoder-decoder's rows, one sentence per row (``BOS prompt value . EOS``) and the sentences of
``batch_size`` documents a step. Its recall against ``causal`` separates the training *format*
(every fact seen in the query's own format at position 0) from the *architecture*.

A *unit* (:func:`run_unit`) is one arm × budget × seed: a fresh corpus and model of that seed,
trained for the budget's steps (:mod:`ffnmem.methods.budgets`) and scored on one corpus-template
query per fact. The masked LM is scored twice: with the sentence closed (``prompt <mask> .``, as
masked values appear in training: the primary row ``mlm``) and open (``prompt <mask>``: the
secondary row ``mlm-open``).

Held-out loss for convergence (:func:`heldout_loss`): the arm's own training loss (its objective,
masks and prefixes drawn from a fixed generator) on :data:`HELDOUT_BATCHES` fixed batches of the
*training documents*, drawn in a permutation of their own. What is held out is the randomness
(document order, masks, prefixes), not facts: the task is memorisation, so every fact is trained
and there is no unseen document of the same facts; the loss on facts never seen falls only until
the value marginals are learnt. The scored query prompts (one per fact, in the query format) are
never used to decide when to stop.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactCorpus, generate
from ffnmem.methods.architectures import CompareConfig, train_config, train_flops
from ffnmem.methods.budgets import BUDGETS, RATE_STEPS, PlateauMonitor, Rates, steps_for
from ffnmem.methods.frequency import by_exposure, score_queries, summarize
from ffnmem.methods.objectives import Objective, core_params, objective_loss, parse, trainable_params
from ffnmem.methods.packing import make_batches, make_pair_batches
from ffnmem.methods.training import TrainConfig, train
from ffnmem.methods.variant_analysis import analyse, capacity

CONTROL = "causal-sentences"
DEFAULT_ARMS = ("causal", "prefix", "mlm", "encdec", CONTROL)
HELDOUT_BATCHES = 4
HELDOUT_SEED = 1_000_003  # offsets the seed of the held-out batches' permutation and masks


@dataclasses.dataclass(frozen=True, kw_only=True)
class Convergence:
    """The ``convergence`` budget: evaluate every ``every`` steps, stop when the held-out loss has not
    improved by more than a relative ``tol`` for ``patience`` evaluations; never past ``cap`` steps
    (the cosine schedule decays to ``cap``)."""

    cap: int = 4000
    every: int = 100
    tol: float = 0.01
    patience: int = 3


def arm_objective(arm: str, mask_rate: float = 0.15) -> Objective:
    return parse("causal" if arm == CONTROL else arm, mask_rate=mask_rate)


def check_arms(arms: tuple[str, ...], mask_rate: float = 0.15) -> None:
    if not arms:
        raise BadInput("no arm to compare; e.g. causal,prefix,mlm,encdec,causal-sentences")
    if len(set(arms)) != len(arms):
        raise BadInput("an arm is listed twice")
    for a in arms:
        arm_objective(a, mask_rate)


def sentence_corpus(corpus: FactCorpus) -> FactCorpus:
    """The control's training corpus: every sentence of every document as its own document."""
    return dataclasses.replace(corpus, documents=[s.strip() + " ." for d in corpus.documents
                                                  for s in d.split(" .") if s.strip()])


def arm_setup(arm: str, cfg: CompareConfig, corpus: FactCorpus) -> tuple[FactCorpus, TrainConfig, Objective]:
    """The corpus an arm trains on, its training settings and objective."""
    obj = arm_objective(arm, cfg.mask_rate)
    if arm == CONTROL:  # as many sentences a step as the encoder-decoder
        tr = dataclasses.replace(cfg.train, batch_size=cfg.train.batch_size * len(cfg.facts.attributes))
        return sentence_corpus(corpus), tr, obj
    return corpus, train_config(cfg, obj), obj


def measure_rates(corpus: FactCorpus, tr: TrainConfig, obj: Objective):
    """Tokens, supervised tokens and FLOPs per step (the mean over the first RATE_STEPS batches of a
    real run of the arm) and the arm's tokenizer."""
    run = train(corpus, dataclasses.replace(tr, steps=RATE_STEPS), device="cpu", progress=False, objective=obj)
    flops = train_flops(run.wb.bridge.original_model, obj, run.tokens_seen, run.signal_tokens)
    rates = Rates(tokens=run.tokens_seen / RATE_STEPS, signal=run.signal_tokens / RATE_STEPS, flops=flops / RATE_STEPS)
    return rates, run.wb.tokenizer


def heldout_loss(corpus: FactCorpus, tr: TrainConfig, obj: Objective, tokenizer):
    """``model -> loss (nats)``: the objective's loss on fixed batches of training documents (module doc)."""
    seed = tr.seed + HELDOUT_SEED
    if obj.kind == "encdec":
        get, _ = make_pair_batches(tokenizer, corpus.documents, tr.batch_size, tr.n_ctx, seed)
    else:
        get, _ = make_batches(tokenizer, corpus.documents, tr.batch_size, tr.n_ctx, seed, "none")
    batches = [get(i) for i in range(HELDOUT_BATCHES)]
    pad, mask = tokenizer.pad_token_id, tokenizer.mask_token_id

    @torch.inference_mode()
    def loss(model) -> float:
        total, weight = 0.0, 0
        for i, (rows, kwargs, _, _) in enumerate(batches):
            gen = torch.Generator().manual_seed(seed + i)  # the same masks and prefixes at every check
            value, n = objective_loss(model, obj, rows, pad, mask, gen, **kwargs)
            total, weight = total + float(value) * n, weight + n
        return total / max(1, weight)
    return loss


def score(wb, corpus: FactCorpus, obj: Objective, seed: int, name: str) -> dict[str, dict]:
    """Rows ``{row name: {summary, bins, capacity, facts}}``; the masked LM closed (``name``) and open
    (``name-open``); ``capacity``: :func:`ffnmem.methods.variant_analysis.capacity`."""
    variants = {name: obj}
    if obj.kind == "mlm":
        variants = {name: dataclasses.replace(obj, mask_suffix="."), f"{name}-open": obj}
    out = {}
    for name, o in variants.items():
        rows = score_queries(wb, corpus.queries, value_sets=corpus.values, value_noise=corpus.config.value_noise,
                             objective=o)
        out[name] = {"summary": summarize(rows), "bins": by_exposure(rows, n_boot=200, seed=seed),
                     "capacity": capacity(wb, rows, corpus),
                     "facts": [{k: r[k] for k in ("entity", "attribute", "exposures", "correct", "loss_bits")}
                               for r in rows]}
    return out


def run_unit(arm: str, budget: str, seed: int, cfg: CompareConfig, conv: Convergence,
             reference: Rates | None = None, *, analyses: bool = False) -> dict:
    """Train and score one arm × budget × seed (JSON-ready). ``reference``: the causal arm's rates
    (measured here when None). ``analyses``: also the position probe, attention rank and direct
    effect by layer of :func:`ffnmem.methods.variant_analysis.analyse`, against the arm at its
    initial weights (key ``analyses``)."""
    if budget not in BUDGETS:
        raise BadInput(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    cfg = dataclasses.replace(cfg, facts=dataclasses.replace(cfg.facts, seed=seed),
                              train=dataclasses.replace(cfg.train, seed=seed))
    corpus = generate(cfg.facts)
    t0 = time.perf_counter()
    train_corpus, tr, obj = arm_setup(arm, cfg, corpus)
    rates, tokenizer = measure_rates(train_corpus, tr, obj)
    if reference is None:
        ref_corpus, ref_tr, ref_obj = arm_setup("causal", cfg, corpus)
        reference = rates if arm == "causal" else measure_rates(ref_corpus, ref_tr, ref_obj)[0]
    monitor = None
    if budget == "convergence":
        tr = dataclasses.replace(tr, steps=conv.cap)
        monitor = PlateauMonitor(heldout_loss(train_corpus, tr, obj, tokenizer), every=conv.every,
                                 tol=conv.tol, patience=conv.patience)
    else:
        tr = dataclasses.replace(tr, steps=steps_for(budget, reference, cfg.train.steps, rates))
    tr = dataclasses.replace(tr, eval_every=10**9, checkpoint_every=10**9)
    run = train(train_corpus, tr, device="cpu", progress=False, objective=obj, monitor=monitor)
    model = run.wb.bridge.original_model
    extra = {}
    if analyses:
        init = train(train_corpus, tr, device="cpu", progress=False, objective=obj, stop_at=0)
        extra["analyses"] = analyse(run.wb, init.wb, train_corpus, obj, probe_docs=cfg.probe_docs,
                                    dla_facts=cfg.dla_facts, n_ctx=tr.n_ctx, seed=seed)
    return {**extra, "arm": arm, "budget": budget, "seed": seed, "steps": run.step, "batch_size": tr.batch_size,
            "cap": conv.cap if monitor else None, "cap_hit": bool(monitor and monitor.stopped_at is None),
            "heldout_curve": monitor.history if monitor else [],
            "tokens": run.tokens_seen, "supervised_tokens": run.signal_tokens,
            "train_flops": train_flops(model, obj, run.tokens_seen, run.signal_tokens),
            "core_params": core_params(model), "trainable_params": trainable_params(model),
            "final_loss_nats": run.losses[-1]["loss"], "passes": run.epochs,
            "rates": dataclasses.asdict(rates), "reference_rates": dataclasses.asdict(reference),
            "train_seconds": run.seconds, "seconds": time.perf_counter() - t0,
            "rows": score(run.wb, corpus, obj, seed, arm)}


def init_unit(arm: str, seed: int, cfg: CompareConfig) -> dict:
    """The arm at its initial weights (same shape and seed, 0 steps), scored like a trained unit: the
    claims' control (budget ``init``)."""
    cfg = dataclasses.replace(cfg, facts=dataclasses.replace(cfg.facts, seed=seed),
                              train=dataclasses.replace(cfg.train, seed=seed))
    corpus = generate(cfg.facts)
    train_corpus, tr, obj = arm_setup(arm, cfg, corpus)
    run = train(train_corpus, tr, device="cpu", progress=False, objective=obj, stop_at=0)
    return {"arm": arm, "budget": "init", "seed": seed, "steps": 0, "rows": score(run.wb, corpus, obj, seed, arm)}


def t_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval across seeds (nan interval with one seed)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def aggregate(units: list[dict]) -> list[dict]:
    """One row per (budget, row name): recall mean and t CI across seeds, loss bits by exposure,
    steps, supervised tokens, FLOPs, parameters, and for convergence the caps hit."""
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for u in units:
        for name, r in u["rows"].items():
            groups.setdefault((u["budget"], name), []).append((u, r))
    out = []
    for (budget, name), items in sorted(groups.items(), key=lambda kv: (BUDGETS.index(kv[0][0]), kv[0][1])):
        m, lo, hi = t_ci([r["summary"]["accuracy"] for _, r in items])
        row = {"budget": budget, "row": name, "arm": items[0][0]["arm"], "seeds": sorted(u["seed"] for u, _ in items),
               "recall": m, "recall_lo": lo, "recall_hi": hi,
               "loss_bits": float(np.mean([r["summary"]["loss_bits"] for _, r in items])),
               "steps": float(np.mean([u["steps"] for u, _ in items])),
               "steps_all": [u["steps"] for u, _ in items],
               "supervised_tokens": float(np.mean([u["supervised_tokens"] for u, _ in items])),
               "train_flops": float(np.mean([u["train_flops"] for u, _ in items])),
               "trainable_params": items[0][0]["trainable_params"],
               "caps_hit": sum(bool(u["cap_hit"]) for u, _ in items) if budget == "convergence" else None,
               "seconds": float(np.sum([u["seconds"] for u, _ in items]))}
        for b in items[0][1]["bins"]:
            e = b["exposures"]
            vals = [next(x for x in r["bins"] if x["exposures"] == e) for _, r in items]
            row[f"recall@{e}"] = float(np.mean([v["accuracy"] for v in vals]))
            row[f"loss_bits@{e}"] = float(np.mean([v["loss_bits"] for v in vals]))
        out.append(row)
    return out


ANALYSIS_KEYS = {  # table -> (grouping columns, averaged columns with a t CI, averaged columns)
    "position_probe": (("model", "inputs", "depth"), ("accuracy", "r2"),
                       ("mae", "null_accuracy", "null_r2", "chance", "positions")),
    "attention_rank": (("model", "layer", "head"), ("erank",), ("max_rank",)),
    "dla_by_layer": (("stack", "layer", "component"), ("share",), ("effect", "n_facts")),
}
CAPACITY_KEYS = (("bits", "bits_per_param", "fraction_of_ceiling"),
                 ("ceiling", "bits_per_param_all", "params_non_embedding", "params_all", "bits_clipped"))


def _mean_ci(rows: list[dict], ci_cols, mean_cols) -> dict:
    out = {"n_seeds": len(rows)}
    for c in ci_cols:
        out[c], out[f"{c}_lo"], out[f"{c}_hi"] = t_ci([r[c] for r in rows])
    out.update({c: float(np.mean([r[c] for r in rows])) for c in mean_cols})
    return out


def aggregate_analyses(units: list[dict]) -> dict[str, list[dict]]:
    """Per (budget, arm) and the table's grouping columns: the mean over seeds with a Student-t 95%
    interval (:data:`ANALYSIS_KEYS`), from the units that carry ``analyses``; ``capacity`` per
    (budget, row) from every unit that scored it."""
    out: dict[str, list[dict]] = {}
    for table, (keys, ci_cols, mean_cols) in ANALYSIS_KEYS.items():
        groups: dict[tuple, list[dict]] = {}
        for u in units:
            for r in u.get("analyses", {}).get(table, []):
                groups.setdefault((u["budget"], u["arm"], *(r[k] for k in keys)), []).append(r)
        out[table] = [{"budget": g[0], "arm": g[1], **dict(zip(keys, g[2:])), **_mean_ci(rows, ci_cols, mean_cols)}
                      for g, rows in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))]
    caps: dict[tuple, list[dict]] = {}
    for u in units:
        for name, r in u["rows"].items():
            if "capacity" in r:
                caps.setdefault((u["budget"], name), []).append(r["capacity"])
    out["capacity"] = [{"budget": b, "row": name, **_mean_ci(rows, *CAPACITY_KEYS)}
                       for (b, name), rows in sorted(caps.items())]
    return out
