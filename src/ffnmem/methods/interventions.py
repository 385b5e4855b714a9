"""Interventions on activations, as objects with one hook signature, and the metrics they are read by.

Every intervention is a callable ``(act, hook=None) -> act`` (TransformerLens' forward-hook
signature), so ablation, causal tracing, patching and knowledge neurons install them the same way:
``wb.bridge.hooks(fwd_hooks=[(hook_name("post", l), Zero(mask)), ...])``. Batch convention: an
intervention's mask or source has one row per batch row, or a single row for the whole batch.

==============  ===========================================================================
``Zero``        ``a ← 0`` where the mask is set (zero ablation)
``Scale``       ``a ← factor · a`` (amplify or suppress, Dai et al.'s ×2 / ×0)
``Mean``        ``a ← E[a]`` over reference tokens (mean ablation)
``Resample``    ``a ← a'`` of a random reference token, drawn from a seeded generator
``Noise``       ``a ← a + ε`` on a span of positions (causal tracing's corrupted run)
``Restore``     ``a ← a_clean`` (tracing's restoration, activation patching)
==============  ===========================================================================

Metrics are callables ``metric(last_logits [batch d_vocab], answers [batch]) -> [batch]``:
:class:`AnswerProb`, :class:`AnswerLogit`, :class:`LogitDiff` and :class:`Margin`;
:func:`run_metric` runs the model with interventions and applies one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ffnmem.core.errors import BadInput

INTERVENTION_POSITIONS = ("all", "last")


@dataclass(frozen=True)
class UnitIntervention(ABC):
    """Base of interventions on units (FFN neurons): ``mask [rows d_mlp]``, at ``positions``; each
    subclass says what a masked unit becomes (:meth:`replacement`)."""

    mask: Bool[Tensor, "rows d"]
    positions: str = "all"

    def __post_init__(self) -> None:
        if self.positions not in INTERVENTION_POSITIONS:
            raise BadInput(f"positions must be 'all' or 'last', not {self.positions!r}")

    @abstractmethod
    def replacement(self, act: Tensor) -> Tensor:
        """The new value of masked units, broadcastable to ``act``."""

    def __call__(self, act: Float[Tensor, "batch pos d"], hook=None) -> Tensor:
        sel = self.mask.to(act.device)
        sel = sel.expand(act.shape[0], -1) if sel.shape[0] == 1 else sel
        sel = sel[:, None, :].expand_as(act).clone()
        if self.positions == "last":
            sel[:, :-1] = False
        return torch.where(sel, self.replacement(act).expand_as(act).to(act.dtype), act)


@dataclass(frozen=True)
class Zero(UnitIntervention):
    def replacement(self, act: Tensor) -> Tensor:
        return torch.zeros((), device=act.device, dtype=act.dtype)


@dataclass(frozen=True)
class Scale(UnitIntervention):
    factor: float = 1.0

    def replacement(self, act: Tensor) -> Tensor:
        return act * self.factor


@dataclass(frozen=True)
class Mean(UnitIntervention):
    """``mean``: the reference activations' mean per unit, ``[d]``."""

    mean: Float[Tensor, " d"] | None = None

    def replacement(self, act: Tensor) -> Tensor:
        return self.mean.to(act.device)[None, None, :]


@dataclass(frozen=True)
class Resample(UnitIntervention):
    """Each (row, position) takes the units of a reference token drawn from ``generator``."""

    reference: Float[Tensor, "n d"] | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)

    def replacement(self, act: Tensor) -> Tensor:
        pick = torch.randint(len(self.reference), (act.shape[0] * act.shape[1],), generator=self.generator)
        return self.reference[pick].reshape(act.shape[0], act.shape[1], -1).to(act.device)


@dataclass(frozen=True)
class Noise:
    """Add ``noise [samples span d]`` to positions ``span[0]:span[1]``; batch rows cycle through samples."""

    noise: Float[Tensor, "samples span d"]
    span: tuple[int, int]

    def __repr__(self) -> str:  # TransformerLens names every hook by its repr: never format tensors
        return f"Noise({tuple(self.noise.shape)}, span={self.span})"

    def __call__(self, act: Float[Tensor, "batch pos d"], hook=None) -> Tensor:
        act = act.clone()
        rows = act.shape[0]
        reps = -(-rows // self.noise.shape[0])
        act[:, self.span[0]: self.span[1]] += self.noise.to(act.device, act.dtype).repeat(reps, 1, 1)[:rows]
        return act


@dataclass(frozen=True)
class Restore:
    """Write ``clean`` activations where ``mask`` is set: ``mask [rows pos]`` (whole vectors at
    positions) or ``[rows pos d]`` (single units); ``clean`` broadcasts onto the batch."""

    clean: Float[Tensor, "#rows pos d"]
    mask: Bool[Tensor, "rows pos"] | Bool[Tensor, "rows pos d"]

    def __repr__(self) -> str:  # as Noise's
        return f"Restore(clean={tuple(self.clean.shape)}, mask={tuple(self.mask.shape)})"

    def __call__(self, act: Float[Tensor, "batch pos d"], hook=None) -> Tensor:
        m = self.mask.to(act.device)
        m = m[:, :, None] if m.dim() == 2 else m
        return torch.where(m, self.clean.to(act.device, act.dtype), act)


def unit_intervention(mode: str, mask: Tensor, *, positions: str = "all", factor: float = 0.0,
                      reference: Tensor | None = None, generator: torch.Generator | None = None):
    """The intervention named ``mode`` (zero, scale, mean, resample) on ``mask``."""
    if mode == "zero":
        return Zero(mask, positions)
    if mode == "scale":
        return Scale(mask, positions, factor)
    if mode in ("mean", "resample") and reference is None:
        raise BadInput(f"{mode} ablation needs reference activations")
    if mode == "mean":
        return Mean(mask, positions, reference.mean(0))
    if mode == "resample":
        return Resample(mask, positions, reference, generator or torch.Generator().manual_seed(0))
    raise BadInput(f"unknown ablation mode {mode!r}; choose from zero, mean, resample, scale")


# --- metrics -----------------------------------------------------------------------------------

class AnswerProb:
    """p(answer) under the softmax over the vocabulary."""

    def __call__(self, last: Float[Tensor, "batch d_vocab"], answers: Int[Tensor, " batch"]) -> Tensor:
        return last.float().softmax(-1).gather(1, answers[:, None].to(last.device))[:, 0]


class AnswerLogit:
    """The answer's logit."""

    def __call__(self, last: Float[Tensor, "batch d_vocab"], answers: Int[Tensor, " batch"]) -> Tensor:
        return last.float().gather(1, answers[:, None].to(last.device))[:, 0]


@dataclass(frozen=True)
class LogitDiff:
    """The answer's logit minus a distractor's (one distractor for all rows, or one per row)."""

    distractor: int | Sequence[int]

    def __call__(self, last: Float[Tensor, "batch d_vocab"], answers: Int[Tensor, " batch"]) -> Tensor:
        d = torch.as_tensor(self.distractor, device=last.device).expand(len(answers))
        return AnswerLogit()(last, answers) - last.float().gather(1, d[:, None])[:, 0]


@dataclass(frozen=True)
class Margin:
    """The answer's logit minus the mean logit of alternatives (e.g. the relation's other answers).

    ``alternatives`` is one list of token ids for every row, or one list per row; the answer itself
    is left out of the mean if it is listed.
    """

    alternatives: Sequence[int] | Sequence[Sequence[int]]

    def __call__(self, last: Float[Tensor, "batch d_vocab"], answers: Int[Tensor, " batch"]) -> Tensor:
        alts = self.alternatives
        per_row = alts and isinstance(alts[0], Sequence)
        out = []
        for b, a in enumerate(answers.tolist()):
            ids = [i for i in (alts[b] if per_row else alts) if i != a]
            if not ids:
                raise BadInput("a margin needs at least one alternative other than the answer")
            out.append(last[b, a].float() - last[b, ids].float().mean())
        return torch.stack(out)


def run_metric(wb, tokens: Int[Tensor, "batch pos"], answers: Int[Tensor, " batch"], metric,
               hooks: Sequence[tuple[str, object]] = ()) -> Float[Tensor, " batch"]:
    """``metric`` of the last position's logits of ``tokens`` with ``hooks`` installed (CPU tensor)."""
    with torch.inference_mode(), wb.bridge.hooks(fwd_hooks=list(hooks)):
        logits = wb.bridge(tokens.to(wb.device))
    return metric(logits[:, -1], answers.to(logits.device)).cpu()
