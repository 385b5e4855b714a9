"""Frequency and recall: synthetic fact corpora, training, recall vs exposure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ffnmem.cli.app import SEED_MAX, DeviceOpt, ForceOpt, app, check_range, out
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.data.synthetic import (
    MAX_ENTITIES,
    MAX_EXPOSURE,
    FactConfig,
    FactCorpus,
    generate,
)
from ffnmem.jobs import capacity as capacity_job
from ffnmem.jobs import exposure as exposure_job
from ffnmem.methods.training import load_run, steps_for_epochs
from ffnmem.methods.training import preset as get_preset
from ffnmem.methods.training import train as run_train

facts_app = typer.Typer(help="Synthetic fact corpora with controlled exposure.", no_args_is_help=True)
app.add_typer(facts_app, name="facts")
PresetOpt = Annotated[str, typer.Option(help="Training preset: tiny (CPU, ~1 min) or paper (GPU).")]
CorpusOpt = Annotated[Path | None, typer.Option("--facts", help="Corpus folder from `ffnmem facts make` "
                                                                "(default: the preset's).")]


def _ints(text: str, option: str, example: str) -> list[int]:
    """A comma-separated list of integers from a CLI option, or one clear line."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise BadInput(f"cannot read {option} {text!r}: give integers like {example}") from None


def _corpus_and_config(preset: str, facts: Path | None, **overrides):
    """The corpus (a folder, or the preset's) and the preset's training config with ``overrides`` that are set."""
    import dataclasses


    fcfg, tcfg = get_preset(preset)
    corpus = FactCorpus.load(facts) if facts else generate(fcfg)
    return corpus, dataclasses.replace(tcfg, **{k: v for k, v in overrides.items() if v is not None})


@facts_app.command("make")
def facts_make(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for corpus.txt, facts.jsonl, queries.jsonl.")] = Path("ffnmem-out/facts"),
    preset: PresetOpt = "tiny",
    entities: Annotated[int | None, typer.Option(min=1, max=MAX_ENTITIES, help="Number of invented entities (default: the preset's).")] = None,
    law: Annotated[str | None, typer.Option(help="Exposure law: bins, zipf or loguniform.")] = None,
    bins: Annotated[str | None, typer.Option(help="Exposure bins, comma-separated, e.g. 1,2,4,8.")] = None,
    zipf_a: Annotated[float | None, typer.Option(help="Zipf exponent a (law=zipf).")] = None,
    max_exposure: Annotated[int | None, typer.Option(min=1, max=MAX_EXPOSURE, help="Largest exposure count (zipf, loguniform).")] = None,
    values: Annotated[int | None, typer.Option(min=2, max=500, help="Values per attribute.")] = None,
    noise: Annotated[float | None, typer.Option(help="Share of mentions with a random value (sets the data entropy).")] = None,
    junk: Annotated[float | None, typer.Option(help="Share of junk documents.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=SEED_MAX, help="Generator seed.")] = None,
    force: ForceOpt = False,
) -> None:
    """Generate a synthetic biography corpus: invented entities, attributes, exposure per entity."""
    import dataclasses


    check_range("--zipf-a", zipf_a, 0, 5, lo_open=True)
    check_range("--noise", noise, 0, 1, hi_open=True)
    check_range("--junk", junk, 0, 1, hi_open=True)
    claim(out_dir, force=force, whole=True)
    cfg, _ = get_preset(preset)
    bin_tuple = tuple(_ints(bins, "--bins", "1,2,4,8")) if bins is not None else None
    changes = {k: v for k, v in dict(n_entities=entities, law=law, bins=bin_tuple, zipf_a=zipf_a,
                                     max_exposure=max_exposure, n_values=values, value_noise=noise,
                                     junk_share=junk, seed=seed).items() if v is not None}
    corpus = generate(dataclasses.replace(cfg, **changes))
    corpus.save(out_dir)
    out.print(f"{len(corpus.entities)} entities, {len(corpus.facts)} facts, {len(corpus.documents)} documents, "
              f"data entropy {corpus.value_entropy_bits():.3f} bits/value → {out_dir}")


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints/, curves.json, config.json.")] = Path("ffnmem-out/train"),
    facts: CorpusOpt = None,
    preset: PresetOpt = "tiny",
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps (default: the preset's).")] = None,
    epochs: Annotated[float | None, typer.Option(min=0.001, help="Passes over the corpus instead of --steps (each fact is then read exposures × passes times).")] = None,
    d_model: Annotated[int | None, typer.Option(min=1, help="Residual width.")] = None,
    d_mlp: Annotated[int | None, typer.Option(min=1, help="FFN width.")] = None,
    layers: Annotated[int | None, typer.Option(min=1, help="Number of layers.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=SEED_MAX, help="Training seed (init and data order).")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint in --out.")] = True,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Train a small TransformerLens-native model on a synthetic fact corpus (resumable)."""
    if epochs is not None and steps is not None:
        raise BadInput("give --steps or --epochs, not both")
    claim(out_dir, force=force)
    corpus, cfg = _corpus_and_config(preset, facts, steps=steps, d_model=d_model, d_mlp=d_mlp, n_layers=layers,
                                     seed=seed)
    if epochs is not None:
        import dataclasses
        cfg = dataclasses.replace(cfg, steps=steps_for_epochs(corpus, cfg, epochs))
    run = run_train(corpus, cfg, out_dir, device=device, resume=resume)
    last = run.evals[-1] if run.evals else {}
    out.print(f"step {run.step} ({run.epochs:.2f} passes over the corpus): recall {last.get('accuracy', float('nan')):.3f}, KL gap "
              f"{last.get('kl_bits', float('nan')):.3f} bits, {run.tokens_seen / max(run.seconds, 1e-9):,.0f} tokens/s "
              f"→ {out_dir}")


@app.command()
def capacity(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for runs/, result/ and the figures.")] = Path("ffnmem-out/capacity"),
    facts: CorpusOpt = None,
    preset: Annotated[str, typer.Option(help="capacity-100x / capacity-1000x (capacity-limited sweeps: sizes × seeds, "
                                             "fit and checks) or a training preset (tiny, paper) with --widths.")] = "tiny",
    seeds: Annotated[str, typer.Option(help="Training seeds of a capacity sweep, comma-separated.")] = "0,1,2",
    quick: Annotated[bool, typer.Option(help="Run the capacity-quick sweep instead (the same code on a tiny table; CI).")] = False,
    check: Annotated[bool, typer.Option(help="Retrain the sweep's check sizes with 2x the steps.")] = True,
    passes: Annotated[int, typer.Option(min=1, help="Capacity sweep: train every model PASSES× the preset's steps "
                                                   "(each fact seen PASSES × its exposures); the check doubles that. "
                                                   "Use it to train a size toward its plateau.")] = 1,
    sizes: Annotated[str | None, typer.Option(help="Capacity sweep: only these of the preset's sizes, comma-separated "
                                                   "(e.g. L1-d6,L1-d10; default: all).")] = None,
    widths: Annotated[str | None, typer.Option(help="Width sweep on a training preset: residual widths d_model, "
                                                    "comma-separated (multiples of the head count).")] = None,
    mlp_ratio: Annotated[int, typer.Option(min=1, help="Width sweep: d_mlp = mlp_ratio × d_model.")] = 4,
    steps: Annotated[int | None, typer.Option(min=1, help="Width sweep: optimizer steps per model (default: the preset's).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=SEED_MAX, help="Width sweep: training seed, the same for every width.")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Knowledge capacity vs model size. With a capacity preset (or --quick): train every size × seed
    (resumable, in OUT/runs/SIZE/seedN), report bits stored (unclipped, noise-aware ceiling, the old
    clipped figure), fit bits = c · params with a CI over seeds, check that 2x the steps no longer
    raise bits, and fit cross-entropy against size. With --widths on a training preset: the width sweep."""
    claim(out_dir, force=force)
    if quick or preset.startswith("capacity-"):
        if widths is not None or facts is not None:
            raise BadInput("--widths and --facts belong to the width sweep; a capacity preset brings its own sizes and table")
        name = "capacity-quick" if quick else preset
        seed_list = _ints(seeds, "--seeds", "0,1,2")
        size_list = [x.strip() for x in sizes.split(",") if x.strip()] if sizes else None
        res = capacity_job.compute_sweep(name, seed_list, run_dir=out_dir / "runs", check=check, passes=passes,
                                         sizes=size_list, device=device)
        capacity_job.write_sweep(res, out_dir)
        _print_sweep(res)
        curve = ", steps_curve.png" if "steps_curve" in res.tables else ""
        out.print(f"→ {out_dir} (result/, capacity_sweep.png, capacity_sweep_all_params.png, scaling.png{curve})")
        return
    if passes != 1 or sizes is not None:
        raise BadInput("--passes and --sizes belong to a capacity sweep (--preset capacity-100x, capacity-1000x or "
                       "--quick); the width sweep takes --steps")
    ws = _ints(widths or "16,32,64", "--widths", "16,32,64")
    corpus, tcfg = _corpus_and_config(preset, facts, steps=steps, seed=seed)
    res = capacity_job.compute(corpus, tcfg, ws, run_dir=out_dir / "runs", mlp_ratio=mlp_ratio, device=device)
    capacity_job.write(res, out_dir)
    table = Table("d_model", "d_mlp", "params", "bits stored", "bits/param", "recall", title="capacity vs size")
    for r in res.table("widths").to_dict("records"):
        table.add_row(str(r["d_model"]), str(r["d_mlp"]), f"{r['params']:,}", f"{r['bits']:.0f} / {r['max_bits']:.0f}",
                      f"{r['bits_per_param']:.4f}", f"{r['accuracy']:.3f}")
    out.print(table)
    out.print(f"→ {out_dir} (result/, capacity_vs_size.png)")


def _print_sweep(res) -> None:
    table = Table("size", "seed", "params (non-emb / all)", "bits", "clipped (old)", "ceiling", "bits/param", "recall",
                  "CE bits", "seconds", title=f"capacity sweep {res.meta['preset']}")
    for r in res.table("sizes").to_dict("records"):
        table.add_row(r["size"], str(r["seed"]), f"{r['params_non_embedding']:,} / {r['params_all']:,}", f"{r['bits']:.0f}",
                      f"{r['bits_clipped']:.0f}", f"{r['ceiling']:.0f}", f"{r['bits_per_param']:.3f}", f"{r['recall']:.3f}",
                      f"{r['ce_bits']:.2f}", f"{r['seconds']:.0f}")
    out.print(table)
    for f in res.table("fit").to_dict("records"):
        ci = "" if f["c_lo"] is None or f["c_lo"] != f["c_lo"] else f" [{f['c_lo']:.3f}, {f['c_hi']:.3f}] (95% t, {f['n_seeds']} seeds)"
        out.print(f"c ({f['bits']} / {f['params']}) = {f['c']:.4f}{ci}")
    if "check" in res.tables:
        for c in res.table("check").to_dict("records"):
            out.print(f"check {c['size']} seed {c['seed']}: {c['steps_base']} → {c['steps_long']} steps, bits "
                      f"{c['bits_base']:.0f} → {c['bits_long']:.0f}, gain {c['gain']:.0f} [{c['gain_lo']:.0f}, "
                      f"{c['gain_hi']:.0f}]{' (still rising)' if c['still_rising'] else ''}")


@app.command("exposure")
def exposure(
    run_dir: Annotated[Path, typer.Option("--run", help="Run folder written by `ffnmem train`.")] = Path("ffnmem-out/train"),
    facts: Annotated[Path | None, typer.Option(help="Corpus folder (default: regenerate from the run's config).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for result/ and the PNG plots.")] = Path("ffnmem-out/exposure"),
    heldout: Annotated[bool, typer.Option(help="Query with held-out paraphrase templates.")] = False,
    n_boot: Annotated[int, typer.Option(min=1, help="Bootstrap resamples for the CIs.")] = 1000,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Bootstrap seed.")] = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Recall vs exposure of a trained run: per-bin accuracy and loss bits with CIs, logistic fit,
    bits per parameter, cross-entropy = data entropy + KL gap over training, and where each bin's
    answers are written (direct logit attribution to FFN vs attention, per layer).
    `ffnmem recall --run DIR` runs the same with these defaults."""
    claim(out_dir, force=force)
    run_exposure(run_dir, facts, out_dir, heldout=heldout, n_boot=n_boot, seed=seed, device=device)


def run_exposure(run_dir: Path, facts: Path | None, out_dir: Path, *, heldout: bool = False, n_boot: int = 1000,
                 seed: int = 0, device: str = "auto") -> None:
    """The exposure job behind `ffnmem exposure` and `ffnmem recall --run`."""
    import json


    wb, curves = load_run(run_dir, device=device)
    if facts:
        corpus = FactCorpus.load(facts)
    else:
        try:
            corpus = generate(FactConfig.from_dict(json.loads((run_dir / "config.json").read_text())["facts"]))
        except (OSError, KeyError, ValueError):
            raise BadInput(f"{run_dir}/config.json is missing or damaged; pass --facts") from None
    res = exposure_job.compute(wb, corpus, curves.get("evals", []), exposure_job.ExposureParams(n_boot=n_boot, heldout=heldout), seed,
                      progress=True)
    exposure_job.write(res, out_dir)
    dla = {b["exposures"]: b for b in res.table("dla_bins").to_dict("records") if b["target"] == "margin"}
    table = Table("exposures", "n", "recall", "95% CI", "loss bits", "margin", "FFN share", title="recall vs exposure")
    for b in res.table("bins").to_dict("records"):
        d = dla[b["exposures"]]
        table.add_row(str(b["exposures"]), str(b["n"]), f"{b['accuracy']:.3f}",
                      f"[{b['accuracy_lo']:.3f}, {b['accuracy_hi']:.3f}]", f"{b['loss_bits']:.2f}",
                      f"{d['logit']:.2f}", f"{d['ffn_share']:.2f}")
    out.print(table)
    cap = res.meta["capacity"]
    out.print("margin: the answer's logit minus the mean logit of the other values; FFN share: the FFN layers' "
              "part of its |direct logit attribution|")
    rho = res.meta["spearman_accuracy"]
    out.print(f"Spearman over bins {'undefined' if rho is None else f'{rho:.3f}'}; capacity {cap['bits']:.0f} bits "
              f"= {cap['bits_per_param']:.4f} bits/param; → {out_dir}")
