"""Where facts live: recall, attribution (DLA, IG, attribution patching), causal tracing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import SEED_MAX, DeviceOpt, ForceOpt, ModelOpt, _load, app, out
from ffnmem.cli.synthetic import run_exposure
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.data.facts import load_facts
from ffnmem.jobs import attribute as attribute_job
from ffnmem.jobs import recall as recall_job
from ffnmem.jobs import trace as trace_job

FactsOpt = Annotated[list[str], typer.Option("--facts", "-f", help="Fact file(s) (.jsonl), a folder, or 'all' "
                                              "(every set in data/facts).")]


def _facts(facts: list[str], relation: list[str] | None, limit: int | None):

    return load_facts(list(facts), relations=relation or None, limit_per_relation=limit)


@app.command()
def recall(
    facts: FactsOpt = ["all"],  # noqa: B006
    model: ModelOpt = "smollm2-135m",
    relation: Annotated[list[str] | None, typer.Option(help="Only these relations.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many facts per relation.")] = None,
    scoring: Annotated[str, typer.Option(help="first_token or sequence (full answer log-probability).")] = "first_token",
    k: Annotated[int, typer.Option(min=1, help="Top-k accuracy cut-off.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")] = 16,
    popularity: Annotated[bool, typer.Option(help="Also recall vs wordfreq popularity and, for wrong answers, "
                                             "whether the model names a more frequent entity of the same type "
                                             "(greedy-decodes the wrong facts).")] = True,
    bins: Annotated[int, typer.Option(min=1, help="Popularity bins (quantiles) for --popularity.")] = 5,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/recall"),
    run: Annotated[Path | None, typer.Option(help="A run folder of `ffnmem train`: measure recall against "
                                                  "exposure on its synthetic facts instead (as `ffnmem exposure`).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Recall of a fact set: top-1/top-k accuracy, p(answer), rank and loss in bits, per relation;
    with --popularity, recall vs entity popularity and the substitution rate against chance.
    With --run, recall vs exposure of a model trained by `ffnmem train`."""
    if run is not None:

        claim(out_dir, force=force)
        run_exposure(run, None, out_dir, device=device)
        return
    claim(out_dir, force=force)
    fs = _facts(facts, relation, limit)
    wb = _load(model, device)
    res = recall_job.compute(wb, fs, recall_job.RecallParams(scoring=scoring, k=k, batch_size=batch_size), progress=True)
    recall_job.write(res, out_dir)
    table = Table("relation", "n", "top-1", f"top-{k}", "p(answer)", "loss bits", title=f"recall ({scoring})")
    for r in res.table("relations").itertuples():
        table.add_row(r.relation, str(r.n), f"{r.top1:.2f}", f"{getattr(r, f'top{k}'):.2f}", f"{r.p_answer:.3f}",
                      f"{r.loss_bits:.2f}")
    out.print(table)
    if popularity:
        _popularity(wb, fs, res, out_dir, bins)
    out.print(f"results written to {out_dir} (result/, recall.png"
              + (", popularity/, recall_vs_popularity.png, substitutions.png)" if popularity else ")"))


def _popularity(wb, fs, res, out_dir: Path, bins: int) -> None:

    pop = recall_job.popularity(wb, fs, res, n_bins=bins)
    recall_job.write_popularity(pop, out_dir)
    table = Table("subject zipf", "n", "top-1 (95% CI)", "loss bits", title="recall vs subject popularity (wordfreq)")
    for b in pop.table("popularity_bins").query("by == 'subject_zipf'").itertuples():
        table.add_row(f"{b.zipf_lo:.2f}–{b.zipf_hi:.2f}", str(b.n), f"{b.accuracy:.2f} ({b.accuracy_lo:.2f}–"
                      f"{b.accuracy_hi:.2f})", f"{b.loss_bits:.2f}")
    out.print(table)
    m = pop.meta["substitution"]
    if m["n_same_type"]:
        out.print(f"substitutions: {m['n_more_frequent']}/{m['n_same_type']} same-type wrong answers name a more "
                  f"frequent entity = {m['substitution_rate']:.2f} (95% CI {m['substitution_rate_lo']:.2f}–"
                  f"{m['substitution_rate_hi']:.2f}) vs chance {m['chance_rate']:.2f}, p = {m['p_value']:.1e}; "
                  f"{m['same_type_share']:.0%} of {m['n_wrong']} wrong answers are same-type entities")
    else:
        out.print(f"substitutions: none of {m['n_wrong']} wrong answers names another entity of the same type")


@app.command()
def attribute(
    prompt: Annotated[str, typer.Argument(help="The prompt, e.g. 'The capital of France is'.")],
    answer: Annotated[str, typer.Option(help="One-token answer with its leading space, e.g. ' Paris'.")],
    model: ModelOpt = "smollm2-135m",
    distractor: Annotated[str | None, typer.Option(help="Attribute the logit difference answer − distractor.")] = None,
    top: Annotated[int, typer.Option(min=1, help="Neurons listed.")] = 20,
    ig_steps: Annotated[int, typer.Option(min=0, help="Integrated-gradient steps (0: skip knowledge neurons).")] = 0,
    corrupt: Annotated[str | None, typer.Option(help="Corrupted prompt of the same token length: adds "
                                                     "attribution patching.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/attribute"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Which FFN neurons write ANSWER after PROMPT: direct logit attribution per neuron and per layer,
    optionally integrated gradients (knowledge neurons) and attribution patching."""
    if distractor is not None and distractor.strip() == answer.strip():
        raise BadInput(f"--distractor {distractor!r} is the answer itself; give a wrong answer to contrast with")
    claim(out_dir, force=force)
    wb = _load(model, device)
    res = attribute_job.attribute(wb, prompt, answer, distractor=distractor, top=top, ig_steps=ig_steps, corrupt=corrupt)
    where = attribute_job.write(res, out_dir).parent
    table = Table("layer", "neuron", "direct effect", "coefficient", title=f"top FFN neurons for {answer!r}")
    for r in res.table("neurons").itertuples():
        table.add_row(str(r.layer), str(r.neuron), f"{r.direct_effect:.3f}", f"{r.coefficient:.3f}")
    out.print(table)
    out.print(f"results written to {where}")


@app.command()
def trace(
    facts: FactsOpt = ["capital_of.jsonl"],  # noqa: B006
    model: ModelOpt = "smollm2-135m",
    relation: Annotated[list[str] | None, typer.Option(help="Only these relations.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many facts per relation.")] = 5,
    samples: Annotated[int, typer.Option(min=1, help="Noise samples per fact.")] = 10,
    window: Annotated[int, typer.Option(min=1, help="Layers restored together for MLP / attention.")] = 10,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Noise seed.")] = 0,
    max_rows: Annotated[int, typer.Option(min=1, help="Rows per batched forward pass.")] = 256,
    kind: Annotated[list[str], typer.Option(help="States restored: resid, mlp, attn (window --window), mlp_w1, "
                                            "attn_w1 (window 1).")] = ["resid", "mlp", "attn", "mlp_w1", "attn_w1"],  # noqa: B006
    target: Annotated[str, typer.Option(help="prediction: the model's own top-1 token (ROME); gold: the fact's "
                                        "answer.")] = "prediction",
    noise_at: Annotated[str, typer.Option(help="embed: noise on the subject's embeddings (ROME); mlp0_out: on "
                                          "the residual after MLP0.")] = "embed",
    noise_sigma: Annotated[str, typer.Option(help="subject: std of the subject tokens' embeddings (ROME); "
                                             "matrix: std of the embedding matrix.")] = "subject",
    first_token: Annotated[str, typer.Option(help="strict: refuse answers whose first token is a bare space; any: "
                                             "trace the first token whatever it is (byte-level test models).")] = "strict",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/trace"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Causal tracing (Meng et al. 2022) over a fact set: a heatmap per fact and the average aligned
    on subject / last tokens."""
    params = trace_job.TraceParams(n_samples=samples, window=window, max_rows=max_rows, kinds=list(kind),
                                   target=target, noise_at=noise_at, noise_sigma=noise_sigma,
                                   first_token=first_token)  # checked before anything is written or loaded
    claim(out_dir, force=force)
    fs = _facts(facts, relation, limit)
    wb = _load(model, device)
    res = trace_job.compute(wb, fs, params, seed, progress=True)
    trace_job.write(res, out_dir)
    for kind, (layer, pos, value) in res.meta["peaks"].items():
        out.print(f"{kind}: peak mean indirect effect {value:.3f} at layer {layer}, {pos} token")
    out.print(f"results written to {out_dir} (average.png, facts/*.png, result/)")
