"""One localization API: per fact, a ranked set of FFN memories (and, for tracing, cells).

``locate(wb, encoded, method, k)`` runs one method on every fact and returns :class:`Located`.

**Target.** ``target="margin"`` (default) attributes ``logit(answer) − mean logit(alternatives)``,
the alternatives being the other answers of the fact's relation (:func:`targets.alternatives`), so
"a city comes next" cancels; ``"logit"`` and ``"prob"`` are the raw targets the papers used.

**Prompts.** The *last* paraphrase of a fact is held out for validation and never selects.
``selection="prompt"``: the fact's prompt selects; ``"paraphrases"``: the prompt and every
paraphrase but the last (scores averaged over them). ``knowledge_neurons`` always uses the latter
(Dai's refining needs several prompts). ``tracing`` and ``peak_neurons`` trace the prompt alone
(cells are positions of one prompt). ``Located.prompts`` lists the prompts that selected.

==========================  ================================================================
``dla``                     direct effect of each memory at the last position on the target
                            (linear in logits: margin or logit; ``prob`` is refused)
``attribution_patching``    Σ_pos ∂target/∂m · (m_clean − m_noised), the noised run being
                            causal tracing's (subject embeddings + 3σ noise, ROME's σ), mean of
                            ``n_samples`` (10) noise draws; papers: logit differences
``activation_patching``     exact: each neuron's clean coefficients (all positions) restored
                            into the noised run, target change; a *re-ranking of a candidate
                            sample*: the ``sample`` (4k) largest |attribution patching|, not all
                            neurons; ``n_samples`` (3) noise draws
``knowledge_neurons``       Dai et al.: IG (``steps`` 20, zero baseline, last position) per
                            prompt, coarse set IG ≥ ``threshold`` (0.2)·max, refined: shared by
                            more than ``share`` (0.7) of the prompts, then cross-fact filtering
                            (:func:`knowledge_neurons.drop_shared`, ``relation_share`` 0.1 of the
                            relation's facts in this call); Dai integrate p(answer)
                            (``target="prob"``), margin integrates the margin's gradient
``tracing``                 ROME causal tracing (:func:`tracing.trace`, ``kind`` "mlp",
                            window scaled to depth): ``cells`` best first, no memories; the
                            indirect effect is ROME's p(answer) whatever the target
``peak_neurons``            the window-1 MLP trace's peak cell (layer, position); each neuron's
                            clean coefficient restored at that cell alone into the noised run,
                            ranked by the target; a re-ranking of the ``sample`` (4k) largest
                            |first-order estimates at that cell| (``sample=0``: all neurons);
                            ``cells`` holds the peak cell
==========================  ================================================================

Noise for the patching methods and tracing is ROME's: 3σ Gaussian on the subject's embeddings, σ
the std of the subject tokens' embeddings over all facts of the call (:func:`tracing.noise_sigma`),
draws seeded by ``seed``.

Runtime per fact on SmolLM2-135M (2 CPU cores, k = 64, capital_of France/Germany/Italy):
see :data:`RUNTIME_NOTE`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import EMBED, hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import EncodedFact, subject_span
from ffnmem.methods import knowledge_neurons as kn
from ffnmem.methods.attribution import direct_effects
from ffnmem.methods.interventions import AnswerLogit, AnswerProb, Margin, Noise, Restore
from ffnmem.methods.patching import attribution_core
from ffnmem.methods.targets import alternatives as relation_alternatives
from ffnmem.methods.tracing import (
    _Expand,
    noise_sigma,
    scaled_window,
    subject_noise,
    trace,
)

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
RUNTIME_NOTE = "filled in from bench measurements"
FINAL_NORMALIZED = "ln_final.hook_normalized"


def _last_only(act: Tensor, hook=None) -> Tensor:
    """Keep the last position after the final norm: only its logits are read, and unembedding every
    position is a quarter of a SmolLM2 forward (49k-token vocabulary)."""
    return act[:, -1:]


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


@dataclass(frozen=True)
class _Job:
    """What every method needs for one fact."""

    wb: Workbench
    fact: EncodedFact
    answer: int
    metric: object
    prompts: tuple[str, ...]
    seed: int
    sigma: float | None

    def tokens(self, prompt: str) -> Tensor:
        return self.wb.to_tokens(prompt)

    def span(self, prompt: str) -> tuple[int, int]:
        return subject_span(self.wb, prompt, self.fact.fact.subject, where=self.fact.fact.where)

    def noise(self, prompt: str, n: int) -> Tensor:
        return subject_noise(self.wb, self.span(prompt), n, self.seed, self.sigma)

    def score(self, logits: Tensor) -> Tensor:
        """The target at the last position of every row."""
        return self.metric(logits[:, -1], torch.full((logits.shape[0],), self.answer, device=logits.device))


def locate(wb: Workbench, encoded: list[EncodedFact], method: str, k: int = 64, *, target: str = "margin",
           alternatives: list[list[int]] | None = None, seed: int = 0, selection: str = "prompt",
           **options) -> list[Located]:
    """Rank FFN memories (and tracing cells) for each fact by ``method``; see the module docstring."""
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
        return _knowledge_neurons(wb, encoded, alts, k, target, **options)
    out = []
    for i, (e, a) in enumerate(zip(encoded, alts)):
        prompts = selection_prompts(e.fact, selection)
        if method in ("tracing", "peak_neurons"):
            prompts = prompts[:1]
        job = _Job(wb, e, e.answer_ids[0], target_metric(target, a), prompts, seed, sigma)
        memories, cells = _RUN[method](job, k, target=target, alts=a, **options)
        out.append(Located(method=method, fact=i, memories=memories, cells=cells, prompts=prompts))
    return out


# --- per-method -------------------------------------------------------------------------------

def _dla(job: _Job, k: int, *, target: str, alts: list[int]) -> tuple[list, list]:
    n = len(job.prompts)
    fx = direct_effects(job.wb, list(job.prompts), [job.answer] * n, [list(alts)] * n if target == "margin" else None)
    return top_memories(fx.neurons.mean(0), k), []


def attribution_scores(job: _Job, prompt: str, n_samples: int) -> tuple[Tensor, Tensor]:
    """Attribution patching of every neuron for one prompt: ``[n_layers d_mlp]`` (mean over noise
    draws) and the clean coefficients ``{layer: [1 pos d_mlp]}`` stacked as ``[n_layers pos d_mlp]``."""
    wb, tokens = job.wb, job.tokens(prompt)
    names = [hook_name("post", l) for l in range(wb.n_layers)]
    with torch.inference_mode():
        _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    clean = torch.stack([cache[n][0].float() for n in names])
    acts: dict[str, Tensor] = {}

    def keeper(name):
        def keep(act, hook=None):
            act.retain_grad()
            acts[name] = act
            return act
        return keep

    hooks = [(EMBED, Noise(job.noise(prompt, n_samples), job.span(prompt)))] + [(n, keeper(n)) for n in names]
    hooks.append((FINAL_NORMALIZED, _last_only))
    with torch.enable_grad(), wb.bridge.hooks(fwd_hooks=hooks):
        job.score(wb.bridge(tokens.expand(n_samples, -1))).sum().backward()
    attr = torch.stack([attribution_core(acts[n].grad.float(), clean[l][None], acts[n].detach().float()).mean(0)
                        for l, n in enumerate(names)])
    wb.bridge.zero_grad(set_to_none=True)
    return attr.cpu(), clean.cpu()


def _attribution_patching(job: _Job, k: int, *, n_samples: int = 10, **_) -> tuple[list, list]:
    attr = torch.stack([attribution_scores(job, p, n_samples)[0] for p in job.prompts]).mean(0)
    return top_memories(attr, k), []


def restore_neurons(job: _Job, prompt: str, clean: Tensor, neurons: list[tuple[int, int]], n_samples: int,
                    position: int | None = None, max_rows: int = 512) -> Tensor:
    """Target change when each neuron's clean coefficient (``clean [n_layers pos d_mlp]``) is put back
    into the noised run, at every position or at ``position`` only; mean over noise draws.

    Neurons of one layer run together: the noised run's ``n_samples`` rows go up to that layer once
    and only then expand to one copy per neuron (as :func:`tracing.restore_from`)."""
    wb, tokens = job.wb, job.tokens(prompt)
    noise, span, T = job.noise(prompt, n_samples), job.span(prompt), tokens.shape[1]
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=[(EMBED, Noise(noise, span)), (FINAL_NORMALIZED, _last_only)]):
        base = job.score(wb.bridge(tokens.expand(n_samples, -1))).float().mean()
    out = torch.zeros(len(neurons))
    by_layer: dict[int, list[int]] = {}
    for j, (l, _) in enumerate(neurons):
        by_layer.setdefault(l, []).append(j)
    per = max(1, max_rows // n_samples)
    for layer, idx in sorted(by_layer.items()):
        for s in range(0, len(idx), per):
            chunk = idx[s: s + per]
            mask = torch.zeros(len(chunk) * n_samples, T, wb.d_mlp, dtype=torch.bool)
            for r, j in enumerate(chunk):
                pos = slice(None) if position is None else position
                mask[r * n_samples: (r + 1) * n_samples, pos, neurons[j][1]] = True
            # order matters at a shared hook point: expand to samples, noise, expand to neurons
            hooks = [(hook_name("resid_pre", 0), _Expand(n_samples)), (hook_name("resid_pre", 0), Noise(noise, span)),
                     (hook_name("resid_pre", layer), _Expand(len(chunk))),
                     (hook_name("post", layer), Restore(clean[layer][None].to(wb.device), mask)),
                     (FINAL_NORMALIZED, _last_only)]
            with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=hooks):
                got = job.score(wb.bridge(tokens[:1].to(wb.device))).float().cpu()
            out[chunk] = got.reshape(len(chunk), n_samples).mean(1) - float(base)
    return out


def _activation_patching(job: _Job, k: int, *, n_samples: int = 3, sample: int | None = None, max_rows: int = 512,
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


def _tracing(job: _Job, k: int, *, n_samples: int = 10, kind: str = "mlp", window: int | None = None,
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


def _peak_neurons(job: _Job, k: int, *, n_samples: int = 3, sample: int | None = None, max_rows: int = 512,
                  **_) -> tuple[list, list]:
    prompt = job.prompts[0]
    tr = trace(job.wb, prompt, job.answer, job.span(prompt), kinds=("mlp_w1",), n_samples=10, window=1,
               seed=job.seed, sigma=job.sigma)
    (layer, pos, ie), = top_cells(tr.effects["mlp_w1"], 1)
    d = job.wb.d_mlp
    if sample == 0:
        clean = _clean_post(job, prompt)
        cand = list(range(d))
    else:  # first-order estimate at the peak cell picks the candidates that are restored exactly
        attr_cell, clean = _cell_attribution(job, prompt, layer, pos, n_samples)
        cand = attr_cell.abs().topk(min(d, 4 * k if sample is None else sample)).indices.tolist()
    true = restore_neurons(job, prompt, clean, [(layer, i) for i in cand], n_samples, position=pos, max_rows=max_rows)
    order = true.argsort(descending=True)[:k]
    return [(layer, cand[int(j)], float(true[j])) for j in order], [(layer, pos, ie)]


def _clean_post(job: _Job, prompt: str) -> Tensor:
    names = [hook_name("post", l) for l in range(job.wb.n_layers)]
    with torch.inference_mode():
        _, cache = job.wb.bridge.run_with_cache(job.tokens(prompt), names_filter=lambda n: n in names)
    return torch.stack([cache[n][0].float() for n in names]).cpu()


def _cell_attribution(job: _Job, prompt: str, layer: int, pos: int, n_samples: int) -> tuple[Tensor, Tensor]:
    """∂target/∂m · (m_clean − m_noised) at one (layer, position), mean over noise draws ``[d_mlp]``."""
    wb, tokens, clean = job.wb, job.tokens(prompt), _clean_post(job, prompt)
    kept: list[Tensor] = []

    def keep(act, hook=None):
        act.retain_grad()
        kept.append(act)
        return act

    hooks = [(EMBED, Noise(job.noise(prompt, n_samples), job.span(prompt))), (hook_name("post", layer), keep),
             (FINAL_NORMALIZED, _last_only)]
    with torch.enable_grad(), wb.bridge.hooks(fwd_hooks=hooks):
        job.score(wb.bridge(tokens.expand(n_samples, -1))).sum().backward()
    act = kept[0]
    est = (act.grad[:, pos].float() * (clean[layer, pos].to(act.device) - act.detach()[:, pos].float())).mean(0)
    wb.bridge.zero_grad(set_to_none=True)
    return est.cpu(), clean


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
