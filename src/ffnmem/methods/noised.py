"""The noised run of causal tracing, per fact, and FFN neurons restored into it (for localize).

:class:`NoisedFact` holds what a localization method needs for one fact (model, answer, target
metric, selection prompts, noise seed and σ); :func:`attribution_scores` (gradient × difference,
every neuron), :func:`restore_neurons` (exact restoration, batched per layer) and
:func:`cell_attribution` (first-order estimate at one cell) work on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ffnmem.core.hooks import EMBED, hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import EncodedFact, subject_span
from ffnmem.methods.interventions import Noise, Restore
from ffnmem.methods.patching import attribution_core
from ffnmem.methods.tracing import _Expand, subject_noise

FINAL_NORMALIZED = "ln_final.hook_normalized"


def last_only(act: Tensor, hook=None) -> Tensor:
    """Keep the last position after the final norm: only its logits are read, and unembedding every
    position is a quarter of a SmolLM2 forward (49k-token vocabulary)."""
    return act[:, -1:]


@dataclass(frozen=True)
class NoisedFact:
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


def attribution_scores(job: NoisedFact, prompt: str, n_samples: int) -> tuple[Tensor, Tensor]:
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
    hooks.append((FINAL_NORMALIZED, last_only))
    with torch.enable_grad(), wb.bridge.hooks(fwd_hooks=hooks):
        job.score(wb.bridge(tokens.expand(n_samples, -1))).sum().backward()
    attr = torch.stack([attribution_core(acts[n].grad.float(), clean[l][None], acts[n].detach().float()).mean(0)
                        for l, n in enumerate(names)])
    wb.bridge.zero_grad(set_to_none=True)
    return attr.cpu(), clean.cpu()


def restore_neurons(job: NoisedFact, prompt: str, clean: Tensor, neurons: list[tuple[int, int]], n_samples: int,
                    position: int | None = None, max_rows: int = 512) -> Tensor:
    """Target change when each neuron's clean coefficient (``clean [n_layers pos d_mlp]``) is put back
    into the noised run, at every position or at ``position`` only; mean over noise draws.

    Neurons of one layer run together: the noised run's ``n_samples`` rows go up to that layer once
    and only then expand to one copy per neuron (as :func:`tracing.restore_from`)."""
    wb, tokens = job.wb, job.tokens(prompt)
    noise, span, T = job.noise(prompt, n_samples), job.span(prompt), tokens.shape[1]
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=[(EMBED, Noise(noise, span)), (FINAL_NORMALIZED, last_only)]):
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
                     (FINAL_NORMALIZED, last_only)]
            with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=hooks):
                got = job.score(wb.bridge(tokens[:1].to(wb.device))).float().cpu()
            out[chunk] = got.reshape(len(chunk), n_samples).mean(1) - float(base)
    return out


def clean_post(job: NoisedFact, prompt: str) -> Tensor:
    names = [hook_name("post", l) for l in range(job.wb.n_layers)]
    with torch.inference_mode():
        _, cache = job.wb.bridge.run_with_cache(job.tokens(prompt), names_filter=lambda n: n in names)
    return torch.stack([cache[n][0].float() for n in names]).cpu()


def cell_attribution(job: NoisedFact, prompt: str, layer: int, pos: int, n_samples: int) -> tuple[Tensor, Tensor]:
    """∂target/∂m · (m_clean − m_noised) at one (layer, position), mean over noise draws ``[d_mlp]``."""
    wb, tokens, clean = job.wb, job.tokens(prompt), clean_post(job, prompt)
    kept: list[Tensor] = []

    def keep(act, hook=None):
        act.retain_grad()
        kept.append(act)
        return act

    hooks = [(EMBED, Noise(job.noise(prompt, n_samples), job.span(prompt))), (hook_name("post", layer), keep),
             (FINAL_NORMALIZED, last_only)]
    with torch.enable_grad(), wb.bridge.hooks(fwd_hooks=hooks):
        job.score(wb.bridge(tokens.expand(n_samples, -1))).sum().backward()
    act = kept[0]
    est = (act.grad[:, pos].float() * (clean[layer, pos].to(act.device) - act.detach()[:, pos].float())).mean(0)
    wb.bridge.zero_grad(set_to_none=True)
    return est.cpu(), clean
