"""Validation of a localization, the same for every method: ablate each fact's top-k memories.

A localization method (DLA, attribution patching, knowledge neurons, tracing, ...) ranks FFN
memories ``(layer, neuron)`` per fact; :func:`validate` scores any such ranked list, knowing nothing
of the method. For fact ``i`` the set ``S`` is the top ``k`` of ``ranked[i]``; the metric is the
margin at the last position,

    margin = logit(answer) − mean logit(alternatives)      (:class:`~ffnmem.methods.interventions.Margin`)

with the relation's other answers as alternatives (:func:`ffnmem.methods.targets.alternatives`), and
a drop is relative: ``(m_clean − m_ablated) / m_clean`` (1: the margin is gone, 0: unchanged). Each
fact is scored per ablation mode (zero; mean and resample of reference coefficients) at every
position (``positions="all"``):

``target_drop``          S ablated on the fact's own prompt;
``random_drop``          the null: ``n_random`` random sets of S's layer histogram, each neuron of S
                         replaced by one of its layer whose |coefficient| at the prompt's last
                         position lies in the same decile (:func:`matched_random`); mean over draws;
``same_relation_drop``   S ablated on ``n_collateral`` other known facts of the same relation (mean);
``other_relation_drop``  the same on known facts of other relations;
``specificity``          ``target_drop − same_relation_drop`` (both collaterals are reported);
``paraphrase_drop``      S ablated on the fact's held-out prompts (generality; NaN if none is known);
``k_half``               the smallest k of ``ks`` whose top-k removes at least half the margin
                         (NaN and ``k_half_censored`` when none does).

*Known facts only* (default): a fact is validated, and serves as a collateral, only when its margin
on the clean prompt is positive — a relative drop of a negative margin has no meaning. Paraphrases
count only where their clean margin is positive too. Absolute margin changes (``*_delta``, logits)
are reported beside the relative drops, since a small clean margin makes a relative drop explode.

Forward passes are batched: every (prompt, set) row of every fact goes into one pool per mode,
grouped by token length (the bridge takes no attention mask for left padding, so rows of one batch
have equal length) and cut into batches of ``batch_size``; a row with its set ablated is computed
once even when several measurements need it. Resampling draws from a generator seeded per batch, so
results are deterministic for the same inputs, ``seed`` and ``batch_size``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.data.corpus import default_corpus, windows
from ffnmem.data.facts import EncodedFact
from ffnmem.methods.ablation import layer_histogram, make_hooks, masks_for, reference_coefficients
from ffnmem.methods.interventions import Margin, run_metric
from ffnmem.methods.targets import alternatives as relation_alternatives

MODES = ("zero", "mean", "resample")
DECILES = 10
FINAL_NORMALIZED = "ln_final.hook_normalized"
Pair = tuple[int, int]


@dataclass(frozen=True)
class _Row:
    """One batch row: a prompt's tokens, the answer, its alternatives and the memories ablated."""

    tokens: tuple[int, ...]
    answer: int
    alts: tuple[int, ...]
    ablate: tuple[Pair, ...] = ()


def activation_deciles(coeffs: Float[Tensor, "n_layers d_mlp"], bins: int = DECILES) -> Int[Tensor, "n_layers d_mlp"]:
    """Each neuron's bin of |coefficient| within its layer (0: smallest tenth, ``bins − 1``: largest).

    Bins are equal-count (by rank), so every bin of a layer holds ``d_mlp / bins`` neurons.
    """
    ranks = coeffs.abs().argsort(dim=-1, stable=True).argsort(dim=-1, stable=True)
    return ranks * bins // coeffs.shape[-1]


def matched_random(pairs: Sequence[Pair], deciles: Int[Tensor, "n_layers d_mlp"],
                   generator: torch.Generator) -> tuple[list[Pair], int]:
    """A random set matched to ``pairs`` neuron by neuron: same layer, same activation decile.

    Each neuron of ``pairs`` is replaced by a random neuron of its layer in the same bin of
    ``deciles`` (:func:`activation_deciles`), never one of ``pairs`` and never twice. When a bin is
    used up the nearest bins are used; the count of such widened picks is returned with the set.
    """
    free = torch.ones_like(deciles, dtype=torch.bool)
    for layer, neuron in pairs:
        free[layer, neuron] = False
    out, widened = [], 0
    for layer, neuron in pairs:
        q = deciles[layer, neuron]
        for dist in range(int(deciles.max()) + 1):
            cand = (((deciles[layer] - q).abs() == dist) & free[layer]).nonzero()[:, 0]
            if len(cand):
                break
        else:
            raise BadInput(f"layer {layer} has no neuron left outside the set to match neuron {neuron}")
        widened += dist > 0
        pick = int(cand[torch.randint(len(cand), (1,), generator=generator)])
        free[layer, pick] = False
        out.append((layer, pick))
    return out, widened


def _last_only(act: Tensor, hook=None) -> Tensor:
    """Keep the last position after the final norm: only its logits are read, and unembedding every
    position is about a fifth of a SmolLM2 forward (49k-token vocabulary)."""
    return act[:, -1:]


def relative_drops(clean: float, ablated: Sequence[float]) -> list[float]:
    """``(clean − a) / clean`` for each ``a``."""
    return [(clean - a) / clean for a in ablated]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


@torch.inference_mode()
def _margins(wb: Workbench, rows: Sequence[_Row], mode: str | None, *, reference, positions: str, seed: int,
             batch_size: int, progress: bool = False) -> dict[_Row, float]:
    """Margin of every distinct row with its memories ablated in ``mode`` (None: clean, no hooks)."""
    distinct = list(dict.fromkeys(rows))
    by_len: dict[int, list[_Row]] = defaultdict(list)
    for r in distinct:
        by_len[len(r.tokens)].append(r)
    out, batch = {}, 0
    bar = tqdm(total=len(distinct), desc=f"validate ({mode or 'clean'})", unit="prompt", disable=not progress,
               leave=False)
    for n in sorted(by_len):
        group = by_len[n]
        for s in range(0, len(group), batch_size):
            part = group[s: s + batch_size]
            tokens = torch.tensor([r.tokens for r in part], dtype=torch.long)
            hooks = [] if mode is None else make_hooks(wb, masks_for(wb, [list(r.ablate) for r in part]), mode,
                                                       reference=reference, positions=positions,
                                                       seed=seed * 100_003 + batch)
            m = run_metric(wb, tokens, torch.tensor([r.answer for r in part]), Margin([list(r.alts) for r in part]),
                           [*hooks, (FINAL_NORMALIZED, _last_only)])
            out.update(zip(part, m.tolist()))
            batch += 1
            bar.update(len(part))
    bar.close()
    return out


@torch.inference_mode()
def _last_deciles(wb: Workbench, prompts: Sequence[tuple[int, ...]], batch_size: int) -> dict[tuple[int, ...], Tensor]:
    """Activation deciles of each prompt's last-position coefficients, ``[n_layers d_mlp]`` per prompt."""
    names = [hook_name("post", l) for l in range(wb.n_layers)]
    by_len: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for p in dict.fromkeys(prompts):
        by_len[len(p)].append(p)
    out = {}
    for group in by_len.values():
        for s in range(0, len(group), batch_size):
            part = group[s: s + batch_size]
            _, cache = wb.bridge.run_with_cache(torch.tensor(part, device=wb.device), names_filter=lambda x: x in names)
            last = torch.stack([cache[n][:, -1].float().cpu() for n in names], 1)  # (B, n_layers, d_mlp)
            out.update((p, activation_deciles(c)) for p, c in zip(part, last))
    return out


def corpus_reference(wb: Workbench, layers: Sequence[int], *, n_windows: int = 32, seed: int = 0) -> dict[int, Tensor]:
    """Reference coefficients for mean and resample ablation: ``n_windows`` 64-token windows of the
    built-in corpus (as :func:`ffnmem.jobs.ablation.mean_reference`), for ``layers``."""
    tokens = windows(wb, default_corpus(), window=64, max_windows=n_windows)
    return reference_coefficients(wb, tokens, sorted(set(layers)), seed=seed)


def _encode(wb: Workbench, prompt: str) -> list[int]:
    ids = wb.encode(prompt)
    wb.check_length(len(ids), what=f"held-out prompt {prompt[:40]!r}")
    return ids


def _sample(pool: Sequence[int], n: int, g: torch.Generator) -> list[int]:
    return [pool[int(j)] for j in torch.randperm(len(pool), generator=g)[:n]]


def _check(encoded, ranked, k, modes, ks, alternatives, heldout_prompts, only=None) -> None:
    if not encoded:
        raise BadInput("no facts to validate: give at least one fact")
    for name, other in (("ranked", ranked), ("alternatives", alternatives), ("heldout_prompts", heldout_prompts)):
        if other is not None and len(other) != len(encoded):
            raise BadInput(f"{name} has {len(other)} entries for {len(encoded)} facts; give one per fact")
    if k < 1 or not ks or any(x < 1 for x in ks):
        raise BadInput(f"k and every entry of ks must be at least 1, and ks non-empty (k={k}, ks={list(ks)})")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise BadInput(f"unknown ablation mode {bad[0] if bad else None!r}; choose from {', '.join(MODES)}")
    for i, (e, r) in enumerate(zip(encoded, ranked)):
        if only is not None and i not in only:  # a collateral only: its list is not used
            continue
        top = [tuple(x[:2]) for x in r[: max([k, *ks])]]
        if not top:
            raise BadInput(f"{e.fact.where}: the ranked list is empty; a fact needs at least one memory")
        if len(set(top)) < len(top):
            raise BadInput(f"{e.fact.where}: the ranked list repeats a memory; rank each (layer, neuron) once")


def validate(wb: Workbench, encoded: list[EncodedFact], ranked: Sequence[Sequence[Sequence]], *, k: int = 20,
             modes: Sequence[str] = MODES, reference: dict[int, Tensor] | None = None,
             alternatives: list[list[int]] | None = None, n_random: int = 3, n_collateral: int = 5,
             ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64), seed: int = 0,
             heldout_prompts: list[list[str]] | None = None, known_only: bool = True, positions: str = "all",
             batch_size: int = 32, only: Sequence[int] | None = None, progress: bool = False) -> list[dict]:
    """Score each fact's ranked memories by ablation; one row per (validated fact, mode).

    ``ranked[i]`` lists memories ``(layer, neuron, ...)`` best first (extra fields such as a score
    are ignored). ``alternatives`` default to each relation's other answers; ``heldout_prompts[i]``
    to fact ``i``'s paraphrases (pass the prompts the method did *not* select on); ``reference``
    (mean, resample) to 32 corpus windows (:func:`corpus_reference`). With ``known_only`` facts whose
    clean margin is ≤ 0 get no row. ``only``: validate just these facts (indices into ``encoded``);
    the others still serve as collaterals (a fact card validates one fact against the shipped ones).
    ``progress`` shows a bar per ablation mode over the distinct prompts it runs.
    Each row's ``fact`` is its index into ``encoded``. See the module docstring for the columns.
    """
    _check(encoded, ranked, k, modes, ks, alternatives, heldout_prompts, None if only is None else set(only))
    alts = relation_alternatives(encoded) if alternatives is None else alternatives
    held = [list(e.fact.paraphrases) for e in encoded] if heldout_prompts is None else heldout_prompts
    lists = [[(int(x[0]), int(x[1])) for x in r] for r in ranked]
    prompts = [_Row(tuple(e.prompt_ids), e.answer_ids[0], tuple(a)) for e, a in zip(encoded, alts)]
    paras = [[_Row(tuple(_encode(wb, p)), r.answer, r.alts) for p in ps] for r, ps in zip(prompts, held)]
    clean = _margins(wb, prompts + [p for ps in paras for p in ps], None, reference=None, positions=positions,
                     seed=seed, batch_size=batch_size)
    known = [i for i, r in enumerate(prompts) if clean[r] > 0]
    todo = known if known_only else list(range(len(encoded)))
    if only is not None:
        todo = [i for i in todo if i in set(only)]
    deciles = _last_deciles(wb, [prompts[i].tokens for i in todo], batch_size)
    plans = {i: _plan(i, encoded, lists, prompts, paras, clean, known, deciles[prompts[i].tokens], k=k, ks=ks,
                      n_random=n_random, n_collateral=n_collateral, seed=seed) for i in todo}
    if reference is None and set(modes) & {"mean", "resample"}:
        reference = corpus_reference(wb, [l for p in plans.values() for r in p["rows"] for l, _ in r.ablate], seed=seed)
    out = []
    for mode in modes:
        pool = [r for p in plans.values() for r in p["rows"]]
        ablated = _margins(wb, pool, mode, reference=reference, positions=positions, seed=seed, batch_size=batch_size,
                           progress=progress)
        out += [{"fact": i, **_row(encoded[i], plans[i], clean, ablated, mode, k)} for i in todo]
    return out


def _plan(i: int, encoded, lists, prompts, paras, clean, known, deciles, *, k, ks, n_random, n_collateral,
          seed) -> dict:
    """Which rows fact ``i`` needs ablated, by measurement (seeded per fact, so a fact's random sets and
    collaterals do not depend on which other facts are validated with it)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + i)
    top = tuple(lists[i][:k])
    draws = [matched_random(top, deciles, g) for _ in range(n_random)]
    rel = encoded[i].fact.relation
    same = _sample([j for j in known if j != i and encoded[j].fact.relation == rel], n_collateral, g)
    other = _sample([j for j in known if encoded[j].fact.relation != rel], n_collateral, g)
    base = prompts[i]
    with_set = lambda r, s: _Row(r.tokens, r.answer, r.alts, tuple(s))  # noqa: E731
    plan = {
        "top": top,
        "target": with_set(base, top),
        "random": [with_set(base, d) for d, _ in draws],
        "widened": sum(w for _, w in draws),
        "ks": {kk: with_set(base, lists[i][:kk]) for kk in sorted(set(ks)) if kk <= len(lists[i])},
        "para": [(p, with_set(p, top)) for p in paras[i] if clean[p] > 0],
        "n_para_unknown": sum(clean[p] <= 0 for p in paras[i]),
        "same": [(prompts[j], with_set(prompts[j], top)) for j in same],
        "other": [(prompts[j], with_set(prompts[j], top)) for j in other],
    }
    plan["rows"] = [plan["target"], *plan["random"], *plan["ks"].values(),
                    *(r for _, r in plan["para"] + plan["same"] + plan["other"])]
    return plan


def _row(e: EncodedFact, plan: dict, clean: dict[_Row, float], ablated: dict[_Row, float], mode: str, k: int) -> dict:
    """The result row of one fact and mode from the clean and ablated margins."""
    m0 = clean[_Row(plan["target"].tokens, plan["target"].answer, plan["target"].alts)]
    target = ablated[plan["target"]]
    rand = [ablated[r] for r in plan["random"]]
    rand_drops = relative_drops(m0, rand)
    drops = {kind: [(clean[c] - ablated[r]) / clean[c] for c, r in plan[kind]] for kind in ("para", "same", "other")}
    k_drops = {kk: (m0 - ablated[r]) / m0 for kk, r in plan["ks"].items()}
    k_half = next((kk for kk, d in k_drops.items() if d >= 0.5), None)
    target_drop = (m0 - target) / m0
    same_drop = _mean(drops["same"])
    return {
        "relation": e.fact.relation, "subject": e.fact.subject, "prompt": e.fact.prompt, "mode": mode,
        "k": k, "n_set": len(plan["top"]),
        "layer_hist": ",".join(f"{l}:{c}" for l, c in layer_histogram(list(plan["top"])).items()),
        "known": m0 > 0, "margin_clean": m0, "margin_ablated": target,
        "target_drop": target_drop, "target_delta": m0 - target,
        "random_drop": _mean(rand_drops),
        "random_drop_sd": float(torch.tensor(rand_drops).std()) if len(rand_drops) > 1 else math.nan,
        "random_delta": _mean([m0 - r for r in rand]), "random_widened": plan["widened"],
        "same_relation_drop": same_drop, "n_same_relation": len(drops["same"]),
        "other_relation_drop": _mean(drops["other"]), "n_other_relation": len(drops["other"]),
        "specificity": target_drop - same_drop,
        "paraphrase_drop": _mean(drops["para"]), "n_paraphrases": len(drops["para"]),
        "n_paraphrases_unknown": plan["n_para_unknown"],
        "k_half": math.nan if k_half is None else k_half, "k_half_censored": k_half is None,
    }
