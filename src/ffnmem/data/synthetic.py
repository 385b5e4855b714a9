"""Synthetic fact corpora with controlled exposure (in the spirit of Allen-Zhu & Li's bioS).

N invented entities (names built from syllables, so no real-world prior leaks in) each get K
attributes (birth city, birth year, employer, field, university, ...) with values drawn from
per-attribute sets: uniformly, or (``value_law="zipf"``) with Zipf frequencies ``∝ rank^-value_zipf_a``
over a seeded random order of each set, so that some values are far more common than others. Each entity's biography appears ``exposures`` times in the corpus, set by
a law: Zipf (``e_i ∝ rank^-a``), log-uniform, or explicit bins (1, 2, 4, …, 512). Every mention
picks a paraphrase template per attribute and shuffles the sentence order.

With ``value_noise = ε``, each mention writes the true value with probability 1 − ε and a uniform
draw from the value set otherwise, so the exact conditional distribution at an attribute-value
position, given the entity and the template, is

    p(v) = (1 − ε)·[v = v*] + ε / |V|,

and its entropy (the data entropy, the floor of any model's cross-entropy there) is known exactly:
``cross-entropy = H(p) + KL(p ‖ q)``. The value law changes only which v* each entity gets, never
the noise draw (uniform in either law), so the formula stays exact under ``value_law="zipf"``.

Text is word-level (space-separated words, punctuation as separate words) so that
:func:`ffnmem.data.vocab.build_tokenizer` maps every word, and so every value, to exactly one token.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import atomic_dir
from ffnmem.core.paths import atomic_write_json, atomic_write_text

SPECIALS = {"pad": "<pad>", "unk": "<unk>", "bos": "<bos>", "eos": "<eos>"}
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "st", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "m"]

# attribute -> templates. "{name}" is the entity, "{value}" ends the prompt. Prefix-free (checked by
# :func:`template_collisions`): no template's prompt (the words before {value}) starts another
# template, else the prompt's next word is not always a value and its data entropy is not the one
# :func:`noisy_entropy_bits` gives ("X was born in" once started "X was born in the year ...").
ATTRIBUTES: dict[str, list[str]] = {
    "birth_city": ["{name} was born in {value} .", "{name} came into the world in {value} .",
                   "the birthplace of {name} is {value} .", "{name} spent early years in {value} ."],
    "birth_year": ["the year of birth of {name} is {value} .", "the birth year of {name} is {value} .",
                   "{name} arrived in {value} .", "{name} celebrates a birthday since {value} ."],
    "employer": ["{name} works for {value} .", "the employer of {name} is {value} .",
                 "{name} is employed by {value} .", "{name} draws a salary from {value} ."],
    "field": ["{name} studied {value} .", "the field of {name} is {value} .",
              "{name} majored in {value} .", "{name} is an expert in {value} ."],
    "university": ["{name} graduated from {value} .", "the alma mater of {name} is {value} .",
                   "{name} holds a degree from {value} .", "{name} attended {value} ."],
    "hobby": ["{name} enjoys {value} .", "the hobby of {name} is {value} .",
              "{name} spends weekends on {value} .", "{name} is fond of {value} ."],
}
_JUNK_WORDS = ["the", "a", "of", "and", "to", "in", "is", "was", "it", "that", "on", "for", "with",
               "as", "at", "by", "this", "from", "or", "an", "but", "not", "are", "be", "have"]


# Bounds that keep a corpus on one machine: documents grow as entities × attributes × exposures.
MAX_ENTITIES = 100_000
MAX_EXPOSURE = 10_000


@dataclass(frozen=True, kw_only=True)
class FactConfig:
    """Settings of a synthetic fact corpus. Same config (seed included) = same corpus."""

    n_entities: int = 120
    attributes: tuple[str, ...] = ("birth_city", "birth_year", "employer", "field")
    n_values: int = 24  # size of each attribute's value set (years use a contiguous range)
    law: str = "bins"  # "bins", "zipf" or "loguniform"
    bins: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    zipf_a: float = 1.0
    max_exposure: int = 64
    min_exposure: int = 1
    templates_per_attribute: int = 3  # used in the corpus; the rest are held out for queries
    value_noise: float = 0.0
    value_law: str = "uniform"  # law of the true values: "uniform" or "zipf" (rank^-value_zipf_a)
    value_zipf_a: float = 1.0
    junk_share: float = 0.0  # share of documents that are junk text
    # Fixed name pools (bioS draws 400 first x 1000 last names): entities are distinct pairs from
    # ``first_names`` first and ``last_names`` last names, so the vocabulary (and the embedding
    # parameters) stay small when entities are many. 0 and 0 = pools sized from n_entities.
    first_names: int = 0
    last_names: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise BadInput(f"invalid fact-corpus setting: {msg}")

        if not 1 <= self.n_entities <= MAX_ENTITIES:
            bad(f"n_entities is {self.n_entities}; use 1..{MAX_ENTITIES}")
        if not self.attributes or any(a not in ATTRIBUTES for a in self.attributes):
            bad(f"attributes {list(self.attributes)}; choose from {', '.join(ATTRIBUTES)}")
        if len(set(self.attributes)) != len(self.attributes):
            bad("an attribute is listed twice")
        if not 2 <= self.n_values <= 500:
            bad(f"n_values is {self.n_values}; use 2..500")
        if self.law not in ("bins", "zipf", "loguniform"):
            bad(f"law {self.law!r}; use bins, zipf or loguniform")
        if self.law == "bins" and (not self.bins or min(self.bins) < 1 or max(self.bins) > MAX_EXPOSURE):
            bad(f"bins {list(self.bins)}; give exposure counts in 1..{MAX_EXPOSURE}")
        if self.law == "zipf" and not (0 < self.zipf_a <= 5 and math.isfinite(self.zipf_a)):
            bad(f"zipf_a is {self.zipf_a}; use an exponent in (0, 5]")
        if not 1 <= self.min_exposure <= self.max_exposure <= MAX_EXPOSURE:
            bad(f"exposures {self.min_exposure}..{self.max_exposure}; need 1 <= min <= max <= {MAX_EXPOSURE}")
        if not 1 <= self.templates_per_attribute <= 4:
            bad(f"templates_per_attribute is {self.templates_per_attribute}; use 1..4")
        if not 0 <= self.value_noise < 1:
            bad(f"value_noise is {self.value_noise}; use a probability in [0, 1)")
        if not 0 <= self.junk_share < 1:
            bad(f"junk_share is {self.junk_share}; use a share in [0, 1)")
        if self.value_law not in ("uniform", "zipf"):
            bad(f"value_law {self.value_law!r}; use uniform or zipf")
        if not (0 < self.value_zipf_a <= 5 and math.isfinite(self.value_zipf_a)):
            bad(f"value_zipf_a is {self.value_zipf_a}; use an exponent in (0, 5]")
        if (self.first_names == 0) != (self.last_names == 0) or min(self.first_names, self.last_names) < 0:
            bad(f"name pools {self.first_names} x {self.last_names}; give both (>= 1) or neither (0)")
        if self.first_names and self.first_names * self.last_names < 2 * self.n_entities:
            bad(f"name pools {self.first_names} x {self.last_names} hold fewer than twice {self.n_entities} "
                "entities; enlarge them (unseen control entities are drawn from the same pools)")
        if self.first_names + self.last_names > 20_000:
            bad(f"name pools {self.first_names} + {self.last_names} exceed 20000 words")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.value_law == "uniform":  # so corpora, run fingerprints and provenance made before the
            del d["value_law"], d["value_zipf_a"]  # value law existed stay identical
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FactConfig:
        d = dict(d)
        for key in ("attributes", "bins"):
            if key in d:
                d[key] = tuple(d[key])
        try:
            return cls(**d)
        except TypeError as exc:
            raise BadInput(f"unknown fact-corpus setting: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class FactCorpus:
    """A generated corpus: documents, the fact table and query prompts (all plain Python)."""

    config: FactConfig
    entities: list[str]
    values: dict[str, list[str]]  # attribute -> value set
    facts: list[dict]  # entity, attribute, value, exposures, entity_id
    documents: list[str]
    queries: list[dict]  # entity, attribute, prompt, answer, template, heldout, exposures

    def value_entropy_bits(self) -> float:
        """Exact entropy (bits) of the data at an attribute-value position (same for all)."""
        return noisy_entropy_bits(self.config.value_noise, self.config.n_values)

    def vocabulary(self) -> list[str]:
        """Every word the corpus and its queries can contain (sorted, specials excluded)."""
        words = set(_JUNK_WORDS)
        for e in self.entities:
            words.update(e.split())
        for vals in self.values.values():
            words.update(vals)
        for a in self.config.attributes:
            for t in ATTRIBUTES[a]:
                words.update(w for w in t.split() if w not in ("{name}", "{value}"))
        return sorted(words)

    def save(self, path: str | Path) -> Path:
        """Write corpus.txt (one document a line), facts.jsonl, queries.jsonl, config.json."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            atomic_write_text(tmp / "corpus.txt", "\n".join(self.documents) + "\n")
            atomic_write_text(tmp / "facts.jsonl", "".join(json.dumps(f) + "\n" for f in self.facts))
            atomic_write_text(tmp / "queries.jsonl", "".join(json.dumps(q) + "\n" for q in self.queries))
            atomic_write_json(tmp / "config.json", {"config": self.config.to_dict(), "entities": self.entities,
                                                    "values": self.values,
                                                    "value_entropy_bits": self.value_entropy_bits()})
        return path

    @classmethod
    def load(cls, path: str | Path) -> FactCorpus:
        path = Path(path)
        try:
            head = json.loads((path / "config.json").read_text())
            docs = (path / "corpus.txt").read_text().splitlines()
            facts = [json.loads(x) for x in (path / "facts.jsonl").read_text().splitlines() if x]
            queries = [json.loads(x) for x in (path / "queries.jsonl").read_text().splitlines() if x]
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path} is not a fact corpus made by `ffnmem facts make` ({exc})") from None
        return cls(config=FactConfig.from_dict(head["config"]), entities=head["entities"],
                   values=head["values"], facts=facts, documents=docs, queries=queries)


def _prompt_words(template: str) -> list[str]:
    return template.split("{value}")[0].split()


def template_collisions(attributes: dict[str, list[str]] | None = None) -> list[tuple[str, str]]:
    """Pairs (template A, template B), A != B, over all attributes, where A's query prompt (its words
    before ``{value}``, the name a shared placeholder) is a word-level prefix of B: after A's prompt the
    corpus then continues with B's words as well as with values. Empty when the templates are prefix-free."""
    pool = [t for ts in (ATTRIBUTES if attributes is None else attributes).values() for t in ts]
    out = []
    for a in pool:
        head = _prompt_words(a)
        for b in pool:
            if a != b and b.split()[: len(head)] == head:
                out.append((a, b))
    return out


def noisy_entropy_bits(eps: float, n_values: int) -> float:
    """Entropy in bits of p(v) = (1 − ε)[v = v*] + ε/|V|."""
    p_true = 1 - eps + eps / n_values
    p_other = eps / n_values
    h = -p_true * math.log2(p_true)
    if p_other > 0:
        h -= (n_values - 1) * p_other * math.log2(p_other)
    return max(0.0, h)


def exposure_counts(cfg: FactConfig, rng: np.random.Generator) -> np.ndarray:
    """Exposure count per entity following ``cfg.law`` (shuffled over entities)."""
    n = cfg.n_entities
    if cfg.law == "bins":
        counts = np.array([cfg.bins[i * len(cfg.bins) // n] for i in range(n)])
    elif cfg.law == "zipf":
        ranks = np.arange(1, n + 1)
        counts = np.maximum(cfg.min_exposure, np.round(cfg.max_exposure * ranks ** -cfg.zipf_a)).astype(int)
    else:
        lo, hi = math.log(cfg.min_exposure), math.log(cfg.max_exposure)
        counts = np.round(np.exp(rng.uniform(lo, hi, size=n))).astype(int)
    return rng.permutation(counts)


def _names(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct capitalised syllable words (2–3 syllables)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(k)) + rng.choice(_CODAS)
        w = w.capitalize()
        if w not in seen and w.lower() not in _JUNK_WORDS:
            seen.add(w)
            out.append(w)
    return out


def _value_sets(cfg: FactConfig, rng: np.random.Generator) -> dict[str, list[str]]:
    words = iter(_names(cfg.n_values * len(cfg.attributes), rng))
    sets = {}
    for a in cfg.attributes:
        if a == "birth_year":
            sets[a] = [str(1900 + i) for i in range(cfg.n_values)]
        else:
            sets[a] = [next(words) for _ in range(cfg.n_values)]
    return sets


def generate(cfg: FactConfig) -> FactCorpus:
    """Build the corpus of ``cfg`` deterministically from ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    values = _value_sets(cfg, rng)
    taken = {w for vals in values.values() for w in vals}
    if cfg.first_names:
        pool = [w for w in _names(cfg.first_names + cfg.last_names + len(taken), rng) if w not in taken]
        firsts, lasts = pool[: cfg.first_names], pool[cfg.first_names: cfg.first_names + cfg.last_names]
    else:  # the original draw, unchanged, so existing corpora keep their entities
        pool = [w for w in _names(4 * cfg.n_entities + 8 + len(taken), rng) if w not in taken]
        firsts, lasts = pool[: len(pool) // 2], pool[len(pool) // 2:]
    entities: list[str] = []
    seen: set[str] = set()
    while len(entities) < cfg.n_entities:
        name = f"{firsts[rng.integers(len(firsts))]} {lasts[rng.integers(len(lasts))]}"
        if name not in seen:
            seen.add(name)
            entities.append(name)
    exposures = exposure_counts(cfg, rng)
    truth = _true_values(cfg, rng, values)
    facts = [{"entity_id": i, "entity": entities[i], "attribute": a, "value": truth[i, a],
              "exposures": int(exposures[i])} for i in range(cfg.n_entities) for a in cfg.attributes]
    docs = []
    for i in range(cfg.n_entities):
        for _ in range(int(exposures[i])):
            docs.append(_biography(cfg, rng, entities[i], {a: truth[i, a] for a in cfg.attributes}, values))
    n_junk = int(round(len(docs) * cfg.junk_share / (1 - cfg.junk_share)))
    docs += [" ".join(rng.choice(_JUNK_WORDS, size=int(rng.integers(8, 30)))) for _ in range(n_junk)]
    docs = [docs[j] for j in rng.permutation(len(docs))]
    queries = _queries(cfg, rng, facts)
    return FactCorpus(config=cfg, entities=entities, values=values, facts=facts, documents=docs, queries=queries)


def value_weights(cfg: FactConfig) -> np.ndarray:
    """Probability of the value of frequency rank r (1 = most common) under ``cfg.value_law``."""
    w = np.arange(1, cfg.n_values + 1, dtype=float) ** (-cfg.value_zipf_a if cfg.value_law == "zipf" else 0.0)
    return w / w.sum()


def _true_values(cfg: FactConfig, rng: np.random.Generator, values: dict[str, list[str]]) -> dict:
    """(entity, attribute) -> true value. Uniform keeps the original draws (same corpus as before the
    law existed); zipf ranks each attribute's values in a seeded random order, then draws by rank."""
    if cfg.value_law == "uniform":
        return {(i, a): values[a][int(rng.integers(cfg.n_values))] for i in range(cfg.n_entities) for a in cfg.attributes}
    order = {a: rng.permutation(cfg.n_values) for a in cfg.attributes}
    ranks = {a: rng.choice(cfg.n_values, size=cfg.n_entities, p=value_weights(cfg)) for a in cfg.attributes}
    return {(i, a): values[a][int(order[a][ranks[a][i]])] for i in range(cfg.n_entities) for a in cfg.attributes}


def _biography(cfg, rng, name: str, truth: dict[str, str], values: dict[str, list[str]]) -> str:
    sentences = []
    for a in rng.permutation(list(cfg.attributes)):
        t = ATTRIBUTES[a][int(rng.integers(cfg.templates_per_attribute))]
        v = truth[a]
        if cfg.value_noise and rng.random() < cfg.value_noise:
            v = values[a][int(rng.integers(cfg.n_values))]
        sentences.append(t.format(name=name, value=v))
    return " ".join(sentences)


def _queries(cfg, rng, facts: list[dict]) -> list[dict]:
    """One prompt per fact with a corpus template, plus one with a held-out template if any."""
    out = []
    for f in facts:
        templates = ATTRIBUTES[f["attribute"]]
        seen = int(rng.integers(cfg.templates_per_attribute))
        choices = [(seen, False)]
        if cfg.templates_per_attribute < len(templates):
            choices.append((len(templates) - 1, True))
        for t, heldout in choices:
            prompt = templates[t].split("{value}")[0].format(name=f["entity"]).rstrip()
            out.append({"entity": f["entity"], "entity_id": f["entity_id"], "attribute": f["attribute"],
                        "prompt": prompt, "answer": f["value"], "template": t, "heldout": heldout,
                        "exposures": f["exposures"]})
    return out


def unseen_queries(corpus: FactCorpus, n_entities: int | None = None, *, seed: int = 0) -> list[dict]:
    """Query prompts for facts the corpus never states: the control of a knowledge-capacity estimate.

    ``n_entities`` new entities (default: as many as the corpus has) named by re-pairing the first
    and last names of the corpus' own entities — so every word is in the tokenizer's vocabulary —
    into pairs that are not corpus entities; each gets a value drawn uniformly from each attribute's
    value set (whatever the corpus' value law: what a model knows of a Zipf law's frequencies is
    not knowledge of these facts) and one prompt per attribute with a
    corpus template; ``exposures`` is 0. Seeded by the corpus seed and ``seed``: a model cannot know
    these values, so log2|V| − loss bits on them is at most 0 on average.
    """
    cfg = corpus.config
    n = cfg.n_entities if n_entities is None else n_entities
    firsts = sorted({e.split()[0] for e in corpus.entities})
    lasts = sorted({e.split()[1] for e in corpus.entities})
    taken = set(corpus.entities)
    if n < 1 or n > len(firsts) * len(lasts) - len(taken):
        raise BadInput(f"cannot make {n} unseen entities from {len(firsts)} first and {len(lasts)} last names "
                       f"(at most {len(firsts) * len(lasts) - len(taken)})")
    rng = np.random.default_rng([cfg.seed, 0x5EE, seed])  # a stream of its own: the corpus is unchanged
    names: list[str] = []
    while len(names) < n:
        name = f"{firsts[rng.integers(len(firsts))]} {lasts[rng.integers(len(lasts))]}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    out = []
    for i, name in enumerate(names):
        for a in cfg.attributes:
            t = int(rng.integers(cfg.templates_per_attribute))
            out.append({"entity": name, "entity_id": cfg.n_entities + i, "attribute": a,
                        "prompt": ATTRIBUTES[a][t].split("{value}")[0].format(name=name).rstrip(),
                        "answer": corpus.values[a][int(rng.integers(cfg.n_values))], "template": t,
                        "heldout": False, "exposures": 0})
    return out
