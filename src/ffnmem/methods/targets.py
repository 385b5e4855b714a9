"""Contrastive targets: a fact's answer against the other answers its relation can take.

A raw logit or probability rewards anything that says "a city comes next"; the *margin* of the
answer over same-type alternatives cancels that out:

    margin = logit(answer) − mean logit(alternatives)

The alternatives of a fact are the first tokens of the other answers in its relation's answer set
(every capital in the fact set, every currency, ...), so a template or relation neuron that raises
all capitals alike contributes nothing. :class:`ffnmem.methods.interventions.Margin` is the metric,
:func:`ffnmem.methods.attribution.answer_directions` with a list of tokens per prompt the direct-
effect direction; this module builds the answer sets (pure: token ids in, token ids out).
"""

from __future__ import annotations

from collections.abc import Sequence

from ffnmem.core.errors import BadInput
from ffnmem.data.facts import EncodedFact


def relation_answers(encoded: Sequence[EncodedFact]) -> dict[str, list[int]]:
    """Each relation's answer set: the distinct first tokens of its facts' answers, in file order."""
    out: dict[str, list[int]] = {}
    for e in encoded:
        ids = out.setdefault(e.fact.relation, [])
        if e.answer_ids[0] not in ids:
            ids.append(e.answer_ids[0])
    return out


def alternatives(encoded: Sequence[EncodedFact]) -> list[list[int]]:
    """Per fact, the first tokens of the *other* answers of its relation (its answer left out).

    A relation whose facts all share one answer token has no alternatives in the set; the fact's own
    ``distractors`` are used then, and a fact with neither is an error naming it.
    """
    sets = relation_answers(encoded)
    out = []
    for e in encoded:
        alts = [t for t in sets[e.fact.relation] if t != e.answer_ids[0]]
        if not alts:
            alts = list(dict.fromkeys(d[0] for d in e.distractor_ids if d and d[0] != e.answer_ids[0]))
        if not alts:
            raise BadInput(f"{e.fact.where}: relation {e.fact.relation!r} has no other answer in the fact set and "
                           "the fact lists no distractors; a margin needs at least one alternative")
        out.append(alts)
    return out
