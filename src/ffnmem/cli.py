"""The ``ffnmem`` command line. Every command loads models offline; errors print one line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ffnmem.errors import BadInput, FfnmemError

app = typer.Typer(
    help="ffnmem: read the feed-forward layers of causal transformers as key-value memories.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: smollm2-135m, tiny-2l, a GGUF file, "
                                       "a Hugging Face folder or an ffnmem checkpoint. See `ffnmem models`.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, or auto (CUDA when present).")]


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all``, ``5``, ``0-3,10`` or ``-1`` (from the top) into sorted layer indices."""
    if spec == "all":
        return list(range(n_layers))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.strip().split("-", 1) if not part.strip().startswith("-") else (part, part)
                layers.update(range(int(lo), int(hi) + 1))
            else:
                layers.add(int(part) % n_layers if int(part) < 0 else int(part))
    except ValueError:
        raise BadInput(f"cannot read layers {spec!r}: use 'all', '5', '0-3,10' or '-1'") from None
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise BadInput(f"layer {bad[0]} is out of range: the model has layers 0..{n_layers - 1}")
    return sorted(layers)


def _load(model: str, device: str):
    from ffnmem.models import load_model

    with console.status(f"loading {model} …"):
        return load_model(model, device=device)


@app.command()
def models() -> None:
    """List the models this machine can load offline."""
    from ffnmem.models import list_models

    table = Table("spec", "source", "available", "detail", title="models available offline")
    for e in list_models():
        table.add_row(e.spec, e.source, "yes" if e.available else "no", e.detail)
    out.print(table)


@app.command()
def demo(
    model: ModelOpt = "smollm2-135m",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, plots and result/.")] = Path("ffnmem-out/demo"),
    top: Annotated[int, typer.Option(help="FFN memories shown per fact.")] = 8,
    device: DeviceOpt = "auto",
) -> None:
    """The main job: recall of shipped capital-city facts, the FFN memories that write each answer
    (direct logit attribution per neuron) and their value vectors in vocabulary space."""
    from ffnmem.demo import run_demo

    wb = _load(model, device)
    with console.status("attributing facts to FFN memories …"):
        report = run_demo(wb, out_dir, top_neurons=top)
    out.print(f"report written to [bold]{report}[/bold]")


@app.command()
def capture(
    model: ModelOpt = "smollm2-135m",
    text: Annotated[list[Path] | None, typer.Option(help="Corpus files (.txt, .jsonl, .parquet, saved HF dataset); "
                                                   "default: the built-in stdlib-docstring corpus.")] = None,
    layers: Annotated[str, typer.Option(help="Layers: all, 5, 0-3,10, -1.")] = "all",
    kind: Annotated[list[str], typer.Option(help="Activation kinds: post (coefficients), pre, out, mlp_in, "
                                            "resid_pre, resid_mid, resid_post.")] = ["post"],  # noqa: B006
    window: Annotated[int, typer.Option(help="Tokens per window.")] = 128,
    max_tokens: Annotated[int | None, typer.Option(help="Stop after about this many tokens.")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    k: Annotated[int, typer.Option(help="Top-k examples kept per unit.")] = 20,
    shards: Annotated[bool, typer.Option(help="Also write every activation to disk in shards (float16).")] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/capture"),
    device: DeviceOpt = "auto",
) -> None:
    """Stream FFN activations over a corpus: per-unit statistics and top-k examples, with bounded memory."""
    from ffnmem import capture as cap
    from ffnmem.corpus import default_corpus, read_texts, windows
    from ffnmem.results import Result, make_provenance

    if k < 1 or batch_size < 1:
        raise BadInput("--k and --batch-size must be at least 1")
    wb = _load(model, device)
    docs = read_texts(text) if text else default_corpus()
    max_windows = None if max_tokens is None else max(1, max_tokens // window)
    tokens = windows(wb, docs, window=window, max_windows=max_windows)
    if k > tokens.numel():
        raise BadInput(f"--k {k} is larger than the corpus ({tokens.numel()} tokens)")
    names = cap.hook_names(wb, kind, parse_layers(layers, wb.n_layers))
    stats, topk = cap.reduce(wb, tokens, names, [cap.NeuronStats(), cap.TopK(k)], batch_size=batch_size)
    tensors = {"tokens": tokens}
    for name, d in stats.result().items():
        tensors.update({f"{name}/{key}": v for key, v in d.items()})
    for name, d in topk.result().items():
        tensors.update({f"{name}/topk_{key}": v for key, v in d.items()})
    prov = make_provenance(wb, data_hash=cap.tokens_hash(tokens), corpus=[str(t) for t in text] if text else "stdlib-docstrings")
    Result(kind="capture", tensors=tensors, provenance=prov,
           meta={"hooks": names, "window": window, "k": k, "n_tokens": tokens.numel()}).save(out_dir)
    if shards:
        cap.write_shards(wb, tokens, names, out_dir.with_name(out_dir.name + "-shards"), batch_size=batch_size)
    out.print(f"captured {len(names)} hooks over {tokens.numel():,} tokens → [bold]{out_dir}[/bold]")

FactsOpt = Annotated[list[str], typer.Option("--facts", "-f", help="Fact file(s) (.jsonl), a folder, or 'all' "
                                              "(every set in data/facts).")]


def _facts(facts: list[str], relation: list[str] | None, limit: int | None):
    from ffnmem.facts import load_facts

    return load_facts(list(facts), relations=relation or None, limit_per_relation=limit)


@app.command()
def recall(
    facts: FactsOpt = ["all"],  # noqa: B006
    model: ModelOpt = "smollm2-135m",
    relation: Annotated[list[str] | None, typer.Option(help="Only these relations.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many facts per relation.")] = None,
    scoring: Annotated[str, typer.Option(help="first_token or sequence (full answer log-probability).")] = "first_token",
    k: Annotated[int, typer.Option(help="Top-k accuracy cut-off.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 16,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/recall"),
    device: DeviceOpt = "auto",
) -> None:
    """Recall of a fact set: top-1/top-k accuracy, p(answer), rank and loss in bits, per relation."""
    from ffnmem.recall import plot_recall, recall as run_recall

    fs = _facts(facts, relation, limit)
    wb = _load(model, device)
    res = run_recall(wb, fs, scoring=scoring, k=k, batch_size=batch_size, progress=True)
    res.save(out_dir / "result")
    plot_recall(res, out_dir / "recall.png")
    table = Table("relation", "n", "top-1", f"top-{k}", "p(answer)", "loss bits", title=f"recall ({scoring})")
    for r in res.table("relations").itertuples():
        table.add_row(r.relation, str(r.n), f"{r.top1:.2f}", f"{getattr(r, f'top{k}'):.2f}", f"{r.p_answer:.3f}",
                      f"{r.loss_bits:.2f}")
    out.print(table)
    out.print(f"results written to [bold]{out_dir}[/bold] (result/, recall.png)")


@app.command()
def attribute(
    prompt: Annotated[str, typer.Argument(help="The prompt, e.g. 'The capital of France is'.")],
    answer: Annotated[str, typer.Option(help="One-token answer with its leading space, e.g. ' Paris'.")],
    model: ModelOpt = "smollm2-135m",
    distractor: Annotated[str | None, typer.Option(help="Attribute the logit difference answer − distractor.")] = None,
    top: Annotated[int, typer.Option(help="Neurons listed.")] = 20,
    ig_steps: Annotated[int, typer.Option(help="Integrated-gradient steps (0: skip knowledge neurons).")] = 0,
    corrupt: Annotated[str | None, typer.Option(help="Corrupted prompt of the same token length: adds "
                                                     "attribution patching.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/attribute"),
    device: DeviceOpt = "auto",
) -> None:
    """Which FFN neurons write ANSWER after PROMPT: direct logit attribution per neuron and per layer,
    optionally integrated gradients (knowledge neurons) and attribution patching."""
    from ffnmem.attribute_cmd import run_attribute

    wb = _load(model, device)
    rows, where = run_attribute(wb, prompt, answer, out_dir, distractor=distractor, top=top, ig_steps=ig_steps,
                                corrupt=corrupt)
    table = Table("layer", "neuron", "direct effect", "coefficient", title=f"top FFN neurons for {answer!r}")
    for r in rows[:top]:
        table.add_row(str(r["layer"]), str(r["neuron"]), f"{r['direct_effect']:.3f}", f"{r['coefficient']:.3f}")
    out.print(table)
    out.print(f"results written to [bold]{where}[/bold]")


@app.command()
def trace(
    facts: FactsOpt = ["capital_of.jsonl"],  # noqa: B006
    model: ModelOpt = "smollm2-135m",
    relation: Annotated[list[str] | None, typer.Option(help="Only these relations.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many facts per relation.")] = 5,
    samples: Annotated[int, typer.Option(help="Noise samples per fact.")] = 10,
    window: Annotated[int, typer.Option(help="Layers restored together for MLP / attention.")] = 10,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    max_rows: Annotated[int, typer.Option(help="Rows per batched forward pass.")] = 256,
    kind: Annotated[list[str], typer.Option(help="States restored: resid, mlp, attn.")] = ["resid", "mlp", "attn"],  # noqa: B006
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Result folder.")] = Path("ffnmem-out/trace"),
    device: DeviceOpt = "auto",
) -> None:
    """Causal tracing (Meng et al. 2022) over a fact set: per-fact heatmaps, written as each fact
    finishes, and the average aligned on subject / last tokens."""
    from ffnmem.trace_cmd import run_trace

    fs = _facts(facts, relation, limit)
    wb = _load(model, device)
    peaks = run_trace(wb, fs, out_dir, n_samples=samples, window=window, seed=seed, max_rows=max_rows,
                      kinds=tuple(kind))
    for kind, (layer, pos, value) in peaks.items():
        out.print(f"{kind}: peak mean indirect effect {value:.3f} at layer {layer}, {pos} token")
    out.print(f"results written to [bold]{out_dir}[/bold] (average.png, facts/*.png, result/)")


def _corpus_tokens(wb, text, window: int, max_tokens: int | None):
    from ffnmem.corpus import default_corpus, read_texts, windows

    if window > wb.n_ctx:
        raise BadInput(f"--window {window} is longer than the context of {wb.model_id} ({wb.n_ctx} tokens)")
    docs = read_texts(text) if text else default_corpus()
    max_windows = None if max_tokens is None else max(1, max_tokens // window)
    return windows(wb, docs, window=window, max_windows=max_windows)


@app.command()
def keys(
    model: ModelOpt = "smollm2-135m",
    text: Annotated[list[Path] | None, typer.Option(help="Corpus files (.txt, .jsonl, .parquet, saved HF dataset); "
                                                   "default: the built-in stdlib-docstring corpus.")] = None,
    layers: Annotated[str, typer.Option(help="Layers to mine: all, 5, 0-3,10, -1.")] = "all",
    window: Annotated[int, typer.Option(help="Tokens per window.")] = 128,
    max_tokens: Annotated[int | None, typer.Option(help="Stop after about this many tokens.")] = 16384,
    k: Annotated[int, typer.Option(help="Top trigger examples kept per key.")] = 20,
    value_k: Annotated[int, typer.Option(help="Top value tokens checked for agreement.")] = 10,
    n_triggers: Annotated[int, typer.Option(help="Top trigger examples whose next token is checked.")] = 10,
    cards: Annotated[int, typer.Option(help="Neuron cards written per layer.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the shuffled-pairing baseline.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("ffnmem-out/keys"),
    device: DeviceOpt = "auto",
) -> None:
    """Key-value memories: mine each key's top trigger examples over a corpus, read values in
    vocabulary space, measure key-value agreement by layer against a shuffled baseline, and write
    neuron cards and a report (Markdown + HTML)."""
    from ffnmem.keys_job import run_keys

    if k < 1 or value_k < 1 or n_triggers < 1 or batch_size < 1 or cards < 0:
        raise BadInput("--k, --value-k, --n-triggers and --batch-size must be at least 1 (--cards at least 0)")
    wb = _load(model, device)
    chosen = parse_layers(layers, wb.n_layers)
    tokens = _corpus_tokens(wb, text, window, max_tokens)
    usable = tokens.shape[0] * (tokens.shape[1] - 1)
    if k > usable:
        raise BadInput(f"--k {k} is larger than the corpus ({usable} usable token positions); give more text or a smaller --k")
    report = run_keys(wb, tokens, chosen, out_dir, k=k, value_k=value_k, n_triggers=n_triggers, seed=seed,
                      cards_per_layer=cards, corpus=",".join(map(str, text)) if text else "stdlib-docstrings",
                      batch_size=batch_size)
    out.print(f"report written to [bold]{report}[/bold] (HTML: {report.with_suffix('.html')})")


@app.command()
def neuron(
    layer: Annotated[int, typer.Argument(help="Layer index (negative counts from the top).")],
    index: Annotated[int, typer.Argument(help="Neuron (memory) index within the layer.")],
    model: ModelOpt = "smollm2-135m",
    triggers: Annotated[Path | None, typer.Option(help="A triggers/ result written by `ffnmem keys` "
                                                  "(else the layer is mined over --max-tokens of the corpus).")] = None,
    text: Annotated[list[Path] | None, typer.Option(help="Corpus files; default: the built-in corpus.")] = None,
    window: Annotated[int, typer.Option(help="Tokens per window.")] = 128,
    max_tokens: Annotated[int, typer.Option(help="Tokens mined when no --triggers is given.")] = 8192,
    k: Annotated[int, typer.Option(help="Trigger examples shown.")] = 10,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default ffnmem-out/neuron-L-N.html).")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """A neuron card: one memory's trigger examples, value tokens and activation histogram, as HTML."""
    from ffnmem import triggers as T
    from ffnmem.cards import neuron_card
    from ffnmem.results import Result

    wb = _load(model, device)
    layer = wb.check_layer(layer)
    if triggers is not None:
        tr = T.from_result(Result.load(triggers))
    else:
        tr = T.mine(wb, _corpus_tokens(wb, text, window, max_tokens), [layer], k=k, progress="mining")
    card = neuron_card(wb, tr, layer, index, n_examples=k)
    path = card.save(out_file or Path(f"ffnmem-out/neuron-{layer}-{index}.html"))
    for r in card.examples[:5]:
        out.print(f"  m={r['coeff']:7.3f}  …{r['context'][-40:]!r} [{r['trigger']!r}] → {r['next']!r}", highlight=False)
    out.print(f"value promotes: {', '.join(repr(t) for t, _ in card.top_tokens)}", highlight=False)
    out.print(f"card written to [bold]{path}[/bold]")


facts_app = typer.Typer(help="Synthetic fact corpora with controlled exposure.", no_args_is_help=True)
app.add_typer(facts_app, name="facts")
PresetOpt = Annotated[str, typer.Option(help="Training preset: tiny (CPU, ~1 min) or paper (GPU).")]


@facts_app.command("make")
def facts_make(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for corpus.txt, facts.jsonl, queries.jsonl.")] = Path("ffnmem-out/facts"),
    preset: PresetOpt = "tiny",
    entities: Annotated[int | None, typer.Option(help="Number of invented entities (default: the preset's).")] = None,
    law: Annotated[str | None, typer.Option(help="Exposure law: bins, zipf or loguniform.")] = None,
    bins: Annotated[str | None, typer.Option(help="Exposure bins, comma-separated, e.g. 1,2,4,8.")] = None,
    zipf_a: Annotated[float | None, typer.Option(help="Zipf exponent a (law=zipf).")] = None,
    max_exposure: Annotated[int | None, typer.Option(help="Largest exposure count (zipf, loguniform).")] = None,
    values: Annotated[int | None, typer.Option(help="Values per attribute.")] = None,
    noise: Annotated[float | None, typer.Option(help="Share of mentions with a random value (sets the data entropy).")] = None,
    junk: Annotated[float | None, typer.Option(help="Share of junk documents.")] = None,
    seed: Annotated[int | None, typer.Option(help="Generator seed.")] = None,
) -> None:
    """Generate a synthetic biography corpus: invented entities, attributes, exposure per entity."""
    import dataclasses

    from ffnmem.synthetic import generate
    from ffnmem.training import preset as get_preset

    cfg, _ = get_preset(preset)
    try:
        bin_tuple = tuple(int(b) for b in bins.split(",")) if bins else None
    except ValueError:
        raise BadInput(f"cannot read --bins {bins!r}: give integers like 1,2,4,8") from None
    changes = {k: v for k, v in dict(n_entities=entities, law=law, bins=bin_tuple, zipf_a=zipf_a,
                                     max_exposure=max_exposure, n_values=values, value_noise=noise,
                                     junk_share=junk, seed=seed).items() if v is not None}
    corpus = generate(dataclasses.replace(cfg, **changes))
    corpus.save(out_dir)
    out.print(f"{len(corpus.entities)} entities, {len(corpus.facts)} facts, {len(corpus.documents)} documents, "
              f"data entropy {corpus.value_entropy_bits():.3f} bits/value → [bold]{out_dir}[/bold]")


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints/, curves.json, config.json.")] = Path("ffnmem-out/train"),
    facts: Annotated[Path | None, typer.Option(help="Corpus folder from `ffnmem facts make` (default: the preset's).")] = None,
    preset: PresetOpt = "tiny",
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default: the preset's).")] = None,
    d_model: Annotated[int | None, typer.Option(help="Residual width.")] = None,
    d_mlp: Annotated[int | None, typer.Option(help="FFN width.")] = None,
    layers: Annotated[int | None, typer.Option(help="Number of layers.")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (init and data order).")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint in --out.")] = True,
    device: DeviceOpt = "auto",
) -> None:
    """Train a small TransformerLens-native model on a synthetic fact corpus (resumable)."""
    import dataclasses

    from ffnmem.synthetic import FactCorpus, generate
    from ffnmem.training import preset as get_preset
    from ffnmem.training import train as run_train

    fcfg, tcfg = get_preset(preset)
    corpus = FactCorpus.load(facts) if facts else generate(fcfg)
    changes = {k: v for k, v in dict(steps=steps, d_model=d_model, d_mlp=d_mlp, n_layers=layers, seed=seed).items()
               if v is not None}
    run = run_train(corpus, dataclasses.replace(tcfg, **changes), out_dir, device=device, resume=resume)
    last = run.evals[-1] if run.evals else {}
    out.print(f"step {run.step}: recall {last.get('accuracy', float('nan')):.3f}, KL gap "
              f"{last.get('kl_bits', float('nan')):.3f} bits, {run.tokens_seen / max(run.seconds, 1e-9):,.0f} tokens/s "
              f"→ [bold]{out_dir}[/bold]")


@app.command("exposure")
def exposure(
    run_dir: Annotated[Path, typer.Option("--run", help="Run folder written by `ffnmem train`.")] = Path("ffnmem-out/train"),
    facts: Annotated[Path | None, typer.Option(help="Corpus folder (default: regenerate from the run's config).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for result/ and the PNG plots.")] = Path("ffnmem-out/exposure"),
    heldout: Annotated[bool, typer.Option(help="Query with held-out paraphrase templates.")] = False,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Recall vs exposure of a trained run: per-bin accuracy and loss bits with CIs, logistic fit,
    bits per parameter, cross-entropy = data entropy + KL gap over training."""
    import json

    from ffnmem.frequency import exposure_report
    from ffnmem.synthetic import FactConfig, FactCorpus, generate
    from ffnmem.training import load_run

    wb, curves = load_run(run_dir, device=device)
    if facts:
        corpus = FactCorpus.load(facts)
    else:
        try:
            corpus = generate(FactConfig.from_dict(json.loads((run_dir / "config.json").read_text())["facts"]))
        except (OSError, KeyError, ValueError):
            raise BadInput(f"{run_dir}/config.json is missing or damaged; pass --facts") from None
    res = exposure_report(wb, corpus, curves.get("evals", []), out_dir, n_boot=n_boot, seed=seed, heldout=heldout)
    table = Table("exposures", "n", "recall", "95% CI", "loss bits", title="recall vs exposure")
    for b in res.table("bins").to_dict("records"):
        table.add_row(str(b["exposures"]), str(b["n"]), f"{b['accuracy']:.3f}",
                      f"[{b['accuracy_lo']:.3f}, {b['accuracy_hi']:.3f}]", f"{b['loss_bits']:.2f}")
    out.print(table)
    cap = res.meta["capacity"]
    out.print(f"Spearman over bins {res.meta['spearman_accuracy']:.3f}; capacity {cap['bits']:.0f} bits "
              f"= {cap['bits_per_param']:.4f} bits/param; → [bold]{out_dir}[/bold]")


@app.command("compare-architectures")
def compare_architectures(
    preset: Annotated[str, typer.Option(help="Preset: tiny (CPU, a few minutes) or paper.")] = "tiny",
    variants: Annotated[str | None, typer.Option(help="Comma list, e.g. causal,prefix-nopos,mlm-rope (default: preset's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the number of training steps.")] = None,
    mask_rate: Annotated[float | None, typer.Option(help="Masking rate of the masked LM, in (0, 1).")] = None,
    match: Annotated[bool, typer.Option(help="Require equal (non-positional) parameter counts.")] = True,
    seed: Annotated[int | None, typer.Option(help="Seed of the corpus and of every variant's training.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, PNGs and result/.")] = Path("ffnmem-out/architectures"),
    device: DeviceOpt = "cpu",
) -> None:
    """Causal vs prefix vs masked LM, with and without positions, trained on the same synthetic
    facts: recall by exposure, bits/param, CE = H + KL, signal fraction, position probe, FFN share
    of attribution and attention effective rank; a Markdown report with one PNG per comparison."""
    import dataclasses

    from ffnmem.architectures import compare, preset as get_preset, write_report

    cfg = get_preset(preset)
    tr = dataclasses.replace(cfg.train, **{k: v for k, v in dict(steps=steps, seed=seed).items() if v is not None})
    fc = dataclasses.replace(cfg.facts, seed=seed) if seed is not None else cfg.facts
    changes = {"train": tr, "facts": fc, "match_params": match}
    if variants:
        changes["variants"] = tuple(v.strip() for v in variants.split(",") if v.strip())
    if mask_rate is not None:
        changes["mask_rate"] = mask_rate
    cfg = dataclasses.replace(cfg, **changes)
    cfg.objectives()  # validate before training anything
    rows = write_report(compare(cfg, device=device), cfg, out_dir)
    table = Table("variant", "recall", "bits/param", "probe MAE (last)", "FFN share", title="architectures")
    for r in rows:
        table.add_row(r["variant"], f"{r['accuracy']:.3f}", f"{r['bits_per_param']:.4f}",
                      f"{r['probe_mae_last']:.2f}", f"{r['ffn_share']:.2f}")
    out.print(table)
    out.print(f"report → [bold]{out_dir / 'report.md'}[/bold]")


def main() -> None:
    """Entry point: run the app; user errors become one line on stderr and a non-zero exit."""
    logging.basicConfig(level=os.environ.get("FFNMEM_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        app(standalone_mode=False)
    except FfnmemError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: results already written are intact")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore", module="transformer_lens")
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
