"""Per-variant analyses of the architecture comparison (issue 17, item 3), on one trained model and
the same variant at its initial weights (the control):

* **Position probe** (:func:`position_probe`), after Haviv et al. (2022, "Transformer language
  models without positional encodings still learn positional information", §5: a probe per layer
  predicting each token's absolute position). Here the probes are linear, from the (standardised)
  residual stream at one depth, cross-validated with folds grouped by sequence: a least-squares
  classifier over the positions (held-out accuracy; a learned positional table is a set of
  arbitrary vectors, which a classifier reads and a regression onto the index may not) and a ridge
  regression onto the index (held-out R², mean absolute error). The **null** is the same probe fitted to labels permuted over all
  tokens; the **control** is the same variant at its initial weights. Two inputs: ``documents``
  (the variant's own training documents: those at least as long as the median of the first
  ``probe_docs``, cut to it, so every row is unpadded; in distribution, but the
  fixed templates put the same words at the same places, so token identity alone predicts
  position; depth 0 of a NoPE model is that token-identity baseline) and ``random`` (the same
  shape, every token after BOS drawn uniformly from the tokens of those documents: token identity
  says nothing about position, so whatever a NoPE model decodes there comes from its attention).
  A bidirectional NoPE model is permutation-equivariant, so on ``random`` its probe is at the null
  by construction; a causal one can count its predecessors (BOS's share of a uniform attention is
  1/(i+1)), Haviv et al.'s conjecture.
* **Attention rank** (:func:`attention_rank`): per layer and head, the effective rank of the
  attention pattern (Roy & Vetterli 2007: ``exp(H(s / Σ s))`` of its singular values; the
  definition of :func:`ffnmem.methods.positions.effective_rank`), the mean over the probe
  documents, trained and at init. A causal pattern is lower-triangular with a positive diagonal,
  so it always has full numerical rank; the effective rank says how spread its spectrum is.
* **Direct effect by layer** (:func:`dla_by_layer`): each layer's attention and FFN share of the
  answer's direct logit attribution (``|effect| / Σ |effects|``, :func:`ffnmem.methods.frequency.dla_rows`)
  on the most-exposed trained facts' query prompts; for the encoder-decoder the encoder's layers
  through the cross-attention's value path (:mod:`ffnmem.methods.encdec`). DLA reads the last
  position, so the masked LM is read at its open query ``prompt <mask>``.

Depth ``0`` is the input to the first block (tokens plus positions), depth ``l`` the residual after
block ``l − 1``; the encoder-decoder is probed on its encoder over its prompts (``BOS prompt``, the
sentence prompts of the first ``probe_docs`` documents, cut in the same way).
The prefix LM is run with the whole row as its prefix (bidirectional), as it is queried.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.data.synthetic import FactCorpus
from ffnmem.methods import encdec
from ffnmem.methods.capacity import knowledge_bits, param_counts
from ffnmem.methods.frequency import dla_rows
from ffnmem.methods.objectives import Objective
from ffnmem.methods.packing import encode_documents, sentence_pairs
from ffnmem.methods.positions import effective_rank

PROBE_INPUTS = ("documents", "random")


def position_probe(acts: Float[np.ndarray, "n_seq pos d_model"], *, folds: int = 5, alpha: float = 1.0,
                   seed: int = 0) -> dict:
    """Two linear probes for the token index at positions 1..L−1 (BOS, always at 0, is left out: its
    token alone gives its position), on standardised features, folds grouped by sequence: a ridge
    regression (held-out ``r2``, ``mae`` in positions) and a least-squares classifier over the
    positions (held-out ``accuracy``; ``chance`` = 1 / (L − 1)). ``null_*``: the same probes fitted
    and scored on labels permuted over all tokens."""
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, pos, d = acts.shape
    if n < folds:
        raise BadInput(f"position probe needs at least {folds} sequences, got {n}")
    if pos < 3:
        raise BadInput("position probe needs sequences of at least 3 tokens (BOS and two positions)")
    X = acts[:, 1:].reshape(n * (pos - 1), d).astype(np.float64)
    y = np.tile(np.arange(1, pos), n)
    groups = np.repeat(np.arange(n), pos - 1)
    cv = GroupKFold(n_splits=folds)
    out = {"positions": pos - 1, "chance": 1.0 / (pos - 1)}
    for prefix, target in (("", y), ("null_", np.random.default_rng(seed).permutation(y))):
        pred = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=alpha)), X, target.astype(float),
                                 groups=groups, cv=cv)
        out[f"{prefix}r2"] = float(1.0 - ((pred - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())
        out[f"{prefix}mae"] = float(np.abs(pred - target).mean())
        cls = cross_val_predict(make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha)), X, target,
                                groups=groups, cv=cv)
        out[f"{prefix}accuracy"] = float((cls == target).mean())
    return out


def probe_inputs(wb, corpus: FactCorpus, obj: Objective, n_docs: int, n_ctx: int, seed: int) -> dict[str, Tensor]:
    """``{"documents", "random"}`` → ``[n, L]`` unpadded token rows (module docstring)."""
    if obj.kind == "encdec":
        rows, _ = sentence_pairs(wb.tokenizer, corpus.documents[:n_docs])
        length = int(np.median([len(r) for r in rows]))  # prompts are short: the shortest leaves ~3 positions
        docs = torch.tensor([r[:length] for r in rows if len(r) >= length])
    else:
        rows = [r for r in encode_documents(wb.tokenizer, corpus.documents[:n_docs], n_ctx).tolist()]
        rows = [r[: r.index(wb.tokenizer.pad_token_id)] if wb.tokenizer.pad_token_id in r else r for r in rows]
        length = int(np.median([len(r) for r in rows]))
        docs = torch.tensor([r[:length] for r in rows if len(r) >= length])
    if docs.shape[0] < 2 or docs.shape[1] < 2:
        raise BadInput(f"too few probe rows ({docs.shape[0]} of {docs.shape[1]} tokens); raise probe_docs")
    vocab = torch.unique(docs[:, 1:])
    gen = torch.Generator().manual_seed(seed)
    rand = docs.clone()
    rand[:, 1:] = vocab[torch.randint(len(vocab), rand[:, 1:].shape, generator=gen)]
    return {"documents": docs, "random": rand}


@torch.inference_mode()
def residuals(wb, obj: Objective, tokens: Tensor) -> tuple[list[np.ndarray], list[Tensor]]:
    """The residual stream at every depth ``[n, pos, d]`` and each layer's attention pattern
    ``[n, heads, pos, pos]`` over unpadded ``tokens`` (the encoder's, for the encoder-decoder)."""
    tokens = tokens.to(wb.device)
    if obj.kind == "encdec":
        model = wb.bridge.original_model
        n = model.cfg.n_enc
        names = (["encoder.blocks.0.hook_resid_pre"] + [f"encoder.blocks.{l}.hook_resid_post" for l in range(n)]
                 + [f"encoder.blocks.{l}.attn.hook_pattern" for l in range(n)])
        bos = torch.full((tokens.shape[0], 1), model.cfg.bos_id, device=wb.device)
        _, cache = model.run_with_cache(tokens, bos, names_filter=lambda x: x in names)
    else:
        n = wb.n_layers
        names = ([hook_name("resid_pre", 0)] + [hook_name("resid_post", l) for l in range(n)]
                 + [hook_name("pattern", l) for l in range(n)])
        _, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda x: x in names)
    return ([cache[x].float().cpu().numpy() for x in names[: n + 1]],
            [cache[x].float().cpu() for x in names[n + 1:]])


def attention_rank(patterns: list[Tensor]) -> list[dict]:
    """Per layer and head: mean effective rank over sequences, and the sequence length (its maximum)."""
    return [{"layer": layer, "head": h, "erank": float(r), "max_rank": int(p.shape[-1])}
            for layer, p in enumerate(patterns) for h, r in enumerate(effective_rank(p).mean(0))]


def top_queries(corpus: FactCorpus, n_facts: int) -> list[dict]:
    """The ``n_facts`` most-exposed trained facts' corpus-template queries."""
    return sorted([q for q in corpus.queries if not q["heldout"]], key=lambda q: -q["exposures"])[:n_facts]


def dla_by_layer(wb, corpus: FactCorpus, obj: Objective, n_facts: int) -> list[dict]:
    """Per stack, layer and component (``attention`` / ``ffn``): mean share of the answer's direct
    effect (shares sum to 1 over all rows of a variant) and mean signed effect (logits)."""
    qs = top_queries(corpus, n_facts)
    if obj.kind == "encdec":
        rows = encdec.dla_rows(wb, qs)
        cfg = wb.bridge.original_model.cfg
        parts = [("encoder", "attention", "enc_attn", cfg.n_enc), ("encoder", "ffn", "enc_ffn", cfg.n_enc),
                 ("decoder", "attention", "dec_self", cfg.n_dec), ("decoder", "ffn", "dec_ffn", cfg.n_dec)]
    else:
        rows = dla_rows(wb, qs, suffix=" <mask>" if obj.kind == "mlm" else "")
        parts = [("decoder", "attention", "attn", wb.n_layers), ("decoder", "ffn", "ffn", wb.n_layers)]
    return [{"stack": stack, "layer": layer, "component": comp, "n_facts": len(rows),
             "share": float(np.mean([r[f"{key}_share_L{layer}"] for r in rows])),
             "effect": float(np.mean([r[f"{key}_L{layer}"] for r in rows]))}
            for stack, comp, key, n in parts for layer in range(n)]


def capacity(wb, rows: list[dict], corpus: FactCorpus) -> dict:
    """Bits stored by :func:`ffnmem.methods.capacity.knowledge_bits` (unclipped, noise-aware
    ceiling) per non-embedding and per total parameter (:func:`~ffnmem.methods.capacity.param_counts`)."""
    kb = {k: v for k, v in knowledge_bits(rows, corpus.values, corpus.config.value_noise).items() if k != "per_fact_bits"}
    pc = param_counts(wb)
    return {**kb, **pc, "bits_per_param": kb["bits"] / pc["params_non_embedding"],
            "bits_per_param_all": kb["bits"] / pc["params_all"],
            "fraction_of_ceiling": kb["bits"] / kb["ceiling"] if kb["ceiling"] > 0 else math.nan}


def analyse(wb, init_wb, corpus: FactCorpus, obj: Objective, *, probe_docs: int = 40, dla_facts: int = 32,
            n_ctx: int, seed: int = 0) -> dict[str, list[dict]]:
    """``position_probe``, ``attention_rank`` (both with ``model`` = trained / init) and
    ``dla_by_layer`` (trained) of one variant; ``corpus`` is the one the variant trained on."""
    inputs = probe_inputs(wb, corpus, obj, probe_docs, n_ctx, seed)
    out = {"position_probe": [], "attention_rank": [], "dla_by_layer": dla_by_layer(wb, corpus, obj, dla_facts)}
    for model, w in (("trained", wb), ("init", init_wb)):
        for name, toks in inputs.items():
            acts, patterns = residuals(w, obj, toks)
            out["position_probe"] += [{"model": model, "inputs": name, "depth": depth, **position_probe(a, seed=seed)}
                                      for depth, a in enumerate(acts)]
            if name == "documents":
                out["attention_rank"] += [{"model": model, **r} for r in attention_rank(patterns)]
    return out
