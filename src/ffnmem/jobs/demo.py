"""The main job: where does a small real model keep a handful of facts?

For each shipped fact (``data/demo_facts.jsonl``) on the chosen model: top-1 recall, the answer's
probability, the FFN memories with the largest direct effect on the answer's *margin* over the other
facts' answers (logit(answer) − mean logit of the other capitals, so "a city comes next" cancels
out), how many other facts share each memory among their own top memories (a memory in no other
fact's top set is marked fact-specific), and those memories' value vectors read in vocabulary space. Writes ``report.md`` with PNG plots and a
``result/`` folder (tables + tensors + provenance) to the output folder.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import torch

from ffnmem.core.errors import BadInput
from ffnmem.core.paths import atomic_write_text
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact
from ffnmem.jobs.attribute import effect_tables
from ffnmem.methods.attribution import direct_effects
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_layer_dla, plot_top_neurons, save_figure

log = logging.getLogger(__name__)


def demo_facts() -> list[dict]:
    """The facts shipped for the main job (capital cities)."""
    text = resources.files("ffnmem").joinpath("data/demo_facts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def compute(wb: Workbench, facts: list[dict] | None = None, *, top_neurons: int = 8, top_tokens: int = 6) -> Result:
    """Recall, direct effects and each fact's top memories with their value tokens: a ``demo`` Result."""
    facts = demo_facts() if facts is None else facts
    if not facts:
        raise BadInput("no facts to run: give at least one")
    answers = [wb.encode(f["target"], prepend_bos=False)[0] for f in facts]  # first-token scoring
    prompts = [f["prompt"] for f in facts]
    fx = direct_effects(wb, prompts, answers)
    alts = [[a for a in dict.fromkeys(answers) if a != answers[b]] for b in range(len(facts))]
    margin = direct_effects(wb, prompts, answers, alts) if all(alts) else fx
    tops = [{(l, n) for l, n, _ in margin.top(b, top_neurons)} for b in range(len(facts))]
    fact_rows, neuron_rows = [], []
    for b, f in enumerate(facts):
        fact_rows.append({"subject": f["subject"], "prompt": f["prompt"], "target": f["target"],
                          "predicted": wb.decode(fx.top_pred[b]), "correct": int(fx.top_pred[b]) == answers[b],
                          "p_answer": float(fx.probs[b]), "ffn_direct": float(fx.mlp[b].sum()),
                          "attn_direct": float(fx.attn[b].sum())})
        for row in effect_tables(margin, [{"subject": f["subject"]}], top_neurons, rows=[b])["neurons"]:
            m, key = row["coefficient"], (row["layer"], row["neuron"])
            row["logit_effect"] = float(fx.neurons[b, key[0], key[1]])
            row["shared"] = sum(key in t for c, t in enumerate(tops) if c != b)
            row["fact_specific"] = row["shared"] == 0
            proj = value_tokens(wb, row["layer"], [row["neuron"]], k=top_tokens,
                                signs=torch.tensor([1.0 if m >= 0 else -1.0]))
            neuron_rows.append({**row, "rank": row["rank"] + 1, "answer_rank": proj.rank_of(answers[b])[0],
                                "value_top_tokens": [wb.decode(i) for i in proj.top_ids[0].tolist()]})
    model = {"model_id": wb.model_id, "n_layers": wb.n_layers, "d_mlp": wb.d_mlp, "d_vocab": wb.d_vocab,
             "weight_hash": wb.weight_hash, "device": str(wb.device)}
    return Result(kind="demo", tables={"facts": table_from_rows(fact_rows), "neurons": table_from_rows(neuron_rows)},
                  tensors={"neuron_dla": fx.neurons, "mlp_dla": fx.mlp, "attn_dla": fx.attn},
                  meta={"scoring": "first token of the target", "position": "last prompt token", "model": model,
                        "target": "margin over the other facts' answers" if all(alts) else "answer logit"},
                  provenance=make_provenance(wb, data_hash=facts_hash([Fact(**f) for f in facts]),
                                             data="ffnmem/data/demo_facts.jsonl"))


def write(result: Result, out_dir: str | Path) -> Path:
    """``result/``, ``layer_dla.png``, ``top_neurons.png`` and ``report.md``; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "result")
    facts, neurons = result.table("facts").to_dict("records"), result.table("neurons").to_dict("records")
    mlp, attn = result.tensors["mlp_dla"], result.tensors["attn_dla"]
    save_figure(plot_layer_dla(mlp, attn, [f["subject"] for f in facts]), out / "layer_dla.png", bbox_inches="tight")
    save_figure(plot_top_neurons(neurons), out / "top_neurons.png")
    report = out / "report.md"
    atomic_write_text(report, _markdown(result.meta["model"], facts, neurons, mlp, attn))
    return report


def run_demo(wb: Workbench, out_dir: str | Path, *, facts: list[dict] | None = None,
             top_neurons: int = 8, top_tokens: int = 6) -> Path:
    """The main job in one call (:func:`compute` then :func:`write`); returns the path of ``report.md``."""
    return write(compute(wb, facts, top_neurons=top_neurons, top_tokens=top_tokens), out_dir)


def _markdown(model: dict, facts: list[dict], neurons: list[dict], mlp, attn) -> str:
    n_ok = sum(r["correct"] for r in facts)
    lines = [f"# ffnmem report: where {model['model_id']} keeps {len(facts)} facts", "",
             f"Model `{model['model_id']}` ({model['n_layers']} layers, d_mlp {model['d_mlp']}, weights `{model['weight_hash'][:12]}`), "
             f"device {model['device']}. Scoring: first token of the target, at the last prompt token.", "",
             f"**Top-1 recall: {n_ok}/{len(facts)}.** FFN layers' summed direct effect on the answer logit "
             f"averages {float(mlp.sum(1).mean()):.2f}, attention layers' {float(attn.sum(1).mean()):.2f}.", "",
             "| subject | target | predicted | p(target) | ok |", "|---|---|---|---|---|"]
    for r in facts:
        lines.append(f"| {r['subject']} | `{r['target']}` | `{r['predicted']}` | {r['p_answer']:.3f} | "
                     f"{'yes' if r['correct'] else 'no'} |")
    lines += ["", "![direct effect by layer](layer_dla.png)", "", "## Top FFN memories per fact", "",
              "Direct effect = m_i (v_i · d)/s: coefficient times the value vector's projection on the answer "
              "direction through the final norm. Value tokens: the value vector projected through the final "
              "norm weight and the unembedding (the per-position norm scale left out), flipped by the sign of m_i; "
              f"the answer's rank is its place among the {model['d_vocab']:,} tokens that memory promotes.", "",
              "Memories are ranked by their direct effect on the answer's **margin**: its logit minus the mean "
             "logit of the other facts' answers, so a memory that raises every capital alike scores about 0 "
             "(*logit* is the raw effect on the answer logit, for comparison). *Shared* counts the other facts "
             "that have the memory among their own top memories; a memory in none is **fact-specific**. "
             "Direct effects are not causal effects: `ffnmem locate` validates memories by ablation.", "",
             "![top neurons](top_neurons.png)", "",
             "| subject | # | memory | m_i | margin effect | logit effect | shared | answer's rank | tokens the memory promotes (sign(m)·v) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in neurons:
        toks = " ".join(f"`{t.strip() or repr(t)}`" for t in r["value_top_tokens"])
        spec = "**0** (specific)" if r["fact_specific"] else str(r["shared"])
        lines.append(f"| {r['subject']} | {r['rank']} | L{r['layer']}.{r['neuron']} | {r['coefficient']:.2f} | "
                     f"{r['direct_effect']:.3f} | {r['logit_effect']:.3f} | {spec} | {r['answer_rank']:,} | {toks} |")
    lines += ["", "Tables and tensors with provenance: `result/` (load with `ffnmem.Result.load`).", ""]
    return "\n".join(lines)
