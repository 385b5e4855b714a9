"""Positional information and attention structure: probes, effective rank, equivariance, order task.

* Position probe: a ridge regression from the residual stream at layer l to the token's index,
  cross-validated with folds grouped by sequence; error = mean absolute error in positions
  (baseline: always predict the mean index).
* Effective rank of an attention pattern A (one head, one sequence): with singular values s and
  ``p = s / Σ s``, ``erank = exp(−Σ p log p)`` (Roy & Vetterli 2007).
* Order task (Haviv et al. 2022): ``<bos> a1 … ak <query>`` with k distinct random symbols; the
  answer is a1. A predictor that sees only the bag of symbols gets at most 1/k.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.models import boot_native
from ffnmem.methods.objectives import Objective, prepare


def position_probe_error(acts: Float[np.ndarray, "n_seq pos d_model"], *, folds: int = 5, alpha: float = 1.0,
                         seed: int = 0) -> dict:
    """Cross-validated MAE (positions) of a ridge probe for the token index, and the mean baseline."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold, cross_val_predict

    n, pos, d = acts.shape
    if n < folds:
        raise BadInput(f"position probe needs at least {folds} sequences, got {n}")
    X = acts.reshape(n * pos, d)
    y = np.tile(np.arange(pos, dtype=float), n)
    groups = np.repeat(np.arange(n), pos)
    pred = cross_val_predict(Ridge(alpha=alpha), X, y, groups=groups, cv=GroupKFold(n_splits=folds))
    return {"mae": float(np.abs(pred - y).mean()), "baseline_mae": float(np.abs(y - y.mean()).mean())}


@torch.inference_mode()
def probe_by_layer(wb, tokens: Tensor, *, folds: int = 5) -> list[dict]:
    """Position-probe error on ``resid_pre 0`` (embeddings) and every ``resid_post``; unpadded tokens."""
    names = [hook_name("resid_pre", 0)] + [hook_name("resid_post", l) for l in range(wb.n_layers)]
    _, cache = wb.bridge.run_with_cache(tokens.to(wb.device), names_filter=lambda n: n in names)
    return [{"layer": i, **position_probe_error(cache[n].float().cpu().numpy(), folds=folds)}
            for i, n in enumerate(names)]


def effective_rank(pattern: Float[Tensor, "*batch q k"]) -> Float[Tensor, "*batch"]:
    """exp(entropy of normalised singular values) of each matrix in ``pattern``."""
    s = torch.linalg.svdvals(pattern.double())
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-30)
    ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    return ent.exp().float()


@torch.inference_mode()
def attention_ranks(wb, tokens: Tensor) -> Float[Tensor, "n_layers n_heads"]:
    """Mean effective rank of each head's attention pattern over unpadded sequences ``tokens``."""
    names = [hook_name("pattern", l) for l in range(wb.n_layers)]
    _, cache = wb.bridge.run_with_cache(tokens.to(wb.device), names_filter=lambda n: n in names)
    return torch.stack([effective_rank(cache[n].float().cpu()).mean(0) for n in names])


@torch.inference_mode()
def permutation_gap(model: torch.nn.Module, tokens: Tensor, perm: Tensor) -> float:
    """max |f(x[perm]) − f(x)[perm]| over logits: 0 for a permutation-equivariant model."""
    out = model(tokens)
    out_p = model(tokens[:, perm])
    return float((out_p - out[:, perm]).abs().max())


def order_task(n_seq: int, k: int, n_symbols: int, seed: int) -> tuple[Tensor, Tensor]:
    """``[n_seq, k + 2]`` tokens ``<bos>=0 a1..ak <query>=1`` (symbols 2..) and answers a1."""
    if not 2 <= k < n_symbols:
        raise BadInput(f"order task needs 2 <= k < n_symbols, got k={k}, n_symbols={n_symbols}")
    g = torch.Generator().manual_seed(seed)
    syms = torch.stack([torch.randperm(n_symbols, generator=g)[:k] for _ in range(n_seq)]) + 2
    toks = torch.cat([torch.zeros(n_seq, 1, dtype=torch.long), syms, torch.ones(n_seq, 1, dtype=torch.long)], 1)
    return toks, syms[:, 0]


def train_order_model(kind: str, positions: bool, *, k: int = 4, n_symbols: int = 12, steps: int = 300,
                      d_model: int = 32, n_layers: int = 2, batch_size: int = 64, seed: int = 0) -> dict:
    """Train a tiny model on :func:`order_task` (loss at the query only); accuracy on fresh data.

    ``kind`` is ``causal`` or ``bidirectional``; ``positions=False`` zeroes and freezes the
    learned positional table. Returns train/test accuracy and the bag-of-words ceiling 1/k.
    """

    cfg = dict(n_layers=n_layers, d_model=d_model, n_heads=4, d_head=d_model // 4, d_mlp=4 * d_model,
               d_vocab=n_symbols + 2, n_ctx=k + 2, act_fn="gelu", normalization_type="LN",
               positional_embedding_type="standard", attention_dir=kind, seed=seed)
    wb = boot_native(cfg, None, torch.device("cpu"), torch.float32, model_id=f"order-{kind}")
    model = wb.bridge.original_model
    if not positions:
        prepare(model, Objective(kind="mlm", positions="none"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(steps):
        toks, ans = order_task(batch_size, k, n_symbols, seed * 100_003 + step)
        loss = torch.nn.functional.cross_entropy(model(toks)[:, -1], ans)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    toks, ans = order_task(2000, k, n_symbols, seed + 999_999_937)
    with torch.inference_mode():
        acc = float((model(toks)[:, -1].argmax(-1) == ans).float().mean())
    return {"kind": kind, "positions": positions, "accuracy": acc, "bag_of_words": 1.0 / k,
            "final_loss": loss.item()}
