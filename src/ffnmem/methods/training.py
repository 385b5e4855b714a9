"""Train small TransformerLens-native models on a synthetic fact corpus, resumably.

AdamW with linear warmup and cosine decay, seeded. The data order is a pure function of
``(seed, step)`` (one permutation of the documents per epoch, from a generator seeded with
``seed`` and the epoch; see :mod:`ffnmem.methods.packing`), so a run that stops and resumes from a
checkpoint sees the same batches and ends with the same weights as one that never stopped.
Checkpoints are written atomically:
``run/checkpoints/step-NNNNNN/{model/, optimizer.safetensors, state.json}`` where ``model/`` is an
ffnmem checkpoint (weights, config, word-level tokenizer), ``optimizer.safetensors`` the AdamW
moments and ``state.json`` the step, optimizer hyperparameters, scheduler, logged curves and the
run's fingerprint. No pickle anywhere: a run folder from someone else can be resumed without
running its code (an old ``state.pt`` is refused, never unpickled). No RNG state is saved because
training draws none from global generators: batches and masks are functions of ``(seed, step)``.

Causal-LM training packs documents (``BOS doc EOS BOS doc EOS ...``) into full rows of ``n_ctx``
tokens, as GPT-2 and Allen-Zhu & Li do; a step then holds ``batch_size · n_ctx`` tokens and an
epoch (one pass over the corpus, each token once) is :func:`steps_per_epoch` steps
(:func:`steps_for_epochs` turns passes into steps). ``packing="documents"`` (the default) blocks
attention between the documents of a row and restarts positions at each BOS, so a document is
learned as if alone in its row and the queries (read at position 0 after BOS) are in
distribution; ``packing="stream"`` attends across documents with positions running over the row,
as GPT-2 and Allen-Zhu & Li do (on the tiny preset it recalls less at the same exposures: see
docs/BENCHMARKS-training.md). ``packing="none"`` and the prefix / masked-LM objectives train one
padded document per row (their masks are per document), with the loss masked on padding.
The loop does no per-step host work beyond the step itself: losses are fetched and the progress
bar updated every ``log_every`` steps.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.models import boot_native, load_checkpoint
from ffnmem.core.paths import atomic_write_json
from ffnmem.core.workbench import Workbench, resolve_device
from ffnmem.data.synthetic import FactConfig, FactCorpus
from ffnmem.data.vocab import build_tokenizer
from ffnmem.methods.checkpoints import checkpoints, latest_state, load_optimizer, load_run, save_state
from ffnmem.methods.frequency import score_queries, summarize
from ffnmem.methods.objectives import objective_loss, prepare
from ffnmem.methods.packing import batch_indices, encode_documents, epochs_to_steps, make_batches, make_pair_batches
from ffnmem.methods.packing import steps_per_epoch as _steps_per_epoch

__all__ = ["PRESETS", "TrainConfig", "TrainRun", "batch_indices", "checkpoints", "encode_documents", "load_run",
           "preset", "steps_for_epochs", "steps_per_epoch", "train"]

log = logging.getLogger(__name__)


PACKINGS = ("documents", "stream", "none")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Model shape and optimisation settings. ``steps`` counts optimizer updates."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 64
    act_fn: str = "gelu"
    gated_mlp: bool = False
    normalization_type: str = "LN"
    positional_embedding_type: str = "standard"
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 30
    min_lr_ratio: float = 0.1
    checkpoint_every: int = 200
    eval_every: int = 50
    seed: int = 0
    packing: str = "documents"  # causal LM rows: documents | stream | none (see ffnmem.methods.packing)
    log_every: int = 10  # fetch losses and update the progress bar every this many steps

    def __post_init__(self) -> None:
        for key in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "steps", "batch_size",
                    "checkpoint_every", "eval_every", "log_every"):
            if getattr(self, key) < 1:
                raise BadInput(f"invalid training setting: {key} is {getattr(self, key)}; use at least 1")
        if self.d_model % self.n_heads:
            raise BadInput(f"invalid training setting: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.packing not in PACKINGS:
            raise BadInput(f"unknown packing {self.packing!r}; choose from {', '.join(PACKINGS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise BadInput("invalid training setting: need lr > 0, warmup >= 0, 0 <= min_lr_ratio <= 1")

    def tl_config(self, d_vocab: int) -> dict:
        return dict(n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                    d_head=self.d_model // self.n_heads, d_mlp=self.d_mlp, d_vocab=d_vocab, n_ctx=self.n_ctx,
                    act_fn=self.act_fn, gated_mlp=self.gated_mlp, normalization_type=self.normalization_type,
                    positional_embedding_type=self.positional_embedding_type, attention_dir="causal",
                    seed=self.seed)


# tiny: finishes in about a minute on one CPU core and already shows the frequency effect. Batches
# are 16 packed rows of 64 tokens (~1,000 tokens, as the 32 padded documents before packing), so
# 400 steps are ~5.2 passes over the corpus (steps_per_epoch: 77.5).
PRESETS: dict[str, tuple[FactConfig, TrainConfig]] = {
    "tiny": (FactConfig(n_entities=140, bins=(1, 2, 4, 8, 16, 32, 64), n_values=24, value_noise=0.05, seed=0),
             TrainConfig(steps=400, batch_size=16, eval_every=100, checkpoint_every=200)),
    # paper: 64 packed rows of 96 tokens hold about what 128 padded 6-attribute documents (~46 tokens) did.
    "paper": (FactConfig(n_entities=2000, attributes=("birth_city", "birth_year", "employer", "field", "university", "hobby"),
                         n_values=100, bins=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), seed=0),
              TrainConfig(n_layers=4, d_model=256, n_heads=8, d_mlp=1024, n_ctx=96, steps=20000, batch_size=64,
                          lr=1e-3, warmup=500, eval_every=1000, checkpoint_every=2000)),
    # Capacity-limited presets (sweep sizes in ffnmem.methods.capacity.SWEEPS): one pass over the
    # corpus = every fact seen `bins[0]` times (the sweep sets steps with steps_for_epochs; `steps`
    # here is that count). Name pools keep the vocabulary (so the embedding parameters) small; all 4
    # templates are in the corpus, no noise. One document per row (packing="none"): no mention loses
    # its name to a row cut, and rows of ~36 tokens train ~3x faster per token on CPU than packed
    # rows of 96 (measured, L2-d22). lr 1e-2, not 3e-3: on seed 0 of capacity-100x, 3e-3 left L2-d16
    # at 313 bits (CE 6.60 of log2 100 = 6.64) and L1-d6 above uniform (CE 7.14); 1e-2 gave 3,594
    # and 6.64 (chosen on training cross-entropy, as Allen-Zhu & Li pick the best lr per size).
    "capacity-100x": (FactConfig(n_entities=2000, n_values=100, bins=(100,), templates_per_attribute=4,
                                 first_names=60, last_names=80, seed=0),
                      TrainConfig(n_ctx=48, n_heads=2, steps=1563, batch_size=128, lr=1e-2, warmup=50,
                                  eval_every=195, checkpoint_every=390, packing="none")),
    "capacity-1000x": (FactConfig(n_entities=210, n_values=100, bins=(1000,), templates_per_attribute=4,
                                  first_names=20, last_names=30, seed=0),
                       TrainConfig(n_ctx=48, n_heads=2, steps=1641, batch_size=128, lr=1e-2, warmup=50,
                                   eval_every=205, checkpoint_every=410, packing="none")),
    "capacity-quick": (FactConfig(n_entities=40, n_values=16, bins=(50,), templates_per_attribute=4,
                                  first_names=10, last_names=10, seed=0),
                       TrainConfig(n_ctx=48, n_heads=2, steps=125, batch_size=16, lr=1e-2, warmup=5,
                                   eval_every=31, checkpoint_every=62, packing="none")),
}


def preset(name: str) -> tuple[FactConfig, TrainConfig]:
    if name not in PRESETS:
        raise BadInput(f"unknown training preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """Mean next-token cross-entropy (nats); targets equal to ``ignore_id`` (padding, or BOS) ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=ignore_id)


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
    return f


def _optimizer(wb: Workbench, cfg: TrainConfig):
    params = list(wb.bridge.original_model.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))


@dataclass
class TrainRun:
    """What :func:`train` returns: the trained model and its logged curves.

    ``tokens_seen`` counts the real (non-padding) tokens this call trained on and ``signal_tokens``
    the positions that gave a loss term (packed causal LM: every target but BOS under
    ``packing="documents"``, ``batch_size · (n_ctx − 1)`` a step as a stream). ``epochs`` is the
    number of passes over the corpus at ``step`` (``steps_per_epoch`` steps each): a fact written
    k times in the corpus has then been read ``k · epochs`` times.
    ``seconds`` is the whole call after the model is built (data preparation, steps, evaluations,
    checkpoints); ``eval_seconds`` the part spent in evaluations and checkpoints.
    """

    wb: Workbench
    corpus: FactCorpus
    config: TrainConfig
    step: int
    losses: list[dict]  # step, loss (nats), lr
    evals: list[dict]  # step + frequency.summarize fields
    seconds: float
    tokens_seen: int
    signal_tokens: int = 0
    steps_per_epoch: float = 0.0  # optimizer steps in one pass over the corpus
    eval_seconds: float = 0.0

    @property
    def epochs(self) -> float:
        """Passes over the corpus after ``step`` steps (each fact's exposures × this = times seen)."""
        return self.step / self.steps_per_epoch if self.steps_per_epoch else 0.0


def steps_per_epoch(corpus: FactCorpus, cfg: TrainConfig, objective=None) -> float:
    """Optimizer steps in one pass over ``corpus`` with ``cfg`` (packed tokens or padded documents)."""
    tok = build_tokenizer(corpus, mask_token=objective is not None)
    if _pairs(objective):
        return make_pair_batches(tok, corpus.documents, cfg.batch_size, cfg.n_ctx, cfg.seed)[1]
    return _steps_per_epoch(tok, corpus.documents, cfg.batch_size, cfg.n_ctx, _packed(cfg, objective))


def _pairs(objective) -> bool:
    return getattr(objective, "kind", None) == "encdec"  # (prompt, answer) pairs, one per sentence


def _packed(cfg: TrainConfig, objective) -> bool:
    return cfg.packing != "none" and objective is None  # objectives mask per document: one per row


def steps_for_epochs(corpus: FactCorpus, cfg: TrainConfig, epochs: float | int, objective=None) -> int:
    """Steps for ``epochs`` passes over ``corpus`` (rounded up): a fact with k exposures in the
    corpus is then seen ``k · epochs`` times. Use as ``replace(cfg, steps=steps_for_epochs(...))``."""
    return epochs_to_steps(steps_per_epoch(corpus, cfg, objective), epochs)


def _batcher(tokenizer, corpus: FactCorpus, cfg: TrainConfig, objective):
    """``step -> (rows, model kwargs, real tokens, loss-bearing tokens)`` and the steps in one epoch."""
    if _pairs(objective):
        return make_pair_batches(tokenizer, corpus.documents, cfg.batch_size, cfg.n_ctx, cfg.seed)
    packing = cfg.packing if _packed(cfg, objective) else "none"
    return make_batches(tokenizer, corpus.documents, cfg.batch_size, cfg.n_ctx, cfg.seed, packing)


def train(corpus: FactCorpus, cfg: TrainConfig, run_dir: str | Path | None = None, *, device: str = "auto",
          resume: bool = True, stop_at: int | None = None, progress: bool = True, objective=None,
          monitor=None) -> TrainRun:
    """Train a fresh model on ``corpus`` (or resume the latest checkpoint in ``run_dir``).

    ``stop_at`` stops after that many steps (simulating an interruption; a checkpoint is written
    there). Evaluations every ``eval_every`` steps score the corpus queries (attribute positions).
    ``objective`` (:class:`ffnmem.methods.objectives.Objective`) swaps the mask and loss (prefix / masked
    LM, positions off) and trains one document per row, or (``encdec``) builds an encoder-decoder and
    trains it on (prompt, answer) pairs, one per sentence; the vocabulary then carries a ``<mask>``
    token for every variant alike. Causal LM without an objective packs rows (module doc).
    ``monitor`` (e.g. :class:`ffnmem.methods.budgets.PlateauMonitor`): called as ``monitor(step, model)``
    every ``monitor.every`` steps; training stops there when it returns True.
    """

    dev = resolve_device(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    state = latest_state(run_dir, corpus, cfg, objective) if (run_dir and resume) else None
    if state is not None:
        wb = load_checkpoint(state["model_dir"], device=str(dev))
    else:
        tok = build_tokenizer(corpus, mask_token=objective is not None)
        tl = {**cfg.tl_config(len(tok)), **(objective.tl_overrides() if objective is not None else {})}
        wb = boot_native(tl, tok, dev, torch.float32, model_id=f"synthetic-facts@seed={cfg.seed}")
    wb.source = "ffnmem.methods.training"
    model = wb.bridge.original_model
    if objective is not None:
        prepare(model, objective)
    opt, sched = _optimizer(wb, cfg)
    step, losses, evals = 0, [], []
    if state is not None:
        load_optimizer(opt, sched, state)
        step, losses, evals = state["step"], state["losses"], state["evals"]
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {"train": dataclasses.asdict(cfg), "facts": corpus.config.to_dict()})
    t0, tokens_seen, signal, eval_seconds = time.perf_counter(), 0, 0, 0.0
    batches, per_epoch = _batcher(wb.tokenizer, corpus, cfg, objective)
    pad, bos, params = wb.tokenizer.pad_token_id, wb.tokenizer.bos_token_id, list(model.parameters())
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    pending: list[tuple[int, torch.Tensor, float]] = []  # losses not yet fetched from the device

    def flush() -> None:
        if pending:
            values = torch.stack([loss for _, loss, _ in pending]).tolist()  # one host sync per flush
            losses.extend({"step": s, "loss": v, "lr": lr} for (s, _, lr), v in zip(pending, values))
            bar.update(len(pending))
            bar.set_postfix(loss=f"{values[-1]:.3f}")
            pending.clear()

    model.train()
    bar = tqdm(total=end, initial=step, desc="train", disable=not progress, leave=False)
    while step < end:
        batch, kwargs, n_tokens, n_signal = batches(step)
        batch = batch.to(dev, non_blocking=True)
        kwargs = {k: v.to(dev, non_blocking=True) for k, v in kwargs.items()}
        if objective is None:
            # per-document packing ignores BOS targets; stream packing has no padding to ignore
            loss = lm_loss(model(batch, **kwargs), batch, bos if cfg.packing == "documents" else pad)
        else:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # masks/prefixes: f(seed, step)
            loss, n_signal = objective_loss(model, objective, batch, pad, wb.tokenizer.mask_token_id, gen, **kwargs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        tokens_seen, signal = tokens_seen + n_tokens, signal + n_signal
        pending.append((step, loss.detach(), sched.get_last_lr()[0]))
        do_eval = step % cfg.eval_every == 0 or step == cfg.steps
        do_save = run_dir is not None and (step % cfg.checkpoint_every == 0 or step == end)
        if step % cfg.log_every == 0 or do_eval or do_save or step == end:
            flush()
        if do_eval or do_save:
            t_eval = time.perf_counter()
            if do_eval:
                model.eval()
                evals.append({"step": step, **summarize(score_queries(
                    wb, corpus.queries, value_sets=corpus.values, value_noise=corpus.config.value_noise,
                    objective=objective))})
                model.train()
            if do_save:
                save_state(run_dir, wb, opt, sched, step, losses, evals, corpus, cfg, objective)
            eval_seconds += time.perf_counter() - t_eval
        if monitor is not None and step % monitor.every == 0:
            model.eval()
            stop = monitor(step, model)
            model.train()
            if stop:
                flush()
                break
    bar.close()
    model.eval()
    return TrainRun(wb=wb, corpus=corpus, config=cfg, step=step, losses=losses, evals=evals,
                    seconds=time.perf_counter() - t0, tokens_seen=tokens_seen, signal_tokens=signal,
                    steps_per_epoch=per_epoch, eval_seconds=eval_seconds)
