"""Training budgets for a fair comparison of architectures: equal steps, FLOPs, supervised tokens, or convergence.

Every arm of :mod:`ffnmem.methods.fair` starts from a *reference* budget: the causal LM at the
preset's steps. Then

* ``steps``: every arm trains the preset's steps (the encoder-decoder and the sentence-row control
  see the sentences of ``batch_size`` documents a step, so this is equal passes over the corpus);
* ``flops``: every arm trains until it has spent the reference's training FLOPs
  (:func:`ffnmem.methods.architectures.train_flops`), ``steps = ceil(reference FLOPs / FLOPs a step)``;
* ``supervised``: every arm trains until it has had the reference's number of loss-bearing tokens
  (``TrainRun.signal_tokens``): the masked LM has a loss term at 15% of positions, so it needs
  about 6.7× the causal steps;
* ``convergence``: every arm trains until its held-out loss (:class:`PlateauMonitor`) has not improved by
  more than a relative ``tol`` for ``patience`` evaluations, or until a step cap.

The per-step rates (tokens, supervised tokens, FLOPs) are *measured*: the mean over the first
:data:`RATE_STEPS` batches of a real training run of the arm (the masks and prefixes are random,
so a masked LM's supervised tokens per step are 15% of its tokens only on average).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ffnmem.core.errors import BadInput

BUDGETS = ("steps", "flops", "supervised", "convergence")
RATE_STEPS = 8  # batches averaged to measure an arm's tokens, supervised tokens and FLOPs per step


def parse_budgets(text: str) -> tuple[str, ...]:
    """``"supervised,convergence"`` -> a tuple of budgets (one-line error on anything else)."""
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    if not names:
        raise BadInput(f"--budget {text!r} names no budget; choose from {', '.join(BUDGETS)}")
    bad = [b for b in names if b not in BUDGETS]
    if bad:
        raise BadInput(f"unknown budget {bad[0]!r}; choose from {', '.join(BUDGETS)}")
    if len(set(names)) != len(names):
        raise BadInput(f"--budget {text!r} lists a budget twice")
    return names


def parse_seeds(text: str, seed_max: int = 2**31 - 1) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): distinct integers in [0, seed_max] (one-line error otherwise)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise BadInput(f"--seeds {text!r} names no seed; e.g. 0,1,2")
    try:
        seeds = tuple(int(p) for p in parts)
    except ValueError:
        raise BadInput(f"--seeds {text!r} is not a comma list of integers; e.g. 0,1,2") from None
    if any(not 0 <= s <= seed_max for s in seeds):
        raise BadInput(f"--seeds {text!r}: every seed must be in [0, {seed_max}]")
    if len(set(seeds)) != len(seeds):
        raise BadInput(f"--seeds {text!r} lists a seed twice")
    return seeds


@dataclass(frozen=True)
class Rates:
    """An arm's measured cost of one optimizer step."""

    tokens: float  # real (non-padding) tokens
    signal: float  # loss-bearing tokens
    flops: float  # training FLOPs (train_flops)


def steps_for(budget: str, reference: Rates, reference_steps: int, arm: Rates) -> int:
    """Steps an arm trains under ``budget`` so that it spends what the reference spends in
    ``reference_steps`` (``convergence``: the step cap is set elsewhere; this returns ``reference_steps``)."""
    if budget not in BUDGETS:
        raise BadInput(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    if budget in ("steps", "convergence"):
        return reference_steps
    key = "flops" if budget == "flops" else "signal"
    per_step = getattr(arm, key)
    if not per_step > 0:
        raise BadInput(f"an arm with {per_step} {key} per step cannot meet a {budget} budget")
    return max(1, math.ceil(getattr(reference, key) * reference_steps / per_step - 1e-9))


def plateaued(losses: list[float], tol: float, patience: int) -> bool:
    """True when the last ``patience`` evaluations brought no improvement larger than a relative
    ``tol`` over the best loss before them: ``min(last P) > (1 - tol) · min(earlier)``."""
    if patience < 1 or not 0 <= tol < 1:
        raise BadInput(f"convergence needs patience >= 1 and 0 <= tol < 1 (got {patience}, {tol})")
    if len(losses) <= patience:
        return False
    best_before = min(losses[:-patience])
    return min(losses[-patience:]) > (1 - tol) * best_before


class PlateauMonitor:
    """Stops training when a held-out loss plateaus (:func:`plateaued`), checked every ``every`` steps.

    ``loss_fn(model) -> float`` is the held-out loss (see :func:`ffnmem.methods.fair.heldout_loss`).
    ``history`` keeps ``(step, loss)``; ``stopped_at`` the step of the stop (None if it never fired).
    """

    def __init__(self, loss_fn, *, every: int, tol: float, patience: int):
        if every < 1:
            raise BadInput(f"convergence checks every {every} steps; use at least 1")
        plateaued([], tol, patience)  # validates tol and patience
        self.loss_fn, self.every, self.tol, self.patience = loss_fn, every, tol, patience
        self.history: list[tuple[int, float]] = []
        self.stopped_at: int | None = None

    def __call__(self, step: int, model) -> bool:
        self.history.append((step, float(self.loss_fn(model))))
        if plateaued([v for _, v in self.history], self.tol, self.patience):
            self.stopped_at = step
            return True
        return False
