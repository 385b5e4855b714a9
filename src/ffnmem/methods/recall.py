"""Recall of a fact set: top-1/top-k accuracy, answer probability, rank and loss in bits.

Scoring (chosen by the caller and recorded in the result):

* ``first_token``: the answer's first token at the last prompt position; ``p`` its probability,
  ``rank`` its rank among all tokens (0 = top-1).
* ``sequence``: the full answer teacher-forced; ``p = Π_j p(a_j | prompt, a_<j)``; top-1 means
  every answer token is the argmax (greedy decoding writes the answer); ``rank`` and top-k are
  those of the first token.

Loss in bits is ``-log2 p``. Prompts are batched by grouping equal token lengths (no padding), so
batched numbers equal one-by-one numbers up to float rounding.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from jaxtyping import Float
from torch import Tensor

from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import (
    EncodedFact,
    Fact,
    check_first_token,
    check_scoring,
    encode_facts,
)
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows


def score_answer(logprobs: Float[Tensor, "pos d_vocab"], prompt_len: int, answer: list[int],
                 scoring: str, k: int = 5) -> dict:
    """Score one answer from one sequence's log-probabilities (pure).

    ``logprobs[t]`` predicts token ``t + 1``; the prompt has ``prompt_len`` tokens (BOS included).
    """
    first = logprobs[prompt_len - 1]
    lp0 = first[answer[0]]
    rank = int((first > lp0).sum())
    if scoring == "first_token":
        logp, top1 = float(lp0), rank == 0
    else:
        steps = logprobs[prompt_len - 1: prompt_len - 1 + len(answer)]
        picked = steps[torch.arange(len(answer)), torch.tensor(answer)]
        logp = float(picked.sum())
        top1 = bool((steps.argmax(-1) == torch.tensor(answer)).all())
    return {"logp": logp, "p_answer": math.exp(logp), "loss_bits": -logp / math.log(2), "rank": rank,
            "top1": top1, f"top{k}": rank < k, "predicted_id": int(first.argmax())}


def group_by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of equal length (order within a length kept)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(lengths):
        groups[n].append(i)
    return [idx[s: s + batch_size] for n in sorted(groups) for idx in [groups[n]]
            for s in range(0, len(idx), batch_size)]


def _inputs(enc: EncodedFact, scoring: str) -> list[int]:
    return enc.prompt_ids + (enc.answer_ids[:-1] if scoring == "sequence" else [])


@torch.inference_mode()
def score_encoded(wb: Workbench, encoded: list[EncodedFact], *, scoring: str = "first_token", k: int = 5,
                  batch_size: int = 16, progress: bool = False) -> list[dict]:
    """Score every encoded fact (batched by token length); one dict per fact, in input order."""
    check_scoring(scoring)
    if scoring == "first_token":
        for e in encoded:
            check_first_token(wb, e)
    inputs = [_inputs(e, scoring) for e in encoded]
    out: list[dict | None] = [None] * len(encoded)
    batches = group_by_length([len(x) for x in inputs], batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="recall", unit="batch")
    for idx in batches:
        tokens = torch.tensor([inputs[i] for i in idx], device=wb.device)
        logprobs = wb.bridge(tokens).float().log_softmax(-1).cpu()
        for row, i in enumerate(idx):
            out[i] = score_answer(logprobs[row], len(encoded[i].prompt_ids), encoded[i].answer_ids, scoring, k)
    return out  # type: ignore[return-value]


def recall(wb: Workbench, facts: list[Fact], *, scoring: str = "first_token", k: int = 5,
           batch_size: int = 16, progress: bool = False) -> Result:
    """Recall of ``facts``: a ``facts`` table (one row per fact) and a ``relations`` summary."""
    encoded = encode_facts(wb, facts)
    scores = score_encoded(wb, encoded, scoring=scoring, k=k, batch_size=batch_size, progress=progress)
    rows = []
    for e, s in zip(encoded, scores):
        f = e.fact
        rows.append({"relation": f.relation, "subject": f.subject, "prompt": f.prompt, "target": f.target,
                     "predicted": wb.decode(s["predicted_id"]), "n_answer_tokens": len(e.answer_ids),
                     **{key: v for key, v in s.items() if key != "predicted_id"}})
    return Result(kind="recall", tables={"facts": table_from_rows(rows), "relations": table_from_rows(summarise(rows, k))},
                  meta={"scoring": scoring, "k": k, "n_facts": len(rows)},
                  provenance=make_provenance(wb, data_hash=facts_hash(facts)))


def summarise(rows: list[dict], k: int) -> list[dict]:
    """Per-relation means (plus an ``ALL`` row): accuracy, top-k, p, median rank, loss in bits."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["relation"]].append(r)
    by["ALL"] = rows
    out = []
    for rel, rs in by.items():
        ranks = sorted(r["rank"] for r in rs)
        out.append({"relation": rel, "n": len(rs), "top1": sum(r["top1"] for r in rs) / len(rs),
                    f"top{k}": sum(r[f"top{k}"] for r in rs) / len(rs),
                    "p_answer": sum(r["p_answer"] for r in rs) / len(rs), "median_rank": ranks[len(ranks) // 2],
                    "loss_bits": sum(r["loss_bits"] for r in rs) / len(rs)})
    return out
