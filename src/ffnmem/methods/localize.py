"""One localization API: per fact, a ranked set of FFN memories (and, for tracing, cells).

``locate(wb, encoded, method, k)`` runs one method on every fact and returns one :class:`Located`
per fact: ``memories`` (layer, neuron, score) best first, at most ``k``; ``cells`` (layer, position,
indirect effect) for ``tracing`` (and the peak cell for ``peak_neurons``); ``prompts`` that selected.

**Target.** ``target="margin"`` (default) attributes ``logit(answer) − mean logit(alternatives)``,
the alternatives being the first tokens of the other answers of the fact's relation
(:func:`targets.alternatives`; or ``alternatives=`` per fact), so "a city comes next" cancels.
``"logit"`` and ``"prob"`` are the raw targets the papers used (per method below). The answer is
the fact's gold answer (first token), not the model's prediction.

**Prompts.** The *last* paraphrase of a fact is held out for validation and never selects
(:func:`held_out`). ``selection="prompt"`` (default): the fact's prompt alone selects;
``"paraphrases"``: the prompt and every paraphrase but the last (scores averaged over them).
``knowledge_neurons`` always selects on the prompt and every paraphrase but the last, whatever
``selection`` says (Dai's refining needs several prompts; capital_of facts have 2 paraphrases, so
2 prompts select and 1 is held out; a fact with 1 paraphrase selects on its prompt alone).
``tracing`` and ``peak_neurons`` trace the prompt alone (cells are positions of one prompt).

==========================  ================================================================
method                      what ranks; the paper's target; options (defaults)
==========================  ================================================================
``dla``                     direct effect ``m_i (v_i · d) / s`` of each memory at the last
                            position (:func:`attribution.direct_effects`); logit (Geva et al.);
                            linear in the logits, so ``prob`` is refused
``attribution_patching``    ``Σ_pos ∂target/∂m · (m_clean − m_noised)`` on the noised run
                            (below), mean of ``n_samples`` (10) draws; papers (Nanda; Syed et
                            al.) use a logit difference between clean and corrupted prompts
``activation_patching``     exact: one neuron's clean coefficients (all positions) restored
                            into the noised run, target change, mean of ``n_samples`` (3) draws;
                            a *re-ranking of a candidate sample*, not all neurons: the
                            ``sample`` (4k) largest |attribution patching| (10 draws); ROME
                            measures p(answer); batched ``max_rows`` (512) rows per forward
``knowledge_neurons``       Dai et al. 2022: IG of the coefficients at the last position, zero
                            baseline, ``steps`` (20) right-Riemann steps, one layer at a time;
                            coarse set per prompt: IG ≥ ``threshold`` (0.2) · max; refined:
                            shared by more than ``share`` (0.7; Dai's code tunes it in 0.05
                            steps to 2–5 neurons per fact, not done here) of the prompts; then
                            cross-fact filtering: a neuron refined for ≥ max(2, ``relation_share``
                            (0.1; Dai's "relation neurons") · n) of the n facts of the same
                            relation *in this call* is dropped. Dai integrate p(answer)
                            (``target="prob"``); the margin integrates the margin's gradient.
                            memories: refined neurons by mean IG, then the rest by mean IG (the
                            dropped ones left out)
``tracing``                 ROME causal tracing (:func:`tracing.trace`), ``kind`` ("mlp"),
                            ``window`` (scaled to depth), ``n_samples`` (10), ``noise_at``:
                            ``cells`` best first, no memories; the indirect effect is ROME's
                            p(answer) whatever ``target`` is (tracing.trace has no other metric)
``peak_neurons``            per-neuron restoration at the peak cell (ROME issue #7): the
                            window-1 MLP trace's (layer, position) of largest indirect effect;
                            each neuron's clean coefficient restored at that cell alone into the
                            noised run, ranked by the target change (``n_samples`` 3); a
                            re-ranking of the ``sample`` (4k) largest |∂target/∂m · Δm| at the
                            cell (``sample=0``: every neuron of the layer); ``cells``: the peak
==========================  ================================================================

The noised run is causal tracing's (ROME): 3σ Gaussian noise on the subject's token embeddings, σ
the std of the subject tokens' embeddings over all facts of the call (:func:`tracing.noise_sigma`,
or ``sigma=``), draws seeded by ``seed``. Methods without gradients run under inference mode; only
the last position is unembedded where only its logits are read.

Runtime per fact on SmolLM2-135M, CPU, k = 64, margin over the 74 other capitals, capital_of
France/Germany/Italy (wall s / process CPU s; the 2 shared cores ran 4–9 other jobs, so these are
upper bounds; the first column was measured at load ≈ 3, the others at load 7–9):

=======================  ===============  ===================
method                   load ≈ 3 (wall)  load 7–9 (wall/CPU)
=======================  ===============  ===================
dla                      0.13             8.5 / 2.1
attribution_patching     0.74             75 / 15
activation_patching      60               129 / 69
tracing (mlp, w 6)       —                297 / 98
knowledge_neurons        —                592 / 335
peak_neurons             —                357 / 124
=======================  ===============  ===================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import EncodedFact
from ffnmem.methods import knowledge_neurons as kn
from ffnmem.methods.attribution import direct_effects
from ffnmem.methods.interventions import AnswerLogit, AnswerProb, Margin
from ffnmem.methods.noised import (
    NoisedFact,
    attribution_scores,
    cell_attribution,
    clean_post,
    restore_neurons,
)
from ffnmem.methods.targets import alternatives as relation_alternatives
from ffnmem.methods.tracing import noise_sigma, scaled_window, trace

log = logging.getLogger(__name__)

METHODS = ("dla", "attribution_patching", "activation_patching", "knowledge_neurons", "tracing", "peak_neurons")
TARGETS = ("margin", "logit", "prob")
SELECTIONS = ("prompt", "paraphrases")
OPTIONS = {  # method -> options it reads (defaults in the functions below)
    "dla": set(),
    "attribution_patching": {"n_samples", "sigma"},
    "activation_patching": {"n_samples", "sigma", "sample", "max_rows"},
    "knowledge_neurons": {"steps", "batch_steps", "threshold", "share", "relation_share"},
    "tracing": {"n_samples", "sigma", "kind", "window", "max_rows", "noise_at"},
    "peak_neurons": {"n_samples", "sigma", "sample", "max_rows"},
}
@dataclass(frozen=True)
class Located:
    """One fact's localization by one method: memories ``(layer, neuron, score)`` best first."""

    method: str
    fact: int
    memories: list[tuple[int, int, float]]
    cells: Sequence[tuple[int, int, float]] = ()  # tracing (and peak_neurons: its peak cell)
    prompts: tuple[str, ...] = ()


def selection_prompts(fact, selection: str) -> tuple[str, ...]:
    """The prompts that select for ``fact``: the last paraphrase is always held out (pure)."""
    if selection not in SELECTIONS:
        raise BadInput(f"unknown selection {selection!r}; choose from {', '.join(SELECTIONS)}")
    if selection == "prompt":
        return (fact.prompt,)
    return (fact.prompt, *fact.paraphrases[:-1])


def held_out(fact) -> str | None:
    """The paraphrase kept for validation (the last one), or None when the fact has none."""
    return fact.paraphrases[-1] if fact.paraphrases else None


def target_metric(target: str, alts: list[int]):
    """The metric ``(last_logits, answers) -> [batch]`` for a target name."""
    if target == "margin":
        return Margin(list(alts))
    if target == "logit":
        return AnswerLogit()
    if target == "prob":
        return AnswerProb()
    raise BadInput(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")


def top_memories(scores: Tensor, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` largest entries of ``scores [n_layers d_mlp]`` as (layer, neuron, score) (pure)."""
    vals, idx = scores.flatten().float().topk(min(k, scores.numel()))
    d = scores.shape[1]
    return [(int(i) // d, int(i) % d, float(v)) for v, i in zip(vals, idx)]


def locate(wb: Workbench, encoded: list[EncodedFact], method: str, k: int = 64, *, target: str = "margin",
           alternatives: list[list[int]] | None = None, seed: int = 0, selection: str = "prompt",
           progress: bool = False, **options) -> list[Located]:
    """Rank FFN memories (and tracing cells) for each fact by ``method``; see the module docstring.
    ``progress``: a progress bar over the facts."""
    if method not in METHODS:
        raise BadInput(f"unknown localization method {method!r}; choose from {', '.join(METHODS)}")
    if k < 1:
        raise BadInput(f"k must be at least 1, not {k}")
    if not encoded:
        raise BadInput("no facts to locate: give at least one fact")
    unknown = sorted(set(options) - OPTIONS[method])
    if unknown:
        raise BadInput(f"{method} has no option {unknown[0]!r}; its options: {', '.join(sorted(OPTIONS[method])) or 'none'}")
    if target not in TARGETS:
        raise BadInput(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if method == "dla" and target == "prob":
        raise BadInput("dla is linear in the logits: use target 'margin' or 'logit'")
    if alternatives is None:  # only the margin needs them; a relation without alternatives is an error there
        alternatives = relation_alternatives(encoded) if target == "margin" else [[] for _ in encoded]
    alts = alternatives
    if len(alts) != len(encoded):
        raise BadInput(f"one list of alternatives per fact: {len(alts)} lists for {len(encoded)} facts")
    if method == "tracing" and target != "prob":
        log.info("tracing measures ROME's p(answer) indirect effect; target %r is not used for cells", target)
    sigma = options.pop("sigma", None)
    if sigma is None and method in ("attribution_patching", "activation_patching", "tracing", "peak_neurons"):
        sigma = noise_sigma(wb, [wb.to_tokens(e.fact.prompt) for e in encoded], [e.subject for e in encoded],
                            noise_at=options.get("noise_at", "embed"))
    if method == "knowledge_neurons":
        return _knowledge_neurons(wb, encoded, alts, k, target, progress=progress, **options)
    out = []
    for i, (e, a) in enumerate(tqdm(list(zip(encoded, alts)), desc=f"locate ({method})", unit="fact",
                                    disable=not progress)):
        prompts = selection_prompts(e.fact, selection)
        if method in ("tracing", "peak_neurons"):
            prompts = prompts[:1]
        job = NoisedFact(wb, e, e.answer_ids[0], target_metric(target, a), prompts, seed, sigma)
        memories, cells = _RUN[method](job, k, target=target, alts=a, **options)
        out.append(Located(method=method, fact=i, memories=memories, cells=cells, prompts=prompts))
    return out


# --- per-method -------------------------------------------------------------------------------

def _dla(job: NoisedFact, k: int, *, target: str, alts: list[int]) -> tuple[list, list]:
    n = len(job.prompts)
    fx = direct_effects(job.wb, list(job.prompts), [job.answer] * n, [list(alts)] * n if target == "margin" else None)
    return top_memories(fx.neurons.mean(0), k), []


def _attribution_patching(job: NoisedFact, k: int, *, n_samples: int = 10, **_) -> tuple[list, list]:
    attr = torch.stack([attribution_scores(job, p, n_samples)[0] for p in job.prompts]).mean(0)
    return top_memories(attr, k), []


def _activation_patching(job: NoisedFact, k: int, *, n_samples: int = 3, sample: int | None = None, max_rows: int = 512,
                         **_) -> tuple[list, list]:
    per_prompt = [attribution_scores(job, p, 10) for p in job.prompts]
    est = torch.stack([a for a, _ in per_prompt]).mean(0)
    n = min(est.numel(), 4 * k if sample is None else sample)
    idx = est.flatten().abs().topk(n).indices
    neurons = [(int(i) // est.shape[1], int(i) % est.shape[1]) for i in idx]
    true = torch.stack([restore_neurons(job, p, clean, neurons, n_samples, max_rows=max_rows)
                        for p, (_, clean) in zip(job.prompts, per_prompt)]).mean(0)
    order = true.argsort(descending=True)[:k]
    return [(*neurons[int(j)], float(true[j])) for j in order], []


def _tracing(job: NoisedFact, k: int, *, n_samples: int = 10, kind: str = "mlp", window: int | None = None,
             max_rows: int = 256, noise_at: str = "embed", **_) -> tuple[list, list]:
    prompt = job.prompts[0]
    tr = trace(job.wb, prompt, job.answer, job.span(prompt), kinds=(kind,), n_samples=n_samples,
               window=scaled_window(job.wb.n_layers) if window is None else window, seed=job.seed,
               max_rows=max_rows, sigma=job.sigma, noise_at=noise_at)
    return [], top_cells(tr.effects[kind], k)


def top_cells(effect: Tensor, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` largest cells of ``effect [n_layers pos]`` (NaN never), best first (pure)."""
    flat = torch.nan_to_num(effect.float(), nan=float("-inf")).flatten()
    vals, idx = flat.topk(min(k, int(torch.isfinite(flat).sum())))
    T = effect.shape[1]
    return [(int(i) // T, int(i) % T, float(v)) for v, i in zip(vals, idx)]


def _peak_neurons(job: NoisedFact, k: int, *, n_samples: int = 3, sample: int | None = None, max_rows: int = 512,
                  **_) -> tuple[list, list]:
    prompt = job.prompts[0]
    tr = trace(job.wb, prompt, job.answer, job.span(prompt), kinds=("mlp_w1",), n_samples=10, window=1,
               seed=job.seed, sigma=job.sigma)
    (layer, pos, ie), = top_cells(tr.effects["mlp_w1"], 1)
    d = job.wb.d_mlp
    if sample == 0:
        clean = clean_post(job, prompt)
        cand = list(range(d))
    else:  # first-order estimate at the peak cell picks the candidates that are restored exactly
        attr_cell, clean = cell_attribution(job, prompt, layer, pos, n_samples)
        cand = attr_cell.abs().topk(min(d, 4 * k if sample is None else sample)).indices.tolist()
    true = restore_neurons(job, prompt, clean, [(layer, i) for i in cand], n_samples, position=pos, max_rows=max_rows)
    order = true.argsort(descending=True)[:k]
    return [(layer, cand[int(j)], float(true[j])) for j in order], [(layer, pos, ie)]


_RUN = {"dla": _dla, "attribution_patching": _attribution_patching, "activation_patching": _activation_patching,
        "tracing": _tracing, "peak_neurons": _peak_neurons}


# --- knowledge neurons (Dai et al. 2022): the pipeline lives in methods.knowledge_neurons ---------

def _knowledge_neurons(wb: Workbench, encoded: list[EncodedFact], alts: list[list[int]], k: int, target: str,
                       **options) -> list[Located]:
    prompts = [selection_prompts(e.fact, "paraphrases") for e in encoded]
    ranked = kn.dai_knowledge_neurons(wb, prompts, [e.answer_ids[0] for e in encoded],
                                      [e.fact.relation for e in encoded], [target_metric(target, a) for a in alts],
                                      k, **options)
    return [Located("knowledge_neurons", i, r, (), p) for i, (r, p) in enumerate(zip(ranked, prompts))]
