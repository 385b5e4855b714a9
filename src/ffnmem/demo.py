"""The main job: where does a small real model keep a handful of facts?

For each shipped fact (``data/demo_facts.jsonl``) on the chosen model: top-1 recall, the answer's
probability, the FFN memories with the largest direct effect on the answer logit, and those
memories' value vectors read in vocabulary space. Writes ``report.md`` with PNG plots and a
``result/`` folder (tables + tensors + provenance) to the output folder.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ffnmem.attribution import DirectEffects, direct_effects  # noqa: E402
from ffnmem.errors import BadInput  # noqa: E402
from ffnmem.keyvalue import value_tokens  # noqa: E402
from ffnmem.paths import atomic_write_text  # noqa: E402
from ffnmem.results import Result, make_provenance, table_from_rows  # noqa: E402
from ffnmem.workbench import Workbench  # noqa: E402

log = logging.getLogger(__name__)


def demo_facts() -> list[dict]:
    """The facts shipped for the main job (capital cities)."""
    text = resources.files("ffnmem").joinpath("data/demo_facts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_demo(wb: Workbench, out_dir: str | Path, *, facts: list[dict] | None = None,
             top_neurons: int = 8, top_tokens: int = 6) -> Path:
    """Run the main job and write the report; returns the path of ``report.md``."""
    facts = demo_facts() if facts is None else facts
    if not facts:
        raise BadInput("no facts to run: give at least one")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    answers = [wb.encode(f["target"], prepend_bos=False)[0] for f in facts]  # first-token scoring
    fx = direct_effects(wb, [f["prompt"] for f in facts], answers)
    fact_rows, neuron_rows = [], []
    for b, f in enumerate(facts):
        fact_rows.append({"subject": f["subject"], "prompt": f["prompt"], "target": f["target"],
                          "predicted": wb.decode(fx.top_pred[b]), "correct": int(fx.top_pred[b]) == answers[b],
                          "p_answer": float(fx.probs[b]), "ffn_direct": float(fx.mlp[b].sum()),
                          "attn_direct": float(fx.attn[b].sum())})
        for rank, (layer, neuron, effect) in enumerate(fx.top(b, top_neurons)):
            m = float(fx.coeffs[b, layer, neuron])
            proj = value_tokens(wb, layer, [neuron], k=top_tokens, signs=torch.tensor([1.0 if m >= 0 else -1.0]))
            neuron_rows.append({"subject": f["subject"], "rank": rank + 1, "layer": layer, "neuron": neuron,
                                "direct_effect": effect, "coefficient": m, "answer_rank": proj.rank_of(answers[b])[0],
                                "value_top_tokens": [wb.decode(i) for i in proj.top_ids[0].tolist()]})
    result = Result(kind="demo", tables={"facts": table_from_rows(fact_rows), "neurons": table_from_rows(neuron_rows)},
                    tensors={"neuron_dla": fx.neurons, "mlp_dla": fx.mlp, "attn_dla": fx.attn},
                    meta={"scoring": "first token of the target", "position": "last prompt token"},
                    provenance=make_provenance(wb, data_hash="ffnmem:data/demo_facts.jsonl"))
    result.save(out / "result")
    _plot_layers(fx, facts, out / "layer_dla.png")
    _plot_neurons(neuron_rows, out / "top_neurons.png")
    report = out / "report.md"
    atomic_write_text(report, _markdown(wb, fact_rows, neuron_rows, fx))
    return report


def _plot_layers(fx: DirectEffects, facts: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(facts) + 1.8), sharey=True)
    vmax = float(torch.cat([fx.mlp, fx.attn]).abs().max())
    for ax, data, title in ((axes[0], fx.mlp, "FFN layers"), (axes[1], fx.attn, "attention layers")):
        im = ax.imshow(data.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(f"direct effect on the answer logit: {title}")
        ax.set_xlabel("layer")
    axes[0].set_yticks(range(len(facts)), [f["subject"] for f in facts])
    fig.colorbar(im, ax=axes, shrink=0.8, label="logit")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plot_neurons(rows: list[dict], path: Path) -> None:
    subjects = list(dict.fromkeys(r["subject"] for r in rows))
    cols = 4
    nrows = (len(subjects) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.4 * nrows), squeeze=False)
    for ax, subject in zip(axes.flat, subjects):
        mine = [r for r in rows if r["subject"] == subject]
        labels = [f"L{r['layer']}.{r['neuron']}" for r in mine][::-1]
        ax.barh(labels, [r["direct_effect"] for r in mine][::-1], color="#3b75af")
        ax.set_title(subject, fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(subjects):]:
        ax.axis("off")
    fig.suptitle("FFN memories with the largest direct effect on the answer (logit units)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(wb: Workbench, facts: list[dict], neurons: list[dict], fx: DirectEffects) -> str:
    n_ok = sum(r["correct"] for r in facts)
    lines = [f"# ffnmem report: where {wb.model_id} keeps {len(facts)} facts", "",
             f"Model `{wb.model_id}` ({wb.n_layers} layers, d_mlp {wb.d_mlp}, weights `{wb.weight_hash[:12]}`), "
             f"device {wb.device}. Scoring: first token of the target, at the last prompt token.", "",
             f"**Top-1 recall: {n_ok}/{len(facts)}.** FFN layers' summed direct effect on the answer logit "
             f"averages {float(fx.mlp.sum(1).mean()):.2f}, attention layers' {float(fx.attn.sum(1).mean()):.2f}.", "",
             "| subject | target | predicted | p(target) | ok |", "|---|---|---|---|---|"]
    for r in facts:
        lines.append(f"| {r['subject']} | `{r['target']}` | `{r['predicted']}` | {r['p_answer']:.3f} | "
                     f"{'yes' if r['correct'] else 'no'} |")
    lines += ["", "![direct effect by layer](layer_dla.png)", "", "## Top FFN memories per fact", "",
              "Direct effect = m_i (v_i · d)/s: coefficient times the value vector's projection on the answer "
              "direction through the final norm. Value tokens: the value vector projected through the final "
              "norm weight and the unembedding (the per-position norm scale left out), flipped by the sign of m_i; "
              f"the answer's rank is its place among the {wb.d_vocab:,} tokens that memory promotes.", "",
              "![top neurons](top_neurons.png)", "", "| subject | # | memory | m_i | effect | answer's rank | tokens the memory promotes (sign(m)·v) |",
              "|---|---|---|---|---|---|---|"]
    for r in neurons:
        toks = " ".join(f"`{t.strip() or repr(t)}`" for t in r["value_top_tokens"])
        lines.append(f"| {r['subject']} | {r['rank']} | L{r['layer']}.{r['neuron']} | {r['coefficient']:.2f} | {r['direct_effect']:.3f} | {r['answer_rank']:,} | {toks} |")
    lines += ["", "Tables and tensors with provenance: `result/` (load with `ffnmem.Result.load`).", ""]
    return "\n".join(lines)
