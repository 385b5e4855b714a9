"""Architectures and objectives compared on controlled facts: the job behind
``ffnmem compare-architectures``. :func:`write_report` saves the comparison of
:func:`ffnmem.methods.architectures.compare` as a Result, ``report.md`` and one PNG per comparison.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ffnmem.core.paths import atomic_write_text
from ffnmem.methods.architectures import CompareConfig, table_rows
from ffnmem.store.provenance import make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import save_figure
from ffnmem.viz.architectures import FIGURES


def _markdown(rows: list[dict], results: list[dict], cfg: CompareConfig) -> str:
    bins = [k for k in rows[0] if k.startswith("recall@")]
    head = ["variant", *bins, "bits/param", "CE bits (H + KL)", "signal", "probe MAE emb→last (base)",
            "FFN share (by layer)", "erank", "PFLOPs"]
    lines = ["# Architectures and objectives on controlled facts", "",
             (f"Facts: {cfg.facts.n_entities} entities × {len(cfg.facts.attributes)} attributes, |V| = "
             f"{cfg.facts.n_values}, value noise {cfg.facts.value_noise}; model {cfg.train.n_layers}L d{cfg.train.d_model} "
             f"d_mlp {cfg.train.d_mlp}, {cfg.train.steps} steps × {cfg.train.batch_size}, seed {cfg.train.seed}. "
             "Masked-LM recall reads `<mask>` appended to the prompt; the encoder-decoder reads the prompt in "
             "its encoder and answers at decoder position 0 (its probe and erank are the encoder's, its FFN share "
             "lists encoder then decoder layers, encoder FFNs through the cross-attention)."), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], *[f"{r[b]:.2f}" for b in bins], f"{r['bits_per_param']:.4f}",
                 f"{r['ce_bits']:.2f} ({r['h_bits']:.2f} + {r['kl_bits']:.2f})", f"{r['signal_fraction']:.2f}",
                 f"{r['probe_mae_embed']:.1f}→{r['probe_mae_last']:.1f} ({r['probe_baseline']:.1f})",
                 f"{r['ffn_share']:.2f} ({r['ffn_share_by_layer']})", f"{r['erank_mean']:.2f}", f"{r['train_pflops']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    closed = [r for r in rows if not math.isnan(r["accuracy_closed"])]
    if closed:
        lines += ["", "Masked LM queried with the sentence closed (`prompt <mask> .`, as masked values appear in "
                  "training): " + ", ".join(f"{r['variant']} recall {r['accuracy_closed']:.2f}, "
                                           f"{r['bits_per_param_closed']:.4f} bits/param" for r in closed)]
    lines += ["", "Trainable parameters: " + ", ".join(f"{r['variant']} {r['trainable_params']}" for r in rows), ""]
    if any("analyses" in r for r in results):
        lines += ["Per-variant tables in `result/` (`ffnmem.methods.variant_analysis`, each against the variant at "
                  "its initial weights): `position_probe` (classifier accuracy and ridge R² by depth, documents and "
                  "random tokens, permuted-label null), `attention_rank` (per layer and head), `dla_by_layer` "
                  "(attention vs FFN share of the answer's direct effect). Several seeds with CIs: "
                  "`--budget steps --seeds 0,1,2`.", ""]
    lines += [f"![{p}]({p})" for p in ("recall_vs_exposure.png", "capacity_entropy_signal.png", "position_probe.png",
                                       "ffn_share.png", "attention_erank.png")]
    return "\n".join(lines) + "\n"


def write_report(results: list[dict], cfg: CompareConfig, out_dir: str | Path):
    """Result (tables + meta with provenance), report.md and one PNG per comparison."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    facts = [{"variant": r["variant"], **f} for r in results for f in r["rows"]]
    meta = {"config": {"facts": cfg.facts.to_dict(), "train": dataclasses.asdict(cfg.train),
                       "variants": list(cfg.variants), "mask_rate": cfg.mask_rate},
            "per_variant": [{k: v for k, v in r.items() if k not in ("rows", "analyses")} for r in results],
            "log2_values": math.log2(cfg.facts.n_values)}
    prov = make_provenance(None, seed=cfg.train.seed, source="ffnmem.methods.architectures",
                           facts_config=cfg.facts.to_dict())
    tables = {"variants": table_from_rows(rows), "facts": table_from_rows(facts)}
    for name in ("position_probe", "attention_rank", "dla_by_layer"):  # variant_analysis.analyse, one seed
        per = [{"variant": r["variant"], **x} for r in results for x in r.get("analyses", {}).get(name, [])]
        if per:
            tables[name] = table_from_rows(per)
    Result(kind="architectures", tables=tables, meta=meta, provenance=prov).save(out / "result")
    for name, plot in FIGURES.items():
        save_figure(plot(results), out / name)
    atomic_write_text(out / "report.md", _markdown(rows, results, cfg))
    return rows
