"""Ground truth for localization: plant new facts in chosen FFN neurons (Chang et al. 2024's INJ).

Chang, Thomason & Jia ("Do Localization Methods Actually Localize Memorized Data in LLMs? A Tale of
Two Benchmarks", NAACL 2024) inject a new sequence into a pretrained LM by fine-tuning only a
randomly drawn set of FFN neurons, every other weight frozen, so the new information must live in
them; a localization method is scored by how many of those neurons its top k recovers (k = the
planted set's size, so precision = recall). Their code (terarachang/MemPi, ``inject.py``) draws a
ratio of all FFN neurons uniformly over all layers, zeroes the gradient of the FFN output matrix
(the value vectors) outside them, trains with Adam (lr 1e-2, at most 100 epochs, stop at loss
< 0.05) and injects one sequence per model, restoring the weights in between.

Here, on a model trained on synthetic facts (:mod:`ffnmem.data.synthetic`):

* the injected items are new *facts* (:func:`new_facts`: an entity the corpus never names, a
  relation, an answer drawn from the relation's value set), trained as next-token prediction of
  the answer after each of the fact's prompts (prompt and paraphrases: the corpus templates), not a
  whole sequence's LM loss; held-out templates only check generalisation;
* each fact gets ``neurons_per_fact`` neurons drawn uniformly from the eligible ``layers`` (all
  layers = Chang's global draw), disjoint across facts;
* ``parts="value"`` tunes value vectors only (W_out rows, as Chang); ``"key_value"`` also the keys
  (W_in column, b_in entry, the gate row of a gated MLP), which lets a neuron become selective;
* the facts of one call are injected one after another into *one* model, so a later fact's neurons
  can disturb an earlier fact: recall is reported right after a fact's own injection and at the
  end. For Chang's one-model-per-item design call :func:`inject_facts` with one fact and
  :meth:`Injection.undo` it before the next.

Masked gradients under plain Adam (no weight decay) leave every other entry bit-identical (zero
gradient, zero moments, zero step); :class:`Injection` carries that check, made on the weights."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench, tensor_hash
from ffnmem.data.facts import Fact
from ffnmem.data.synthetic import ATTRIBUTES, FactCorpus, unseen_queries
from ffnmem.methods.injection_scoring import (  # noqa: F401 - the scoring half of this module's API
    answer_and_alternatives,
    dla_rankings,
    precision_recall,
    random_rankings,
    summarize_localization,
)

PARTS = ("value", "key_value")
Neuron = tuple[int, int]


# --- facts -------------------------------------------------------------------------------------
def _prompt(template: str, name: str) -> str:
    return template.split("{value}")[0].format(name=name).rstrip()


def _fact(corpus: FactCorpus, entity: str, attribute: str, answer: str, where: str) -> tuple[Fact, list[str]]:
    used = corpus.config.templates_per_attribute
    prompts = [_prompt(t, entity) for t in ATTRIBUTES[attribute]]
    fact = Fact(subject=entity, relation=attribute, prompt=prompts[0], target=f" {answer}",
                paraphrases=tuple(prompts[1:used]), where=where,
                distractors=tuple(f" {v}" for v in corpus.values[attribute] if v != answer))
    return fact, prompts[used:]


def new_facts(corpus: FactCorpus, n: int, *, seed: int = 0) -> tuple[list[Fact], list[list[str]]]:
    """``n`` facts the corpus never states, and per fact its held-out-template prompts.

    Entities re-pair the corpus' first and last names (:func:`ffnmem.data.synthetic.unseen_queries`,
    so every word is in the vocabulary); the relations cycle through the corpus attributes; answers
    are uniform draws from the relation's value set; ``distractors`` are the relation's other values
    (the margin's alternatives). Prompt and paraphrases use the corpus templates.
    """
    attrs = corpus.config.attributes
    queries = unseen_queries(corpus, n, seed=seed)
    picked = [q for q in queries if q["attribute"] == attrs[(q["entity_id"] - corpus.config.n_entities) % len(attrs)]]
    out = [_fact(corpus, q["entity"], q["attribute"], q["answer"], f"new fact {i}") for i, q in enumerate(picked)]
    return [f for f, _ in out], [h for _, h in out]


def corpus_facts(corpus: FactCorpus) -> list[Fact]:
    """Every fact of the corpus as a :class:`Fact` (first corpus template; distractors as above)."""
    return [_fact(corpus, f["entity"], f["attribute"], f["value"], f"corpus fact {i}")[0]
            for i, f in enumerate(corpus.facts)]


# --- scoring prompts ---------------------------------------------------------------------------
def _batch(wb: Workbench, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Right-padded ids and each row's last real position (causal: padding after it is unseen)."""
    rows = [wb.encode(p) for p in prompts]
    for p, r in zip(prompts, rows):
        wb.check_length(len(r), what=f"prompt {p[:40]!r}")
    toks = torch.full((len(rows), max(map(len, rows))), wb.tokenizer.pad_token_id or 0, dtype=torch.long)
    for i, r in enumerate(rows):
        toks[i, : len(r)] = torch.tensor(r)
    return toks.to(wb.device), torch.tensor([len(r) - 1 for r in rows], device=wb.device)


def _last_logits(wb: Workbench, prompts: Sequence[str], batch_size: int = 256) -> Tensor:
    out = []
    with torch.inference_mode():
        for s in range(0, len(prompts), batch_size):
            toks, last = _batch(wb, prompts[s: s + batch_size])
            out.append(wb.bridge.original_model(toks)[torch.arange(len(toks)), last].float().cpu())
    return torch.cat(out)


def recall_and_margin(wb: Workbench, facts: Sequence[Fact]) -> tuple[np.ndarray, np.ndarray]:
    """Per fact, at its prompt: answer ranked first? and margin = logit(answer) − mean logit(alternatives)."""
    logits = _last_logits(wb, [f.prompt for f in facts])
    recalled, margins = [], []
    for row, f in zip(logits, facts):
        answer, alts = answer_and_alternatives(wb, f)
        recalled.append(int(row.argmax()) == answer)
        margins.append(float(row[answer] - row[alts].mean()))
    return np.array(recalled, dtype=bool), np.array(margins)


# --- injection ---------------------------------------------------------------------------------
@dataclass
class Injection:
    """What :func:`inject_facts` did. Per fact ``i``: ``planted[i]`` its (layer, neuron) set;
    ``recalled_before`` / ``recalled_own`` / ``recalled`` whether its prompt ranks the answer first
    before any injection / right after its own / after all; ``converged`` whether training met the
    stop rule (every prompt top-1, loss < ``stop_loss``) within ``steps``; ``train_recall`` the share of its prompts
    (prompt and paraphrases) recalled at the end; ``heldout_recall`` the same on held-out prompts
    (None without them); ``margins_before`` / ``margins`` its margin; ``steps`` the optimizer steps
    used. ``others`` compares the model's other facts before and after; ``weight_check`` counts
    entries that changed outside the planted parameters (``ok`` when none did)."""

    facts: list[Fact]
    planted: list[list[Neuron]]
    layers: list[int]
    parts: str
    recalled_before: list[bool]
    recalled_own: list[bool]
    recalled: list[bool]
    converged: list[bool]
    train_recall: list[float]
    heldout_recall: list[float | None]
    margins_before: list[float]
    margins: list[float]
    steps: list[int]
    others: dict
    weight_check: dict
    seconds: float
    originals: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def rows(self) -> list[dict]:
        """One plain row per injected fact."""
        return [{"fact": i, "subject": f.subject, "relation": f.relation, "target": f.target.strip(),
                 "planted": " ".join(f"L{l}.{n}" for l, n in self.planted[i]), "steps": self.steps[i],
                 "recalled_before": self.recalled_before[i], "recalled_own": self.recalled_own[i],
                 "recalled": self.recalled[i], "converged": self.converged[i], "train_recall": self.train_recall[i],
                 "heldout_recall": self.heldout_recall[i], "margin_before": self.margins_before[i],
                 "margin": self.margins[i]} for i, f in enumerate(self.facts)]

    def undo(self, wb: Workbench) -> None:
        """Put the tuned tensors back as they were before the injection."""
        params = dict(wb.bridge.original_model.named_parameters())
        with torch.no_grad():
            for name, value in self.originals.items():
                params[name].copy_(value)
        wb.weight_hash = tensor_hash(wb.bridge.original_model.state_dict())


def _neuron_tensors(wb: Workbench, layer: int, parts: str) -> list[tuple[Tensor, int]]:
    """The FFN view tensors a neuron owns, with the axis that indexes neurons (views of the weights)."""
    ffn = wb.ffn(layer)
    out = [(ffn.values, 0)]
    if parts == "key_value":
        out += [(ffn.keys, 0)] + ([(ffn.b_in, 0)] if ffn.b_in is not None else []) + \
               ([(ffn.gates, 0)] if ffn.gates is not None else [])
    return out


def _masks(wb: Workbench, neurons: Sequence[Neuron], parts: str) -> dict[str, Tensor]:
    """Per parameter name, a 0/1 mask of the entries that belong to ``neurons``.

    Found through storage: each FFN view tensor is a strided view of one parameter, so the same
    strides over a zero tensor shaped like that parameter mark exactly the entries the view reaches.
    """
    by_storage = {p.untyped_storage().data_ptr(): (n, p) for n, p in wb.bridge.original_model.named_parameters()}
    masks: dict[str, Tensor] = {}
    for layer, neuron in neurons:
        for view, axis in _neuron_tensors(wb, layer, parts):
            hit = by_storage.get(view.untyped_storage().data_ptr())
            if hit is None:
                raise BadInput(f"{wb.model_id}: the FFN weights of layer {layer} are not plain parameters; "
                               "cannot restrict training to chosen neurons")
            name, p = hit
            m = masks.setdefault(name, torch.zeros_like(p))
            strided = m.as_strided(view.shape, view.stride(), view.storage_offset() - p.storage_offset())
            strided.select(axis, neuron).fill_(1.0)
    return masks


def _train_fact(wb: Workbench, prompts: list[str], answer: int, masks: dict[str, Tensor], *, steps: int,
                lr: float, stop_loss: float, retain: tuple | None = None, retain_weight: float = 0.0) -> tuple[int, bool]:
    """Adam on the masked entries until every prompt ranks ``answer`` first with loss < ``stop_loss``.
    ``retain`` = (ids, last positions, log-probs before): KL(before ‖ now) there, times ``retain_weight``,
    is added to the loss (not to the stop rule), so the planted neurons learn to stay quiet elsewhere."""
    params = dict(wb.bridge.original_model.named_parameters())
    tuned = [params[n] for n in masks]
    opt = torch.optim.Adam(tuned, lr=lr)  # plain Adam: weight decay would move frozen entries
    toks, last = _batch(wb, prompts)
    target = torch.full((len(prompts),), answer, device=wb.device)
    for step in range(steps + 1):
        logits = wb.bridge.original_model(toks)[torch.arange(len(toks)), last].float()
        loss = F.cross_entropy(logits, target)
        if bool((logits.argmax(-1) == target).all()) and loss.item() < stop_loss:
            return step, True
        if step == steps:
            return step, False
        if retain is not None and retain_weight > 0:
            r_toks, r_last, r_logp = retain
            now = wb.bridge.original_model(r_toks)[torch.arange(len(r_toks)), r_last].float().log_softmax(-1)
            loss = loss + retain_weight * F.kl_div(now, r_logp, log_target=True, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for name, m in masks.items():
            params[name].grad.mul_(m)
        opt.step()
    return steps, False


def _weight_check(before: dict[str, Tensor], after: dict[str, Tensor], masks: dict[str, Tensor]) -> dict:
    outside, inside, worst = 0, 0, 0.0
    for name, old in before.items():
        changed = after[name].detach() != old
        m = masks.get(name)
        out = changed if m is None else changed & (m == 0)
        outside += int(out.sum())
        inside += 0 if m is None else int((changed & (m != 0)).sum())
        if out.any():
            worst = max(worst, float((after[name].detach() - old)[out].abs().max()))
    return {"changed_outside": outside, "max_change_outside": worst, "changed_planted": inside,
            "planted_entries": int(sum(m.sum() for m in masks.values())), "ok": outside == 0}


def draw_neurons(layers: Sequence[int], d_mlp: int, n_facts: int, per_fact: int, seed: int | Sequence[int]) -> list[list[Neuron]]:
    """Disjoint seeded sets of ``per_fact`` (layer, neuron) pairs, uniform over the eligible layers."""
    eligible = [(l, i) for l in layers for i in range(d_mlp)]
    if per_fact < 1 or n_facts * per_fact > len(eligible):
        raise BadInput(f"cannot plant {n_facts} × {per_fact} disjoint neurons in {len(eligible)} eligible ones "
                       f"(layers {list(layers)}); use fewer facts, fewer neurons per fact or more layers")
    order = np.random.default_rng(seed).permutation(len(eligible))
    return [sorted(eligible[j] for j in order[i * per_fact:(i + 1) * per_fact]) for i in range(n_facts)]


def inject_facts(wb: Workbench, facts: Sequence[Fact], *, neurons_per_fact: int = 8, layers: Sequence[int] | None = None,
                 steps: int = 100, lr: float = 1e-2, seed: int | Sequence[int] = 0, parts: str = "value", stop_loss: float = 0.05,
                 heldout: Sequence[Sequence[str]] | None = None, others: Sequence[Fact] | None = None,
                 retain: Sequence[Fact] | None = None, retain_weight: float = 1.0) -> Injection:
    """Plant each fact in its own random neurons of ``wb`` (in place; :meth:`Injection.undo` reverts).

    Defaults follow Chang et al. (value vectors, Adam lr 1e-2, at most 100 steps, stop at loss
    0.05 — here also only once every prompt ranks the answer first). ``layers`` default to all;
    ``others`` (e.g. :func:`corpus_facts`) are scored before and after for collateral change, split
    into facts of the injected relations and of other relations. ``retain`` (facts, not Chang's design)
    adds a KL term keeping their next-token distributions as before; score ``others`` disjoint from it.
    """
    t0 = time.perf_counter()
    if parts not in PARTS:
        raise BadInput(f"unknown injection parts {parts!r}; choose value or key_value")
    if not facts or steps < 1 or not lr > 0:
        raise BadInput("injection needs at least one fact, steps >= 1 and lr > 0")
    if heldout is not None and len(heldout) != len(facts):
        raise BadInput(f"{len(heldout)} held-out prompt lists for {len(facts)} facts; give one per fact")
    layers = list(range(wb.n_layers)) if layers is None else sorted({wb.check_layer(l) for l in layers})
    planted = draw_neurons(layers, wb.d_mlp, len(facts), neurons_per_fact, seed)
    answers = [answer_and_alternatives(wb, f)[0] for f in facts]
    model = wb.bridge.original_model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rec0, mar0 = recall_and_margin(wb, facts)
    oth0 = recall_and_margin(wb, others) if others else None
    kept = None
    if retain:
        r_toks, r_last = _batch(wb, [f.prompt for f in retain])
        with torch.inference_mode():
            r_logp = model(r_toks)[torch.arange(len(r_toks)), r_last].float().log_softmax(-1)
        kept = (r_toks, r_last, r_logp.clone())
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    all_masks: dict[str, Tensor] = {}
    used, own, converged = [], [], []
    was_training = model.training
    model.eval()
    try:
        for fact, answer, neurons in zip(facts, answers, planted):
            masks = _masks(wb, neurons, parts)
            for n, p in model.named_parameters():
                p.requires_grad_(n in masks)
            n_steps, ok = _train_fact(wb, [fact.prompt, *fact.paraphrases], answer, masks, steps=steps, lr=lr,
                                      stop_loss=stop_loss, retain=kept, retain_weight=retain_weight)
            used.append(n_steps)
            converged.append(ok)
            own.append(bool(recall_and_margin(wb, [fact])[0][0]))
            for n, m in masks.items():
                all_masks[n] = torch.maximum(all_masks[n], m) if n in all_masks else m
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
            p.grad = None
        model.train(was_training)
    rec, mar = recall_and_margin(wb, facts)
    train_rec = [float(_share(wb, [f.prompt, *f.paraphrases], a)) for f, a in zip(facts, answers)]
    held = [None] * len(facts) if heldout is None else \
        [float(_share(wb, list(h), a)) if h else None for h, a in zip(heldout, answers)]
    check = _weight_check(before, dict(model.named_parameters()), all_masks)
    wb.weight_hash = tensor_hash(model.state_dict())
    return Injection(facts=list(facts), planted=planted, layers=layers, parts=parts,
                     recalled_before=rec0.tolist(), recalled_own=own, recalled=rec.tolist(), converged=converged, train_recall=train_rec,
                     heldout_recall=held, margins_before=mar0.tolist(), margins=mar.tolist(), steps=used,
                     others=_others(wb, others, oth0, {f.relation for f in facts}), weight_check=check, seconds=time.perf_counter() - t0,
                     originals={n: before[n] for n in all_masks})


def inject_each(wb: Workbench, facts: Sequence[Fact], rankers: dict[str, Callable[[Workbench, Fact], Sequence]], *,
                seed: int = 0, heldout: Sequence[Sequence[str]] | None = None, **kw) -> tuple[list[Injection], dict]:
    """Chang et al.'s design: each fact injected alone (neurons seeded by ``(seed, i)``), every
    ranker run on that model (``rank(wb, fact)`` -> ranking), the injection undone before the next.
    Returns the one-fact injections and, per ranker name, one ranking per fact."""
    injections, ranked = [], {name: [] for name in rankers}
    for i, fact in enumerate(facts):
        done = inject_facts(wb, [fact], seed=(seed, i), heldout=None if heldout is None else [heldout[i]], **kw)
        try:
            for name, rank in rankers.items():
                ranked[name].append(rank(wb, fact))
        finally:
            done.undo(wb)
        injections.append(done)
    return injections, ranked


def _share(wb: Workbench, prompts: list[str], answer: int) -> float:
    return float((_last_logits(wb, prompts).argmax(-1) == answer).float().mean())


def _others(wb: Workbench, others: Sequence[Fact] | None, before, relations: set[str]) -> dict:
    if not others:
        return {}
    (rec0, mar0), (rec1, mar1) = before, recall_and_margin(wb, others)
    same = np.array([f.relation in relations for f in others])
    split = {f"{k}_{w}": float(r[m].mean()) if m.any() else None for w, m in (("same", same), ("other", ~same))
             for k, r in (("recall_before", rec0), ("recall_after", rec1))}
    return {"n": len(others), "recall_before": float(rec0.mean()), "recall_after": float(rec1.mean()), **split,
            "lost": int((rec0 & ~rec1).sum()), "gained": int((~rec0 & rec1).sum()),
            "margin_change": float((mar1 - mar0).mean()), "margin_abs_change": float(np.abs(mar1 - mar0).mean())}
