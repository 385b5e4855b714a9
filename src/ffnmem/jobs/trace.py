"""Causal tracing over a fact set (Meng et al. 2022): the job behind ``ffnmem trace`` and the batch
analysis ``causal_trace``.

:func:`compute` traces every fact (:func:`ffnmem.methods.tracing.trace`) and returns one
``causal_trace`` Result: ``facts`` (p clean / corrupted per fact), ``effects`` (each fact's effect
aligned on subject and last tokens, long format; NaN cells are NULL), ``sites`` (one row per fact:
the largest effect over layers and the layer of that peak, per kind and traced position: the items
of the tracing claims) and, as tensors, each fact's
full ``[n_layers, pos]`` effect and the average over facts. :func:`write` saves it with a heatmap
per fact and the average. Each fact's noise is seeded by ``seed`` and the prompt's text, so a fact
gets the same numbers whichever shard or command traces it, given the same noise level: the
default level (``noise_sigma = "subject"``, ROME's) is the std of the subject tokens' embeddings over
the facts given, so for shard-independent numbers give ``noise_sigma`` as a number (the level used
is in ``meta["sigma"]``). Defaults are ROME's: window 10 trimmed at the edges (``window = "scaled"``:
ROME's 10 of 48 layers scaled to depth, 6 on SmolLM2's 30), the model's own top-1 prediction as the
traced answer (``target = "prediction"``; ``known`` says whether it is the gold answer), window-1
MLP and attention traces alongside (``mlp_w1``, ``attn_w1``), noise on the embeddings
(``noise_at = "mlp0_out"``: after MLP0, see :mod:`ffnmem.methods.tracing`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import Field
from tqdm.auto import tqdm

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact
from ffnmem.jobs.params import FirstTokenParams, encoded_facts
from ffnmem.methods.tracing import (
    ALIGNED_POSITIONS,
    Trace,
    aligned,
    aligned_columns,
    average_aligned,
    noise_sigma,
    peak,
    predicted_token,
    scaled_window,
    site_peak,
    trace,
)
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_average, plot_trace, save_figure

KIND = "causal_trace"


class TraceParams(FirstTokenParams):
    n_samples: int = Field(10, ge=1)
    # ROME's code uses 10 whatever the depth (GPT-2 XL's 48 layers, GPT-J's 28); "scaled": 10/48 of the depth
    window: int | Literal["scaled"] = 10
    kinds: list[Literal["resid", "mlp", "attn", "mlp_w1", "attn_w1"]] = ["resid", "mlp", "attn", "mlp_w1", "attn_w1"]
    max_rows: int = Field(256, ge=1)
    noise_scale: float = Field(3.0, gt=0)
    # noise level sigma: "subject" (ROME: std of the subject tokens' embeddings over the facts given),
    # "matrix" (std of the whole embedding matrix, ffnmem's earlier default) or a fixed number
    noise_sigma: Literal["subject", "matrix"] | float = "subject"
    # where the noise goes: the token embeddings (ROME) or the residual after MLP0 (MLP0 undoes embedding noise)
    noise_at: Literal["embed", "mlp0_out"] = "embed"
    # traced positions (aligned names); None: every token. Tracing 2 of ~8 positions is 4x faster.
    positions: list[Literal[ALIGNED_POSITIONS]] | None = None
    # "prediction" (ROME): the model's own top-1 token, claims over known facts (prediction == gold
    # answer: the ``known`` column of ``facts`` and ``sites``); "gold": the fact's answer
    target: Literal["gold", "prediction"] = "prediction"

    def window_for(self, n_layers: int) -> int:
        """The window width on a model of ``n_layers`` layers."""
        return scaled_window(n_layers) if self.window == "scaled" else self.window


def fact_seed(seed: int, prompt: str) -> int:
    """The noise seed of one fact: the run's seed plus a stable hash of the prompt."""
    return seed + int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16)


def compute(wb: Workbench, facts: list[Fact], p: TraceParams, seed: int = 0, *, progress: bool = False) -> Result:
    """Trace every fact; see the module docstring for the tables and tensors."""
    fact_rows, effect_rows, site_rows, tensors, traces = [], [], [], {}, []
    encoded = list(encoded_facts(wb, facts, p))
    window = p.window_for(wb.n_layers)
    if not isinstance(p.noise_sigma, str):  # a fixed level
        sigma = p.noise_sigma
    else:  # ROME: one noise level for the whole fact set
        sigma = noise_sigma(wb, [wb.to_tokens(e.fact.prompt) for e in encoded], [e.subject for e in encoded],
                            noise_at=p.noise_at, source=p.noise_sigma)
    for i, e in enumerate(tqdm(encoded, desc="tracing", unit="fact", disable=not progress)):
        gold = e.answer_ids[0]
        answer = gold if p.target == "gold" else predicted_token(wb, e.fact.prompt)
        cols = None if p.positions is None else aligned_columns(e.subject, len(e.prompt_ids), p.positions)
        t = trace(wb, e.fact.prompt, answer, e.subject, kinds=tuple(p.kinds), n_samples=p.n_samples,
                  window=window, seed=fact_seed(seed, e.fact.prompt), max_rows=p.max_rows,
                  noise_scale=p.noise_scale, sigma=sigma, noise_at=p.noise_at, positions=cols)
        traces.append(t)
        fid = f"{e.fact.relation}/{e.fact.subject}"
        fact_rows.append({"fact_id": fid, "relation": e.fact.relation, "subject": e.fact.subject,
                          "prompt": e.fact.prompt, "target": e.fact.target, "traced": wb.decode([answer]),
                          "known": answer == gold, "p_clean": t.p_clean, "p_corrupt": t.p_corrupt,
                          "subject_start": t.subject[0], "subject_end": t.subject[1], "tokens": t.tokens})
        site_rows.append(_sites(fid, e.fact.relation, answer == gold, t, p, wb.n_layers, window))
        for kind, eff in t.effects.items():
            if p.positions is None:  # a partial trace is NaN off its cells: the tables hold it
                tensors[f"fact{i}/{kind}"] = eff
            al = aligned(eff, t.subject)
            effect_rows += [{"subject": e.fact.subject, "kind": kind, "layer": l, "position": pos,
                             "effect": None if al[l, j].isnan() else float(al[l, j])}  # SQL NULL
                            for l in range(al.shape[0]) for j, pos in enumerate(ALIGNED_POSITIONS)]
    avg = average_aligned(traces)
    if p.positions is None:
        tensors.update({f"average/{k}": v for k, v in avg.items()})
    tables = {"facts": table_from_rows(fact_rows), "effects": table_from_rows(effect_rows),
              "sites": table_from_rows(site_rows)}
    return Result(kind=KIND, tables=tables,
                  tensors=tensors,
                  meta={"positions": list(ALIGNED_POSITIONS), "params": p.model_dump(), "window": window, "sigma": sigma,
                        "noise": f"{p.noise_scale} x sigma ({p.noise_sigma}) at {p.noise_at}",
                        "peaks": {k: list(peak(a)) for k, a in avg.items()}},
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed, params=p.model_dump()))


def _sites(fid: str, relation: str, known: bool, t: Trace, p: TraceParams, n_layers: int, window: int) -> dict:
    """One fact's row of ``sites``: per kind and traced aligned position, the largest effect over
    layers (``{kind}_{position}_max``) and where it peaks (``{kind}_{position}_peak``: the layer, i.e.
    the centre of its trimmed window, see :func:`ffnmem.methods.tracing.site_peak`)."""
    row = {"fact_id": fid, "relation": relation, "known": known, "p_clean": t.p_clean, "n_layers": n_layers,
           "window": window}
    for kind, eff in t.effects.items():
        al = aligned(eff, t.subject)
        for j, pos in enumerate(ALIGNED_POSITIONS):
            if (p.positions is None or pos in p.positions) and not al[:, j].isnan().all():
                top, layer = site_peak(al[:, j])
                row |= {f"{kind}_{pos}_max": top, f"{kind}_{pos}_peak": layer}
    return row


def traces_of(result: Result) -> list[Trace]:
    """The per-fact :class:`Trace` objects stored in a ``causal_trace`` Result."""
    if result.meta["params"].get("positions") is not None:
        raise BadInput("this trace covers some positions only (params.positions); it has no full traces to plot")
    kinds = result.meta["params"]["kinds"]
    window = result.meta.get("window", result.meta["params"]["window"])
    return [Trace.stored(r, {k: result.tensors[f"fact{i}/{k}"] for k in kinds}, window)
            for i, r in enumerate(result.table("facts").to_dict("records"))]


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result`` plus ``average.png`` and ``facts/NNN_subject.png`` per fact."""
    out = Path(out_dir)
    (out / "facts").mkdir(parents=True, exist_ok=True)
    facts = result.table("facts")
    for i, t in enumerate(traces_of(result)):
        stem = f"{i:03d}_{re.sub(r'[^A-Za-z0-9]+', '_', facts.subject[i])}"
        save_figure(plot_trace(t, title=f"{facts.prompt[i]!r} → {facts.target[i]!r}"), out / "facts" / f"{stem}.png")
    avg = {k.split("/", 1)[1]: v for k, v in result.tensors.items() if k.startswith("average/")}
    save_figure(plot_average(avg, n_facts=len(facts)), out / "average.png")
    return result.save(out / "result")
