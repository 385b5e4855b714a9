"""Causal vs prefix vs masked LM vs encoder-decoder (with and without positions) on the same facts.

Every variant is trained by :func:`ffnmem.methods.training.train` on the same synthetic corpus with the
same seed, model shape and vocabulary (one with ``<mask>``), so parameter counts match except for
the frozen zero positional table of ``-nopos`` variants (``core_params`` excludes it); the
encoder-decoder (:mod:`ffnmem.core.encdec`) splits the layers and narrows the FFN to match within
:data:`MATCH_TOLERANCE`, and trains on (prompt, answer) pairs. Measured per variant:

* recall by exposure bin and bits/param (:mod:`ffnmem.methods.frequency`), the query being the prompt
  itself (causal, prefix) or the prompt followed by ``<mask>`` (masked LM);
* loss in bits at attribute positions against the exact data entropy (``CE = H + KL``);
* the fraction of positions that gave a loss term, and training compute (:func:`train_flops`);
* a ridge probe's error at predicting the token index from the residual stream, by layer;
* the share of the answer's direct logit attribution carried by each FFN layer:
  ``|DLA_mlp,l| / Σ_l (|DLA_mlp,l| + |DLA_attn,l|)`` averaged over well-exposed facts;
* per layer and head, the effective rank of the attention pattern on the same documents;
* ``analyses``: the position probe with its controls, the attention rank per head and the direct
  effect by layer of :func:`ffnmem.methods.variant_analysis.analyse`, against the variant at its
  initial weights (the tables the fair comparison aggregates over seeds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.data.synthetic import FactConfig, FactCorpus, generate
from ffnmem.methods import encdec
from ffnmem.methods.frequency import (
    by_exposure,
    capacity_bits,
    dla_rows,
    score_queries,
    summarize,
)
from ffnmem.methods.objectives import Objective, core_params, parse, trainable_params
from ffnmem.methods.packing import sentence_pairs
from ffnmem.methods.positions import attention_ranks, probe_by_layer
from ffnmem.methods.training import TrainConfig, encode_documents, train
from ffnmem.methods.variant_analysis import analyse

DEFAULT_VARIANTS = ("causal", "causal-rope", "causal-nopos", "prefix", "prefix-rope", "prefix-nopos",
                    "mlm", "mlm-rope", "mlm-nopos", "encdec", "encdec-nopos")
MATCH_TOLERANCE = 0.01  # the encoder-decoder's FFN width is rounded to whole neurons (ffnmem.core.encdec)


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    facts: FactConfig
    train: TrainConfig
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    mask_rate: float = 0.15
    probe_docs: int = 40
    dla_facts: int = 32
    match_params: bool = True

    def objectives(self) -> list[Objective]:
        objs = [parse(v, mask_rate=self.mask_rate) for v in self.variants]
        if len({o.name for o in objs}) != len(objs):
            raise BadInput("a variant is listed twice")
        return objs


PRESETS: dict[str, CompareConfig] = {
    # tiny: ~20 s per variant on one core (nine variants: ~3 min).
    "tiny": CompareConfig(
        facts=FactConfig(n_entities=60, bins=(1, 4, 16, 64), n_values=16, value_noise=0.05, seed=0),
        train=TrainConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=64, steps=300, batch_size=32,
                          eval_every=10_000, checkpoint_every=10_000, seed=0)),
    "paper": CompareConfig(
        facts=FactConfig(n_entities=1000, bins=(1, 2, 4, 8, 16, 32, 64, 128), n_values=50, seed=0),
        train=TrainConfig(n_layers=4, d_model=256, n_heads=8, d_mlp=1024, n_ctx=96, steps=20000, batch_size=128,
                          lr=1e-3, warmup=500, eval_every=100_000, checkpoint_every=100_000, seed=0)),
}


def preset(name: str) -> CompareConfig:
    if name not in PRESETS:
        raise BadInput(f"unknown architecture preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def check_matched(counts: dict[str, int]) -> None:
    """Raise if the variants' core parameter counts differ by more than :data:`MATCH_TOLERANCE`."""
    if max(counts.values()) > (1 + MATCH_TOLERANCE) * min(counts.values()):
        listed = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise BadInput(f"variants have mismatched parameter counts ({listed}); give them the same shape or pass --no-match")


def probe_tokens(wb, corpus: FactCorpus, n_docs: int, n_ctx: int) -> torch.Tensor:
    """``[n, L]`` unpadded document prefixes (L = shortest of the first ``n_docs`` documents)."""
    data = encode_documents(wb.tokenizer, corpus.documents[:n_docs], n_ctx)
    length = int((data != wb.tokenizer.pad_token_id).sum(1).min())
    return data[:, :length]


def ffn_share(wb, corpus: FactCorpus, obj: Objective, n_facts: int) -> list[float]:
    """Per layer: |DLA of the FFN| / Σ(|FFN| + |attention|) toward the true value, most-exposed facts."""
    qs = sorted([q for q in corpus.queries if not q["heldout"]], key=lambda q: -q["exposures"])[:n_facts]
    rows = dla_rows(wb, qs, suffix=" <mask>" if obj.kind == "mlm" else "")
    return [float(np.mean([r[f"ffn_share_L{layer}"] for r in rows])) for layer in range(wb.n_layers)]


def encdec_measures(wb, corpus: FactCorpus, cfg: CompareConfig) -> tuple[list[dict], list[float], list]:
    """Encoder-decoder: probe and attention rank of the encoder over unpadded sentence prompts (the
    shortest prompt's length), FFN share of the answer's attribution (:mod:`ffnmem.methods.encdec`)."""
    enc, _ = sentence_pairs(wb.tokenizer, corpus.documents[: cfg.probe_docs])
    length = min(len(r) for r in enc)
    probe, ranks = encdec.encoder_probe(wb, torch.tensor([r[:length] for r in enc]))
    qs = sorted([q for q in corpus.queries if not q["heldout"]], key=lambda q: -q["exposures"])[: cfg.dla_facts]
    share = encdec.ffn_share(encdec.dla_rows(wb, qs), wb.native_config["n_enc"], wb.native_config["n_dec"])
    return probe, share, ranks.tolist()


def train_flops(model, obj: Objective, tokens_seen: int, signal_tokens: int) -> float:
    """Training compute ≈ 6 · (trainable parameters a token passes through) · tokens.

    Decoder-only: every trainable parameter for every real token (the usual 6·N·D). Encoder-decoder:
    encoder tokens pass through the shared embedding, the encoder and the cross-attention's key and
    value projections; decoder tokens through the embedding, the rest of the decoder and the
    unembedding. Decoder rows are ``BOS value . EOS`` without padding, so decoder tokens are 4/3
    of the loss-bearing ones. Attention-score FLOPs are left out for every variant alike.
    """
    n = trainable_params(model)
    if obj.kind != "encdec":
        return 6.0 * n * tokens_seen
    count = lambda ps: sum(p.numel() for p in ps if p.requires_grad)
    kv = count(p for b in model.decoder.blocks for m in (b.cross_attn.k, b.cross_attn.v) for p in m.parameters())
    enc_side = count(model.encoder.parameters()) + kv + count(model.embed.parameters())
    dec_side = n - count(model.encoder.parameters()) - kv
    dec_tokens = signal_tokens * 4 // 3
    return 6.0 * (enc_side * (tokens_seen - dec_tokens) + dec_side * dec_tokens)


def evaluate_variant(run, obj: Objective, cfg: CompareConfig, init_wb=None) -> dict:
    """Every measurement of one trained variant (plain Python, JSON-ready). For the encoder-decoder
    the probe and attention rank are the encoder's, and the FFN share lists encoder then decoder
    FFN layers (encoder ones through the cross-attention, see :mod:`ffnmem.methods.encdec`).
    ``init_wb``: the variant at its initial weights; with it, also ``analyses``."""

    wb, corpus = run.wb, run.corpus
    rows = score_queries(wb, corpus.queries, value_sets=corpus.values,
                         value_noise=corpus.config.value_noise, objective=obj)
    model = wb.bridge.original_model
    n_train = trainable_params(model)
    cap = capacity_bits(rows, corpus.config.n_values, n_train)
    if obj.kind == "encdec":
        probe, share, erank = encdec_measures(wb, corpus, cfg)
    else:
        toks = probe_tokens(wb, corpus, cfg.probe_docs, cfg.train.n_ctx)
        probe, share, erank = probe_by_layer(wb, toks), ffn_share(wb, corpus, obj, cfg.dla_facts), attention_ranks(wb, toks).tolist()
    closed = {}
    if init_wb is not None:
        closed["analyses"] = analyse(wb, init_wb, corpus, obj, probe_docs=cfg.probe_docs, dla_facts=cfg.dla_facts,
                                     n_ctx=cfg.train.n_ctx, seed=cfg.train.seed)
    if obj.kind == "mlm":  # the same query with the sentence closed, as masked values appear in training
        rows_c = score_queries(wb, corpus.queries, value_sets=corpus.values, value_noise=corpus.config.value_noise,
                               objective=dataclasses.replace(obj, mask_suffix="."))
        closed = {"accuracy_closed": summarize(rows_c)["accuracy"],
                  "bits_per_param_closed": capacity_bits(rows_c, corpus.config.n_values, n_train)["bits_per_param"],
                  "bins_closed": by_exposure(rows_c, n_boot=200, seed=cfg.train.seed)}
    return {"variant": obj.name, "kind": obj.kind, "positions": obj.positions,
            "params": wb.n_params(), "core_params": core_params(model), "trainable_params": n_train,
            "summary": summarize(rows), "bins": by_exposure(rows, n_boot=200, seed=cfg.train.seed),
            "capacity": cap, "signal_fraction": run.signal_tokens / max(1, run.tokens_seen),
            "tokens_seen": run.tokens_seen, "train_flops": train_flops(model, obj, run.tokens_seen, run.signal_tokens),
            "seconds": run.seconds, "final_loss_nats": run.losses[-1]["loss"],
            "probe": probe, "ffn_share": share, "attention_erank": erank, "rows": rows, **closed}


def train_config(cfg: CompareConfig, obj: Objective) -> TrainConfig:
    """The variant's training settings: the encoder-decoder's batch holds the sentences of
    ``batch_size`` documents (one pair per attribute), so a step covers the same facts as a
    decoder-only step and equal steps are equal passes over the corpus (not equal supervised tokens)."""
    if obj.kind != "encdec":
        return cfg.train
    return dataclasses.replace(cfg.train, batch_size=cfg.train.batch_size * len(cfg.facts.attributes))


def compare(cfg: CompareConfig, *, device: str = "cpu", progress: bool = True) -> list[dict]:
    """Train and measure every variant on the same corpus and seed."""
    objs = cfg.objectives()
    corpus = generate(cfg.facts)
    out = []
    for obj in tqdm(objs, desc="variants", disable=not progress):
        run = train(corpus, train_config(cfg, obj), device=device, progress=False, objective=obj)
        init = train(corpus, train_config(cfg, obj), device=device, progress=False, objective=obj, stop_at=0)
        out.append(evaluate_variant(run, obj, cfg, init.wb))
    if cfg.match_params:
        check_matched({r["variant"]: r["core_params"] for r in out})
    return out


def table_rows(results: list[dict]) -> list[dict]:
    """One flat row per variant: recall per exposure bin, bits/param, probe error, FFN share."""
    rows = []
    for r in results:
        row = {"variant": r["variant"], "accuracy": r["summary"]["accuracy"],
               "loss_bits": r["summary"]["loss_bits"], "ce_bits": r["summary"]["ce_bits"],
               "h_bits": r["summary"]["h_bits"], "kl_bits": r["summary"]["kl_bits"],
               "bits_per_param": r["capacity"]["bits_per_param"], "bits": r["capacity"]["bits"],
               "trainable_params": r["trainable_params"], "signal_fraction": r["signal_fraction"],
               "train_pflops": r["train_flops"] / 1e15, "seconds": r["seconds"],
               "probe_mae_embed": r["probe"][0]["mae"], "probe_mae_last": r["probe"][-1]["mae"],
               "probe_baseline": r["probe"][0]["baseline_mae"], "ffn_share": float(sum(r["ffn_share"])),
               "ffn_share_by_layer": "/".join(f"{x:.2f}" for x in r["ffn_share"]),
               "erank_mean": float(np.mean(r["attention_erank"]))}
        row.update({f"recall@{b['exposures']}": b["accuracy"] for b in r["bins"]})
        row["accuracy_closed"] = r.get("accuracy_closed", float("nan"))
        row["bits_per_param_closed"] = r.get("bits_per_param_closed", float("nan"))
        rows.append(row)
    return rows
