"""Recall against exposure: what a trained model keeps of each fact, in bits.

For a query prompt whose next token is an attribute value, with model distribution q over the
vocabulary and the corpus' exact conditional distribution p over the value set
(``p(v) = (1 − ε)[v = v*] + ε/|V|``, see :mod:`ffnmem.data.synthetic`):

* loss in bits on the true value: ``−log2 q(v*)``; accuracy: ``argmax q == v*``;
* cross-entropy ``CE = −Σ_v p(v) log2 q(v) = H(p) + KL(p ‖ q)`` — H exact, so the KL gap is exact
  and never negative;
* knowledge capacity (Allen-Zhu & Li 2024): ``Σ_facts max(0, log2|V| − loss bits) / n_params``;
  per fact, unclipped, in :func:`fact_bits` (the claims' estimator: clipping at 0 inflates the sum).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import noisy_entropy_bits
from ffnmem.methods.attribution import direct_effects
from ffnmem.methods.objectives import query_batch, query_logits
from ffnmem.stats import bootstrap_ci, logistic_fit, spearman

LN2 = math.log(2)


@torch.inference_mode()
def score_queries(wb, queries: list[dict], *, value_sets: dict[str, list[str]] | None = None,
                  value_noise: float = 0.0, heldout: bool | None = False, batch_size: int = 256,
                  objective=None) -> list[dict]:
    """One row per query: loss_bits, correct, p_true, ce_bits, h_bits, kl_bits, exposures, ``answer``
    and ``prediction`` (the top-1 token, decoded); with ``value_sets`` also ``value_prediction`` (the
    attribute's value the model ranks highest: what it answers when forced to name a value).

    ``heldout``: False = corpus templates only, True = held-out templates only, None = all.
    ``value_sets`` (attribute -> values) gives the support of p; without it p is a point mass.
    ``objective`` (:class:`ffnmem.methods.objectives.Objective`) sets the attention mask and, for a masked
    LM, reads a ``<mask>`` appended to the prompt so every variant answers the same query; an
    encoder-decoder reads the prompt in its encoder and scores the value at decoder position 0.
    """

    qs = [q for q in queries if heldout is None or bool(q["heldout"]) == heldout]
    if not qs:
        raise BadInput("no query prompts to score (check the heldout filter and the fact corpus)")
    rows = [wb.encode(q["prompt"]) for q in qs]
    answers = [wb.answer_token(q["answer"]) for q in qs]
    ids = None if value_sets is None else {a: torch.tensor([wb.answer_token(v) for v in vals])
                                           for a, vals in value_sets.items()}
    support = ids if value_noise > 0 else None
    suffix = wb.encode(objective.mask_suffix, prepend_bos=False) if getattr(objective, "mask_suffix", "") else []
    out = []
    for start in range(0, len(qs), batch_size):
        chunk = rows[start: start + batch_size]
        toks, last, mask = query_batch(objective, chunk, wb.tokenizer.pad_token_id or 0, wb.tokenizer.mask_token_id,
                                       suffix)
        wb.check_length(toks.shape[1], what="a query prompt")
        logits = query_logits(wb.bridge.original_model, objective, toks.to(wb.device),
                              None if mask is None else mask.to(wb.device), wb.tokenizer.bos_token_id)
        logits = logits[torch.arange(len(chunk)), last.to(wb.device)]
        logq = torch.log_softmax(logits.float(), -1).cpu() / LN2  # log2 q
        top = wb.tokenizer.batch_decode(logq.argmax(-1, keepdim=True).tolist())
        for i, q in enumerate(qs[start: start + batch_size]):
            row = _row(q, logq[i], answers[start + i], support, value_noise)
            row["answer"], row["prediction"] = q["answer"], top[i].strip()
            if ids is not None:
                row["value_prediction"] = value_sets[q["attribute"]][int(logq[i][ids[q["attribute"]]].argmax())]
            out.append(row)
    return out


def _row(q: dict, log2q: torch.Tensor, answer: int, support: dict | None, eps: float) -> dict:
    loss = -float(log2q[answer])
    if support is not None:
        ids = support[q["attribute"]]
        n = len(ids)
        p = torch.full((n,), eps / n)
        p[(ids == answer).nonzero()[0]] += 1 - eps
        ce = -float((p * log2q[ids]).sum())
        h = noisy_entropy_bits(eps, n)
    else:
        ce, h = loss, 0.0
    return {"entity": q["entity"], "attribute": q["attribute"], "exposures": int(q["exposures"]),
            "heldout": bool(q["heldout"]), "loss_bits": loss, "p_true": 2.0 ** -loss,
            "correct": bool(int(log2q.argmax()) == answer), "ce_bits": ce, "h_bits": h, "kl_bits": ce - h}


def summarize(rows: list[dict]) -> dict:
    """Mean loss/CE/H/KL bits, accuracy and the smallest KL over the scored queries."""
    arr = {k: np.array([r[k] for r in rows], dtype=float) for k in ("loss_bits", "ce_bits", "h_bits", "kl_bits", "correct")}
    return {"loss_bits": float(arr["loss_bits"].mean()), "ce_bits": float(arr["ce_bits"].mean()),
            "h_bits": float(arr["h_bits"].mean()), "kl_bits": float(arr["kl_bits"].mean()),
            "min_kl_bits": float(arr["kl_bits"].min()), "accuracy": float(arr["correct"].mean())}


def by_exposure(rows: list[dict], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Per exposure count: n, accuracy and loss bits with percentile bootstrap CIs (seeded)."""
    rng = np.random.default_rng(seed)
    exp = np.array([r["exposures"] for r in rows])
    acc = np.array([r["correct"] for r in rows], dtype=float)
    loss = np.array([r["loss_bits"] for r in rows])
    out = []
    for e in np.unique(exp):
        m = exp == e
        boots = rng.integers(0, m.sum(), size=(n_boot, m.sum()))
        a_lo, a_hi = bootstrap_ci(acc[m], boots, level)
        l_lo, l_hi = bootstrap_ci(loss[m], boots, level)
        out.append({"exposures": int(e), "n": int(m.sum()), "accuracy": float(acc[m].mean()),
                    "accuracy_lo": a_lo, "accuracy_hi": a_hi,
                    "loss_bits": float(loss[m].mean()), "loss_lo": l_lo, "loss_hi": l_hi})
    return out


def spearman_over_bins(bins: list[dict], key: str = "accuracy") -> float:
    """Spearman correlation between exposure and ``key`` across bins (nan if constant)."""
    if len(bins) < 2:
        raise BadInput("need at least two exposure bins for a rank correlation")
    return spearman([b["exposures"] for b in bins], [b[key] for b in bins])


def recall_curve(rows: list[dict], *, n_boot: int = 500, seed: int = 0, level: float = 0.95,
                 grid: int = 50) -> dict:
    """Logistic fit of correctness vs log2(exposures), with a bootstrap band over facts.

    Returns ``intercept``, ``slope`` (per doubling of exposure) with CIs, and ``x``/``y``/``lo``/``hi``
    (the fitted curve and its band on a grid of exposures).
    """
    x = np.log2(np.array([r["exposures"] for r in rows], dtype=float))
    y = np.array([r["correct"] for r in rows], dtype=float)
    w = logistic_fit(x, y)
    rng = np.random.default_rng(seed)
    xs = np.linspace(x.min(), x.max(), grid)
    boots = np.array([logistic_fit(x[i], y[i]) for i in rng.integers(0, len(x), size=(n_boot, len(x)))])
    curves = 1 / (1 + np.exp(-(boots[:, :1] + boots[:, 1:] * xs[None])))
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {"intercept": float(w[0]), "slope": float(w[1]),
            "slope_lo": float(np.percentile(boots[:, 1], lo_q)), "slope_hi": float(np.percentile(boots[:, 1], hi_q)),
            "x": (2 ** xs).tolist(), "y": (1 / (1 + np.exp(-(w[0] + w[1] * xs)))).tolist(),
            "lo": np.percentile(curves, lo_q, 0).tolist(), "hi": np.percentile(curves, hi_q, 0).tolist()}


def capacity_bits(rows: list[dict], n_values: int, n_params: int) -> dict:
    """Knowledge stored: Σ max(0, log2|V| − loss bits) over facts, and per parameter; also the sum
    without clipping (``bits_unclipped``), which a fact the model does not know cannot inflate."""
    if n_params < 1:
        raise BadInput("n_params must be positive")
    bits = float(sum(max(0.0, math.log2(n_values) - r["loss_bits"]) for r in rows))
    return {"bits": bits, "n_params": int(n_params), "bits_per_param": bits / n_params,
            "bits_unclipped": float(sum(math.log2(n_values) - r["loss_bits"] for r in rows)),
            "max_bits": len(rows) * math.log2(n_values)}


def fact_bits(rows: list[dict], value_sets: dict[str, list[str]], arm: str) -> list[dict]:
    """Per scored query: bits stored ``log2|V_attribute| − loss bits``, unclipped (a fact the model
    does not know counts negative, so an unknown fact's expected bits are at most 0), tagged ``arm``."""
    return [{"arm": arm, "entity": r["entity"], "attribute": r["attribute"], "exposures": r["exposures"],
             "n_values": len(value_sets[r["attribute"]]), "loss_bits": r["loss_bits"], "correct": r["correct"],
             "bits": math.log2(len(value_sets[r["attribute"]])) - r["loss_bits"]} for r in rows]


def dla_rows(wb, queries: list[dict], *, contrast: dict[str, list[str]] | None = None,
             suffix: str = "", progress: bool = False) -> list[dict]:
    """Direct logit attribution toward each query's answer (:func:`ffnmem.methods.attribution.direct_effects`).

    With ``contrast`` (attribute -> its values) the target is the answer's logit minus the mean logit
    of the attribute's other values: the margin that picks this value over the rest of its type,
    without the part that only says "an attribute value comes next". Per query: ``logit`` (that
    target), ``ffn`` and ``attn`` (summed over layers; ``b_out``/``b_O`` included), ``rest``
    (embeddings and unembedding bias: ``logit − ffn − attn``), ``ffn_share`` = Σ|FFN_l| / Σ(|FFN_l| +
    |attn_l|), and per layer ``ffn_L{l}`` / ``attn_L{l}`` with their shares ``ffn_share_L{l}`` /
    ``attn_share_L{l}`` of that same total.
    """

    if not queries:
        raise BadInput("no query prompts to attribute")
    answers = [wb.answer_token(q["answer"]) for q in queries]
    others = None
    if contrast is not None:
        ids = {a: [wb.answer_token(v) for v in vals] for a, vals in contrast.items()}
        others = [[t for t in ids[q["attribute"]] if t != ans] for q, ans in zip(queries, answers)]
    de = direct_effects(wb, [q["prompt"] + suffix for q in queries], answers, others, progress=progress)
    total = (de.mlp.abs().sum(1) + de.attn.abs().sum(1)).clamp_min(1e-12)
    rows = []
    for i, q in enumerate(queries):
        ffn, attn, logit = float(de.mlp[i].sum()), float(de.attn[i].sum()), float(de.logit[i])
        row = {"entity": q["entity"], "attribute": q["attribute"], "exposures": int(q["exposures"]),
               "correct": int(de.top_pred[i]) == answers[i], "logit": logit, "ffn": ffn, "attn": attn,
               "rest": logit - ffn - attn, "ffn_share": float(de.mlp[i].abs().sum() / total[i])}
        for kind, effects in (("ffn", de.mlp), ("attn", de.attn)):
            for layer in range(effects.shape[1]):
                row[f"{kind}_L{layer}"] = float(effects[i, layer])
                row[f"{kind}_share_L{layer}"] = float(effects[i, layer].abs() / total[i])
        rows.append(row)
    return rows


def dla_by_exposure(rows: list[dict], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Per exposure count: mean attribution (every numeric column of :func:`dla_rows`), with a
    bootstrap CI on the FFN share and on the logit margin."""
    rng = np.random.default_rng(seed)
    exp = np.array([r["exposures"] for r in rows])
    keys = [k for k, v in rows[0].items() if isinstance(v, (bool, int, float)) and k != "exposures"]
    cols = {k: np.array([r[k] for r in rows], dtype=float) for k in keys}
    out = []
    for e in np.unique(exp):
        m = exp == e
        boots = rng.integers(0, m.sum(), size=(n_boot, m.sum()))
        row = {"exposures": int(e), "n": int(m.sum()), **{k: float(v[m].mean()) for k, v in cols.items()}}
        for k in ("ffn_share", "logit"):
            row[f"{k}_lo"], row[f"{k}_hi"] = bootstrap_ci(cols[k][m], boots, level)
        out.append(row)
    return out
