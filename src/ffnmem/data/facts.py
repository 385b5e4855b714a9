"""Fact sets: subject–relation–object prompts read from JSONL, validated, tokenised.

One fact per line::

    {"subject": "France", "relation": "capital_of", "prompt": "The capital of France is",
     "target": " Paris", "paraphrases": ["France's capital city is"], "distractors": [" Lyon"]}

``prompt`` contains ``subject`` verbatim (its tokens are located for causal tracing); ``target``
starts with a space (it is what the model should write next). Answers of several tokens are
scored explicitly: ``scoring="first_token"`` (the first answer token at the last prompt
position) or ``scoring="sequence"`` (the full answer's log-probability, teacher-forced).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.data.corpus import read_utf8_lines

SCORINGS = ("first_token", "sequence")
_REQUIRED = ("subject", "relation", "prompt", "target")
_OPTIONAL = ("paraphrases", "distractors")


@dataclass(frozen=True, kw_only=True)
class Fact:
    """One fact; ``where`` is ``file:line`` for error messages."""

    subject: str
    relation: str
    prompt: str
    target: str
    paraphrases: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()
    where: str = field(default="", compare=False)


def default_facts_dir() -> Path:
    """``data/facts`` of the ffnmem repository (found from this file or the working directory)."""
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (base / "data" / "facts").is_dir():
            return base / "data" / "facts"
    raise BadInput("cannot find data/facts: run from the ffnmem repository or pass --facts FILE")


def resolve_fact_paths(spec: str | Path | list) -> list[Path]:
    """A file, a folder of ``*.jsonl``, a list of either, or ``'all'`` (every shipped fact set)."""
    specs = spec if isinstance(spec, list) else [spec]
    paths: list[Path] = []
    for s in specs:
        if str(s) == "all":
            paths += sorted(default_facts_dir().glob("*.jsonl"))
            continue
        p = Path(s)
        if not p.exists() and (default_facts_dir() / p).exists():
            p = default_facts_dir() / p
        if p.is_dir():
            paths += sorted(p.glob("*.jsonl"))
        elif p.exists():
            paths.append(p)
        else:
            raise BadInput(f"fact file {s} does not exist; give a .jsonl file, a folder, or 'all'")
    return paths


def load_facts(spec: str | Path | list, *, relations: list[str] | None = None,
               limit_per_relation: int | None = None, sample_seed: int | None = None) -> list[Fact]:
    """Read and validate fact files; errors name the file and line. Optionally filter relations.

    ``limit_per_relation`` keeps the first N facts of each relation in file order, or, with
    ``sample_seed``, N drawn at random per relation by that seed (kept in file order): the files
    list famous subjects first, so the first N are not a fair sample of a relation.
    """
    facts: list[Fact] = []
    first: dict[tuple[str, str], Fact] = {}
    for path in _unique_files(resolve_fact_paths(spec)):
        if not path.is_file():
            raise BadInput(f"fact file {path} is not a regular file; give a .jsonl file, a folder, or 'all'")
        for n, line in enumerate(read_utf8_lines(path), start=1):
            if line.strip():
                fact = parse_fact(line, where=f"{path}:{n}")
                _check_unique(fact, first)
                facts.append(fact)
    if relations is not None:
        known = {f.relation for f in facts}
        unknown = [r for r in relations if r not in known]
        if unknown:
            raise BadInput(f"unknown relation {unknown[0]!r}; the fact set has {', '.join(sorted(known))}")
        facts = [f for f in facts if f.relation in relations]
    if limit_per_relation is not None:
        by_relation: dict[str, list[int]] = {}
        for i, f in enumerate(facts):
            by_relation.setdefault(f.relation, []).append(i)
        keep: set[int] = set()
        for rel, idx in sorted(by_relation.items()):
            if sample_seed is not None:
                g = random.Random(f"{sample_seed}/{rel}")  # per relation: adding a file changes no other sample
                idx = sorted(g.sample(idx, min(limit_per_relation, len(idx))))
            keep.update(idx[:limit_per_relation])
        facts = [f for i, f in enumerate(facts) if i in keep]
    if not facts:
        raise BadInput(f"no facts in {spec}: the fact set is empty")
    return facts


def _unique_files(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats of the same file (``all`` plus one of its files, say), in order."""
    seen: dict[Path, Path] = {}
    for p in paths:
        seen.setdefault(p.resolve(), p)
    return list(seen.values())


def _check_unique(fact: Fact, first: dict[tuple[str, str], Fact]) -> None:
    """One fact per (subject, relation): a repeat would be counted twice in every rate."""
    seen = first.setdefault((fact.subject, fact.relation), fact)
    if seen is not fact:
        raise BadInput(f"{fact.where}: duplicate fact (subject {fact.subject!r}, relation {fact.relation!r}) "
                       f"first given at {seen.where}; keep each fact once")


def parse_fact(line: str, *, where: str = "<string>") -> Fact:
    """One JSONL line into a :class:`Fact`, or :class:`BadInput` naming ``where``."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise BadInput(f"{where}: not valid JSON ({exc.args[0].split(':')[0]}); one JSON object per line") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{where}: expected a JSON object with {', '.join(_REQUIRED)}")
    for key in _REQUIRED:
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise BadInput(f"{where}: field {key!r} is missing or not a non-empty string")
    extra = set(obj) - set(_REQUIRED) - set(_OPTIONAL)
    if extra:
        raise BadInput(f"{where}: unknown field {sorted(extra)[0]!r}; allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    for key in _OPTIONAL:
        val = obj.get(key, [])
        if not isinstance(val, list) or not all(isinstance(v, str) and v.strip() for v in val):
            raise BadInput(f"{where}: field {key!r} must be a list of non-empty strings")
    if not obj["target"].startswith(" ") or obj["target"].startswith("  "):
        raise BadInput(f"{where}: target {obj['target']!r} must start with exactly one space (it follows the prompt)")
    if obj["prompt"].endswith(" "):
        raise BadInput(f"{where}: prompt ends with a space; the space belongs to the target")
    if any(d.strip() == obj["target"].strip() for d in obj.get("distractors", [])):
        raise BadInput(f"{where}: distractor {obj['target']!r} is the answer itself; list only wrong answers")
    for text in [obj["prompt"], *obj.get("paraphrases", [])]:
        if obj["subject"] not in text:
            raise BadInput(f"{where}: subject {obj['subject']!r} not found verbatim in prompt {text!r}")
    return Fact(subject=obj["subject"], relation=obj["relation"], prompt=obj["prompt"], target=obj["target"],
                paraphrases=tuple(obj.get("paraphrases", [])), distractors=tuple(obj.get("distractors", [])),
                where=where)


def token_char_spans(wb: Workbench, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token of ``ids`` (no BOS) in their decoded text."""
    spans, prev = [], 0
    for i in range(len(ids)):
        end = len(wb.tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False))
        spans.append((prev, end))
        prev = end
    return spans


def subject_span(wb: Workbench, prompt: str, subject: str, *, prepend_bos: bool = True,
                 where: str = "") -> tuple[int, int]:
    """Token positions ``[start, end)`` of ``subject`` in ``wb.to_tokens(prompt, prepend_bos=...)``.

    ``prepend_bos`` must be what the caller tokenised with: the span counts a BOS only when the
    caller's tokens have one. A token counts as part of the subject when its characters overlap
    the subject's.
    """
    at = prompt.find(subject)
    if at < 0:
        raise BadInput(f"{where + ': ' if where else ''}subject {subject!r} not found in prompt {prompt!r}")
    ids = wb.encode(prompt, prepend_bos=False)
    spans = token_char_spans(wb, ids)
    if wb.tokenizer.decode(ids, clean_up_tokenization_spaces=False) != prompt:
        raise BadInput(f"{where + ': ' if where else ''}prompt {prompt!r} does not decode back to itself; "
                       "cannot locate the subject's tokens")
    hit = [i for i, (s, e) in enumerate(spans) if s < at + len(subject) and e > at]
    offset = len(wb.encode(prompt, prepend_bos=prepend_bos)) - len(ids)  # 1 when a BOS is prepended
    return hit[0] + offset, hit[-1] + 1 + offset


def answer_ids(wb: Workbench, prompt: str, target: str, *, where: str = "") -> list[int]:
    """Token ids of ``target`` as the model would write it after ``prompt``.

    Raises :class:`BadInput` when the target tokenises differently after the prompt than alone
    (a leading space merged into the prompt, say).
    """
    ids = wb.encode(target, prepend_bos=False)
    joint = wb.encode(prompt + target, prepend_bos=False)
    alone = wb.encode(prompt, prepend_bos=False)
    pre = f"{where}: " if where else ""
    if joint != alone + ids:
        raise BadInput(f"{pre}target {target!r} tokenises differently after the prompt than alone "
                       f"({wb.str_tokens(joint[len(alone):])} vs {wb.str_tokens(ids)}); rephrase the prompt or target")
    return ids


def check_first_token(wb: Workbench, enc: EncodedFact) -> None:
    """First-token scoring needs a first token that carries the answer (not a bare space)."""
    if not wb.decode(enc.answer_ids[0]).strip():
        raise BadInput(f"{enc.fact.where}: target {enc.fact.target!r} starts with a bare-space token "
                       f"{wb.str_tokens(enc.answer_ids)}; use --scoring sequence or another target")


def check_scoring(scoring: str) -> str:
    if scoring not in SCORINGS:
        raise BadInput(f"unknown scoring {scoring!r}; choose first_token or sequence")
    return scoring


@dataclass(frozen=True)
class EncodedFact:
    """A fact tokenised for a model: prompt ids (with BOS), answer ids, subject span."""

    fact: Fact
    prompt_ids: list[int]
    answer_ids: list[int]
    subject: tuple[int, int]
    distractor_ids: list[list[int]]


def encode_facts(wb: Workbench, facts: list[Fact]) -> list[EncodedFact]:
    """Tokenise and check every fact for ``wb`` (errors name the fact's file and line)."""
    if not facts:
        raise BadInput("the fact set is empty: give at least one fact")
    out = []
    for f in facts:
        prompt_ids = wb.encode(f.prompt)
        wb.check_length(len(prompt_ids) + len(wb.encode(f.target, prepend_bos=False)), what=f"{f.where} prompt")
        out.append(EncodedFact(
            fact=f, prompt_ids=prompt_ids, answer_ids=answer_ids(wb, f.prompt, f.target, where=f.where),
            subject=subject_span(wb, f.prompt, f.subject, where=f.where),
            distractor_ids=[wb.encode(d, prepend_bos=False) for d in f.distractors]))
    return out
