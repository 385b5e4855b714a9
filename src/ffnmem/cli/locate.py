"""Where a fact lives, validated: the fact card (`locate`), the method comparison (`localize`) and
ablation of chosen memories (`ablate`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import DeviceOpt, ForceOpt, ModelOpt, _load, app, out
from ffnmem.cli.facts import FactsOpt, _facts
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.data.facts import encode_facts, load_facts
from ffnmem.jobs import factcard as card_job
from ffnmem.jobs import localization as loc_job
from ffnmem.methods.targets import alternatives as relation_alternatives
from ffnmem.methods.validation import validate

MethodsOpt = Annotated[list[str] | None, typer.Option("--method", help="Localization methods (repeat): dla, "
                                                      "attribution_patching, activation_patching, knowledge_neurons, "
                                                      "peak_neurons. Default: all of them.")]
_MEMORY = re.compile(r"L?(\d+)[.:](\d+)")


def _fmt(x) -> str:
    return "—" if x is None or x != x else f"{x:.2f}"


@app.command()
def locate(
    prompt: Annotated[str, typer.Argument(help="The prompt, e.g. 'The capital of France is'.")],
    answer: Annotated[str, typer.Argument(help="The answer the prompt should be completed with, e.g. Paris.")],
    subject: Annotated[str | None, typer.Option(help="The words of the prompt the fact is about (traced and noised); "
                                                "needed unless the prompt is a shipped fact's.")] = None,
    relation: Annotated[str | None, typer.Option(help="A shipped relation whose answers are the margin's "
                                                 "alternatives (e.g. capital_of).")] = None,
    alternative: Annotated[list[str] | None, typer.Option(help="Alternative answers for the margin (repeat); "
                                                          "default: the relation's other answers.")] = None,
    model: ModelOpt = "smollm2-135m",
    method: MethodsOpt = None,
    k: Annotated[int, typer.Option(min=1, max=64, help="Memories shown and validated per method.")] = 10,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the noise and the random sets.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for card.html and result/.")] = Path("ffnmem-out/locate"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """The fact card of a prompt: causal-tracing heatmaps and, for each localization method, the top
    FFN memories for the answer's margin over its alternatives, the tokens they promote, and their
    validation by ablation (target drop vs random matched sets, same- and other-relation collateral,
    held-out paraphrase, smallest k for half the margin). Writes OUT/card.html (open it in a browser)."""
    claim(out_dir, force=force)
    wb = _load(model, device)
    card, result = card_job.fact_card(wb, prompt, answer, subject=subject, relation=relation, alternatives=alternative,
                                      methods=tuple(method or card_job.CARD_METHODS), k=k, seed=seed)
    path = card_job.write(card, result, out_dir)
    f = card.fact
    out.print(f"{f['prompt']}{f['target']}: predicted {f['predicted']!r}, p {f['p_answer']:.3f}, margin {f['margin']:.2f}")
    table = Table("method", "top memories", "target drop", "random", "same rel.", "other rel.", "paraphrase",
                  title=f"top {k} memories ablated (zero), relative margin drop")
    for m, rows in card.memories.items():
        v = (card.validation.get(m) or [{}])[0]
        table.add_row(m, " ".join(f"L{r['layer']}.{r['neuron']}" for r in rows[:4]), _fmt(v.get("target_drop")),
                      _fmt(v.get("random_drop")), _fmt(v.get("same_relation_drop")), _fmt(v.get("other_relation_drop")),
                      _fmt(v.get("paraphrase_drop")))
    out.print(table)
    out.print(f"fact card written to {path}")


@app.command()
def localize(
    facts: FactsOpt = ["all"],  # noqa: B006
    model: ModelOpt = "smollm2-135m",
    relation: Annotated[list[str] | None, typer.Option(help="Only these relations.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many facts per relation.")] = None,
    method: MethodsOpt = None,
    k: Annotated[int, typer.Option(min=1, help="Validated set size per method.")] = 20,
    mode: Annotated[list[str] | None, typer.Option(help="Ablation modes (repeat): zero, mean, resample. "
                                                   "Default: all three.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the noise, the random sets and the collateral facts.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/localize"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Compare localization methods on a fact set: each method's top-k memories per known fact,
    validated by ablation the same way, with means, medians and 95% CIs per method and mode."""
    claim(out_dir, force=force)
    fs = _facts(facts, relation, limit)
    wb = _load(model, device)
    params = loc_job.LocalizationParams(methods=method or list(loc_job.RANKED_METHODS), k=k,
                                        modes=mode or ["zero", "mean", "resample"])
    res = loc_job.compute(wb, fs, params, seed, progress=True)
    loc_job.write(res, out_dir)
    table = Table("method", "mode", "n", "target drop", "random", "same rel.", "other rel.", "paraphrase", "k½",
                  title=f"{res.meta['n_known']} known facts of {res.meta['n_facts']}: median relative margin drop [95% CI]")
    for r in res.table("summary").to_dict("records"):
        cell = lambda c: f"{_fmt(r.get(c + '_median'))} [{_fmt(r.get(c + '_median_lo'))}, {_fmt(r.get(c + '_median_hi'))}]"  # noqa: E731
        table.add_row(r["method"], r["mode"], str(r["n_facts"]), cell("target_drop"), cell("random_drop"),
                      cell("same_relation_drop"), cell("other_relation_drop"), cell("paraphrase_drop"),
                      _fmt(r.get("k_half_median")))
    out.print(table)
    out.print(f"results written to {out_dir}/result")


@app.command()
def ablate(
    prompt: Annotated[str, typer.Argument(help="A shipped fact's prompt (its relation gives the alternatives).")],
    memories: Annotated[list[str], typer.Argument(help="Memories to ablate: LAYER.NEURON, e.g. 27.1392 24.841.")],
    model: ModelOpt = "smollm2-135m",
    mode: Annotated[list[str] | None, typer.Option(help="zero, mean, resample (repeat). Default: all three.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random sets and collateral facts.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Ablate chosen FFN memories on a shipped fact: relative drop of its margin, against random sets of
    the same layers matched on activation, on facts of the same and other relations, and on its
    held-out paraphrase."""
    pairs = []
    for m in memories:
        hit = _MEMORY.fullmatch(m.strip())
        if hit is None:
            raise BadInput(f"cannot read memory {m!r}: write LAYER.NEURON, e.g. 27.1392")
        pairs.append((int(hit[1]), int(hit[2])))
    pool = load_facts("all")
    match = [i for i, f in enumerate(pool) if f.prompt == prompt]
    if not match:
        raise BadInput(f"prompt {prompt!r} is not a shipped fact's prompt; see data/facts (or use `ffnmem locate`)")
    wb = _load(model, device)
    for l, n in pairs:
        wb.check_layer(l)
        if not 0 <= n < wb.d_mlp:
            raise BadInput(f"neuron {n} is out of range: layer {l} has neurons 0..{wb.d_mlp - 1}")
    enc = encode_facts(wb, [pool[match[0]], *card_job.collateral_pool(pool, pool[match[0]], seed=seed)])
    rows = validate(wb, enc, [pairs, *[[] for _ in enc[1:]]], k=len(pairs), modes=tuple(mode or ("zero", "mean", "resample")),
                    alternatives=relation_alternatives(enc), ks=(len(pairs),), seed=seed, only=[0])
    if not rows:
        raise BadInput(f"the model does not prefer {pool[match[0]].target!r} over the relation's other answers "
                       "(margin ≤ 0): there is no margin to ablate")
    table = Table("mode", "margin", "target drop", "random matched", "same rel.", "other rel.", "paraphrase",
                  title=f"{len(pairs)} memories ablated on {prompt!r}: relative margin drop")
    for r in rows:
        table.add_row(r["mode"], _fmt(r.get("margin_clean")), _fmt(r.get("target_drop")), _fmt(r.get("random_drop")),
                      _fmt(r.get("same_relation_drop")), _fmt(r.get("other_relation_drop")), _fmt(r.get("paraphrase_drop")))
    out.print(table)
