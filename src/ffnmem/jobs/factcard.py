"""The fact card of any prompt: where the model keeps one fact, by every method, validated.

``fact_card(wb, prompt, answer, subject=...)`` traces the fact (ROME), ranks FFN memories with each
localization method for the answer's margin (:func:`ffnmem.methods.localize.locate`), validates each
method's top ``k`` by ablation against random matched sets, same- and other-relation facts and the
fact's held-out paraphrase (:func:`ffnmem.methods.validation.validate`), and reads each memory's
value vector in vocabulary space. The relation's other answers (the margin's alternatives) and the
collateral facts come from a pool of facts (default: every shipped fact): a prompt that is a shipped
fact's prompt takes that fact's relation and paraphrases; otherwise give ``relation`` (a shipped
relation) or ``alternatives`` (answer strings). Returns the card (:class:`ffnmem.viz.factcard.FactCard`)
and a ``fact_card`` Result with the tables behind it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ffnmem.core.errors import BadInput
from ffnmem.core.hooks import hook_name
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact, encode_facts, load_facts
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.methods.localize import METHODS, OPTIONS, held_out, locate, top_cells
from ffnmem.methods.targets import alternatives as relation_alternatives
from ffnmem.methods.tracing import noise_sigma, scaled_window, trace
from ffnmem.methods.validation import validate
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import png_bytes
from ffnmem.viz.factcard import FactCard
from ffnmem.viz.figures import close
from ffnmem.viz.tracing import plot_trace

log = logging.getLogger(__name__)
CARD_METHODS = ("dla", "attribution_patching", "activation_patching", "knowledge_neurons", "peak_neurons")


def the_fact(prompt: str, answer: str, *, subject: str | None, relation: str | None, pool: list[Fact]) -> Fact:
    """The fact to card: a pool fact with this prompt (its relation, paraphrases), else a new one."""
    target = answer if answer.startswith(" ") else " " + answer
    match = [f for f in pool if f.prompt == prompt and (relation is None or f.relation == relation)]
    if match and match[0].target == target and (subject is None or subject == match[0].subject):
        return match[0]
    if subject is None:
        raise BadInput(f"prompt {prompt!r} is not a shipped fact's: give --subject (the words the prompt is about)")
    return Fact(subject=subject, relation=relation or (match[0].relation if match else "custom"), prompt=prompt,
                target=target, where="the command line")


def collateral_pool(pool: list[Fact], fact: Fact, *, n_other: int = 40, seed: int = 0) -> list[Fact]:
    """The facts a card validates against: every other fact of the fact's relation (they also give the
    margin's alternatives) and a seeded sample of ``n_other`` facts of other relations (collateral
    only: scoring all shipped facts would cost a forward pass each)."""
    import random

    others = [f for f in pool if (f.subject, f.relation) != (fact.subject, fact.relation)]
    same = [f for f in others if f.relation == fact.relation]
    rest = [f for f in others if f.relation != fact.relation]
    return same + random.Random(seed).sample(rest, min(n_other, len(rest)))


def fact_card(wb: Workbench, prompt: str, answer: str, *, subject: str | None = None, relation: str | None = None,
              alternatives: list[str] | None = None, pool: list[Fact] | None = None,
              methods: tuple[str, ...] = CARD_METHODS, k: int = 10, modes: tuple[str, ...] = ("zero",),
              n_collateral: int = 5, n_random: int = 3, seed: int = 0,
              trace_kinds: tuple[str, ...] = ("mlp_w1", "mlp", "attn", "resid")) -> tuple[FactCard, Result]:
    """Build the card; see the module docstring. ``k``: memories shown and validated per method."""
    unknown = [m for m in methods if m not in METHODS or m == "tracing"]
    if unknown:
        raise BadInput(f"unknown card method {unknown[0]!r}; choose from {', '.join(CARD_METHODS)}")
    pool = load_facts("all") if pool is None else pool
    fact = the_fact(prompt, answer, subject=subject, relation=relation, pool=pool)
    others = collateral_pool(pool, fact, seed=seed)
    enc = encode_facts(wb, [fact, *others])
    answer_id = enc[0].answer_ids[0]
    if alternatives:
        alt0 = list(dict.fromkeys(wb.encode(a if a.startswith(" ") else " " + a, prepend_bos=False)[0]
                                  for a in alternatives))
        alt0 = [a for a in alt0 if a != answer_id]
    elif fact.relation in {f.relation for f in others}:
        alt0 = relation_alternatives(enc)[0]
    else:
        raise BadInput(f"relation {fact.relation!r} has no answer set in the fact pool: give --relation "
                       "(a shipped relation) or --alternative answers for the margin")
    if not alt0:
        raise BadInput("the margin needs at least one alternative answer other than the fact's own")
    alts = [alt0, *relation_alternatives(enc[1:])] if len(enc) > 1 else [alt0]

    tokens = wb.to_tokens(prompt)
    with torch.inference_mode():
        logits, cache = wb.bridge.run_with_cache(tokens, names_filter=lambda n: n.endswith("mlp.hook_post"))
    last = logits[0, -1].float()
    info = {"prompt": prompt, "target": fact.target, "subject": fact.subject, "relation": fact.relation,
            "predicted": wb.decode([int(last.argmax())]), "p_answer": float(last.softmax(-1)[answer_id]),
            "margin": float(last[answer_id] - last[alt0].mean()),
            "alternatives": [wb.decode([a]) for a in alt0], "paraphrases": list(fact.paraphrases)}
    notes = []
    if info["margin"] <= 0:
        notes.append("The model does not prefer this answer over its alternatives (margin ≤ 0): relative "
                     "drops are not defined, so the memories are shown without validation.")

    sigma = noise_sigma(wb, [tokens], [enc[0].subject])
    t = trace(wb, prompt, answer_id, enc[0].subject, kinds=trace_kinds, window=scaled_window(wb.n_layers),
              seed=seed, sigma=sigma)
    fig = plot_trace(t)
    trace_png = png_bytes(fig, dpi=80)
    close(fig)
    cells = [{"layer": l, "position": p, "token": t.tokens[p], "effect": e}
             for l, p, e in top_cells(t.effects["mlp_w1" if "mlp_w1" in t.effects else trace_kinds[0]], 5)]

    memories, validation, memory_rows, val_rows = {}, {}, [], []
    ranked_all = {}
    for method in methods:
        opts = {"sigma": sigma} if "sigma" in OPTIONS[method] else {}  # the trace's noise level
        loc = locate(wb, enc[:1], method, k=k, alternatives=[alt0], seed=seed, **opts)[0]
        rows = []
        for r, (l, n, s) in enumerate(loc.memories):
            sign = 1.0 if float(cache[hook_name("post", l)][0, -1, n]) >= 0 else -1.0
            proj = value_tokens(wb, l, [n], k=6, signs=torch.tensor([sign]))
            rows.append({"method": method, "rank": r, "layer": l, "neuron": n, "score": s,
                         "coefficient": float(cache[hook_name("post", l)][0, -1, n]),
                         "promotes": [wb.decode([i]) for i in proj.top_ids[0].tolist()]})
        memories[method], memory_rows = rows, memory_rows + rows
        ranked_all[method] = [(l, n) for l, n, _ in loc.memories]
    if info["margin"] > 0:
        held = [[held_out(fact)] if held_out(fact) else [], *[[] for _ in enc[1:]]]
        for method, ranked in ranked_all.items():
            if len(ranked) < k:
                continue
            rows = validate(wb, enc, [ranked, *[[] for _ in enc[1:]]], k=k, modes=modes, alternatives=alts,
                            n_random=n_random, n_collateral=n_collateral, ks=tuple(x for x in (1, 2, 4, 8, 16, 32, 64) if x <= k),
                            seed=seed, heldout_prompts=held, only=[0])
            validation[method] = rows
            val_rows += [{"method": method, **r} for r in rows]
    card = FactCard(model_id=wb.model_id, fact=info, memories=memories, validation=validation, cells=cells,
                    trace_png=trace_png, notes=notes)
    result = Result(kind="fact_card", tables={"fact": table_from_rows([{**info, "alternatives": ", ".join(info["alternatives"]),
                                                                       "paraphrases": " | ".join(info["paraphrases"])}]),
                                              "memories": table_from_rows(memory_rows),
                                              "validation": table_from_rows(val_rows), "cells": table_from_rows(cells)},
                    tensors={f"trace/{kind}": e for kind, e in t.effects.items()},
                    meta={"methods": list(methods), "k": k, "modes": list(modes), "sigma": sigma,
                          # what re-draws the heatmaps from the trace/ tensors (ffnmem browse)
                          "trace": {"tokens": t.tokens, "subject": list(t.subject), "p_clean": t.p_clean,
                                    "p_corrupt": t.p_corrupt, "window": t.window}},
                    provenance=make_provenance(wb, data_hash=facts_hash([fact]), seed=seed,
                                               params={"k": k, "methods": list(methods), "modes": list(modes)}))
    return card, result


def write(card: FactCard, result: Result, out_dir: str | Path) -> Path:
    """``card.html`` and ``result/`` under ``out_dir``; returns the card's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "result")
    return card.save(out / "card.html")
