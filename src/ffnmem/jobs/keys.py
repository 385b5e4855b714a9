"""The ``ffnmem keys`` job: mine trigger examples, measure key-value agreement, write a report.

Writes to the output folder: ``triggers/`` (Result: examples + stats tables, provenance),
``agreement/`` (Result), ``agreement.png``, ``cards/L{l}_N{n}.html`` for a few memories per layer,
``prediction/`` (how FFN updates build the predictions of a few prompts), ``memories/`` (every mined
memory's promoted and suppressed tokens and its coefficient histogram: what ``ffnmem browse`` shows),
and ``report.md`` / ``report.html``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from ffnmem.core.paths import atomic_write_text
from ffnmem.core.workbench import Workbench
from ffnmem.jobs.params import Params
from ffnmem.methods import triggers as T
from ffnmem.methods import updates as U
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.store.provenance import make_provenance, tokens_hash
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_agreement, save_figure
from ffnmem.viz.cards import NeuronCard, histogram_coefficients, neuron_card

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = ("The capital of France is", "def read_file(path):\n    with open(path) as f:\n        return f.")


class KeyAgreementParams(Params):
    layers: list[int] | Literal["all"] = "all"
    k: int = Field(20, ge=1)
    value_k: int = Field(10, ge=1)
    n_triggers: int = Field(10, ge=1)
    n_shuffles: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1)


def agreement_result(wb: Workbench, ag: T.Agreement, tokens: torch.Tensor, p: KeyAgreementParams, seed: int,
                     corpus: str = "") -> Result:
    """A ``key_agreement`` Result of a measured agreement: tables ``layers``, ``bands`` and ``neurons``
    (one row per neuron: ``agreement`` 0/1 and ``shuffled``, its mean under shuffled pairings)."""
    bands = [{"band": b, "agreement": o, "baseline": base} for b, (o, base) in ag.bands(wb.n_layers).items()]
    tables = {"layers": table_from_rows(ag.rows()), "bands": table_from_rows(bands),
              "neurons": table_from_rows(ag.neuron_rows(wb.n_layers))}
    return Result(kind="key_agreement", tables=tables,
                  meta={"value_k": p.value_k, "n_triggers": ag.n_triggers, "params": p.model_dump()},
                  provenance=make_provenance(wb, data_hash=tokens_hash(tokens), seed=seed, params=p.model_dump(),
                                             corpus=corpus))


def _agreement(wb: Workbench, tr: T.Triggers, p: KeyAgreementParams, seed: int) -> T.Agreement:
    return T.agreement_by_layer(wb, tr, value_k=p.value_k, n_triggers=min(p.n_triggers, p.k),
                                n_shuffles=p.n_shuffles, seed=seed)


def compute_agreement(wb: Workbench, tokens: torch.Tensor, p: KeyAgreementParams, seed: int = 0, *,
                      progress: bool = False) -> Result:
    """Mine triggers over ``tokens`` at ``p.layers`` and measure agreement (the batch analysis)."""
    layers = list(range(wb.n_layers)) if p.layers == "all" else [wb.check_layer(l) for l in p.layers]
    tr = T.mine(wb, tokens, layers, k=p.k, batch_size=p.batch_size, progress="mining triggers" if progress else False)
    return agreement_result(wb, _agreement(wb, tr, p, seed), tokens, p, seed)


@dataclass(frozen=True)
class KeysRun:
    """Everything ``ffnmem keys`` computed: the Results, the neuron cards (by file name), the report."""

    triggers: Result
    agreement: Result
    measured: T.Agreement
    prediction: Result | None
    cards: dict[str, NeuronCard]
    report: str
    model_id: str
    memories: Result | None = None


def compute(wb: Workbench, tokens: torch.Tensor, p: KeyAgreementParams, *, seed: int = 0, cards_per_layer: int = 2,
            context: int = 12, prompts: tuple[str, ...] = DEFAULT_PROMPTS, corpus: str = "",
            progress: bool = True) -> KeysRun:
    """Mine triggers, measure agreement, make the cards and trace how FFN updates build ``prompts``."""
    layers = list(range(wb.n_layers)) if p.layers == "all" else [wb.check_layer(l) for l in p.layers]
    tr = T.mine(wb, tokens, layers, k=p.k, batch_size=p.batch_size, progress="mining triggers" if progress else False)
    ag = _agreement(wb, tr, p, seed)
    cards = _cards(wb, tr, cards_per_layer, context)
    builds = {q: U.build_prediction(wb, q) for q in prompts if len(wb.encode(q)) <= wb.n_ctx}
    return KeysRun(triggers=T.to_result(wb, tr, context=context, corpus=corpus, window=tokens.shape[1]),
                   agreement=agreement_result(wb, ag, tokens, p, seed, corpus), measured=ag,
                   prediction=U.to_result(wb, builds) if builds else None, cards=cards,
                   report=_report_md(wb, tr, ag, list(cards), builds, tokens), model_id=wb.model_id,
                   memories=memory_views(wb, tr, k=p.value_k))


@torch.inference_mode()
def memory_views(wb: Workbench, tr: T.Triggers, *, k: int = 10, bins: int = 24, windows: int = 32,
                 chunk: int = 256) -> Result:
    """Every mined memory's value read in vocabulary space (top/bottom ``k`` token ids and scores,
    signed as mined) and its coefficient histogram over the first ``windows`` windows: a ``memories``
    Result with tensors ``L{l}/top_ids`` ... ``L{l}/hist`` and a ``tokens`` table (id, text) decoding
    every id used, so a site can be built from it without the model."""
    tensors: dict[str, torch.Tensor] = {}
    for l in tr.layers:
        parts = [value_tokens(wb, l, list(range(s, min(s + chunk, wb.d_mlp))), k=k,
                              signs=torch.full((min(chunk, wb.d_mlp - s),), tr.sign))
                 for s in range(0, wb.d_mlp, chunk)]  # chunks: the [d_mlp, d_vocab] scores are never held at once
        for name in ("top_ids", "top_scores", "bottom_ids", "bottom_scores"):
            tensors[f"L{l}/{name}"] = torch.cat([getattr(q, name) for q in parts])
    for l, (counts, edges) in T.coefficient_histograms(wb, tr.tokens, tr.layers, bins=bins, windows=windows).items():
        tensors[f"L{l}/hist"], tensors[f"L{l}/hist_edges"] = counts, edges
    ids = torch.unique(torch.cat([tensors[f"L{l}/{n}"].flatten() for l in tr.layers for n in ("top_ids", "bottom_ids")]))
    vocab = table_from_rows([{"id": int(i), "text": wb.decode(int(i))} for i in ids.tolist()])
    return Result(kind="memories", tables={"tokens": vocab}, tensors=tensors,
                  meta={"layers": tr.layers, "k": k, "sign": tr.sign, "hist_bins": bins,
                        "hist_tokens": int(min(windows, tr.tokens.shape[0]) * (tr.tokens.shape[1] - 1))},
                  provenance=make_provenance(wb, data_hash=tokens_hash(tr.tokens)))


def write(run: KeysRun, out_dir: str | Path) -> Path:
    """``triggers/``, ``agreement/``, ``agreement.png``, ``cards/``, ``prediction/``, ``memories/`` and the report
    (Markdown and HTML); returns the path of ``report.md``."""
    out = Path(out_dir)
    (out / "cards").mkdir(parents=True, exist_ok=True)
    run.triggers.save(out / "triggers")
    run.agreement.save(out / "agreement")
    save_figure(plot_agreement(run.measured, title=f"{run.model_id}: key-value agreement by layer"),
                out / "agreement.png")
    for name, card in run.cards.items():
        card.save(out / "cards" / name)
    if run.prediction is not None:
        run.prediction.save(out / "prediction")
    if run.memories is not None:
        run.memories.save(out / "memories")
    atomic_write_text(out / "report.md", run.report)
    atomic_write_text(out / "report.html", _md_to_html(run.report))
    return out / "report.md"


def run_keys(wb: Workbench, tokens: torch.Tensor, p: KeyAgreementParams, out_dir: str | Path, **kw) -> Path:
    """The whole job in one call (:func:`compute` then :func:`write`); returns the path of ``report.md``."""
    return write(compute(wb, tokens, p, **kw), out_dir)


def _cards(wb: Workbench, tr: T.Triggers, per_layer: int, context: int) -> dict[str, NeuronCard]:
    """Cards for the memories with the largest top coefficient in each mined layer."""
    if per_layer < 1:  # --cards 0: no cards, and no histogram pass over nothing
        return {}
    chosen = {l: tr.values[l][0].topk(min(per_layer, tr.values[l].shape[1])).indices.tolist() for l in tr.layers}
    hist = histogram_coefficients(wb, tr, chosen)  # one forward pass for every card's histogram
    return {f"L{l}_N{n}.html": neuron_card(wb, tr, l, n, context=context, acts=hist[l][:, j])
            for l, neurons in chosen.items() for j, n in enumerate(neurons)}


def _report_md(wb, tr, ag, cards, builds, tokens) -> str:
    lines = [f"# Key-value memories of {wb.model_id}", "",
             f"Corpus: {tokens.shape[0]} windows × {tokens.shape[1]} tokens; top-{tr.k} trigger examples per key "
             "ranked by the signed coefficient m (BOS excluded).", "",
             f"## Agreement: value top-{ag.value_k} tokens contain the next token of one of the top-{ag.n_triggers} "
             "trigger examples", "", "![agreement](agreement.png)", "",
             "| layer | agreement % | shuffled baseline % |", "|---:|---:|---:|"]
    lines += [f"| {r['layer']} | {100 * r['agreement']:.2f} | {100 * r['baseline']:.2f} ± {100 * r['baseline_std']:.2f} |"
              for r in ag.rows()]
    lines += ["", "| band | agreement % | baseline % |", "|---|---:|---:|"]
    lines += [f"| {b} | {100 * o:.2f} | {100 * s:.2f} |" for b, (o, s) in ag.bands(wb.n_layers).items()]
    lines += ["", "## Neuron cards", ""] + [f"- [{Path(n).stem}](cards/{n})" for n in cards]
    if builds:
        lines += ["", "## How FFN updates build a prediction (Geva 2022)", ""]
        for p, b in builds.items():
            sh = b.shares()
            lines += [f"**{p!r}** → `{wb.decode(b.final_token)!r}`: keep {100 * sh['keep']:.0f} %, "
                      f"single dominant memory {100 * sh['single']:.0f} %, composed {100 * sh['compose']:.0f} % "
                      "of (position, layer) updates. Top sub-updates at the last token:", ""]
            lines += [f"- L{r['layer']} N{r['neuron']}: m={r['coeff']:.2f}, effect {r['effect']:+.3f}, "
                      f"value top token `{r['value_top_token']!r}`" for r in b.updates[:5]]
            lines.append("")
    return "\n".join(lines) + "\n"


def _md_to_html(md: str) -> str:
    """The Markdown report rendered as one HTML page (python-markdown, tables extension)."""
    import markdown

    body = markdown.markdown(md, extensions=["tables"])
    return ("<!doctype html><meta charset=utf-8><body style='font-family:sans-serif;max-width:70em'>"
            f"{body}</body>")
