"""Direct logit attribution as tables: the job behind ``ffnmem attribute``, the batch analysis
``direct_effects`` and the demo's neuron table.

:func:`effect_tables` is the one way direct effects (:func:`ffnmem.methods.attribution.direct_effects`)
become rows: ``layers`` (FFN and attention effect per layer), ``neurons`` (the ``top`` memories by
direct effect, with their coefficients) and ``heads`` (the ``top`` heads by |effect|), one block per
prompt, keyed by ``subject`` and ``prompt``. :func:`compute` runs it over a fact set (first answer
token); :func:`attribute` over one prompt and answer, optionally with integrated-gradients knowledge
neurons and attribution patching.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import Fact
from ffnmem.jobs.params import FirstTokenParams, encoded_facts
from ffnmem.methods.attribution import DirectEffects, direct_effects
from ffnmem.methods.knowledge_neurons import integrated_gradients, select_neurons
from ffnmem.methods.patching import attribution_patching
from ffnmem.store.provenance import facts_hash, make_provenance
from ffnmem.store.results import Result, table_from_rows
from ffnmem.viz import plot_attribution, plot_heads, save_figure


class DirectEffectsParams(FirstTokenParams):
    top: int = Field(10, ge=1)


def effect_tables(fx: DirectEffects, keys: list[dict], top: int, *, rows: list[int] | None = None
                  ) -> dict[str, list[dict]]:
    """Rows of ``layers``, ``neurons`` and ``heads`` for prompts ``rows`` of ``fx`` (default: all);
    ``keys[i]`` (e.g. subject, prompt) starts each row of prompt ``rows[i]``."""
    layers, neurons, heads = [], [], []
    n_heads = fx.heads.shape[-1]
    for b, key in zip(range(len(keys)) if rows is None else rows, keys):
        layers += [{**key, "layer": l, "ffn_direct": float(fx.mlp[b, l]), "attn_direct": float(fx.attn[b, l])}
                   for l in range(fx.mlp.shape[1])]
        neurons += [{**key, "rank": rank, "layer": l, "neuron": n, "direct_effect": v,
                     "coefficient": float(fx.coeffs[b, l, n])} for rank, (l, n, v) in enumerate(fx.top(b, top))]
        flat = fx.heads[b].flatten()
        heads += [{**key, "rank": rank, "layer": int(i) // n_heads, "head": int(i) % n_heads,
                   "direct_effect": float(flat[i])}
                  for rank, i in enumerate(flat.abs().topk(min(top, flat.numel())).indices)]  # largest |effect|
    return {"layers": layers, "neurons": neurons, "heads": heads}


def _tensors(fx: DirectEffects) -> dict:
    return {"neuron_dla": fx.neurons, "mlp_dla": fx.mlp, "attn_dla": fx.attn, "head_dla": fx.heads}


def compute(wb: Workbench, facts: list[Fact], p: DirectEffectsParams, seed: int = 0) -> Result:
    """Direct effects on each fact's first answer token at its last prompt position."""
    enc = encoded_facts(wb, facts, p)
    fx = direct_effects(wb, [e.fact.prompt for e in enc], [e.answer_ids[0] for e in enc])
    keys = [{"subject": e.fact.subject, "relation": e.fact.relation, "prompt": e.fact.prompt} for e in enc]
    rows = effect_tables(fx, keys, p.top)
    return Result(kind="direct_effects", tables={k: table_from_rows(v) for k, v in rows.items()},
                  tensors=_tensors(fx), meta={"position": "last prompt token", "params": p.model_dump()},
                  provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed, params=p.model_dump()))


def attribute(wb: Workbench, prompt: str, answer: str, *, distractor: str | None = None, top: int = 20,
              ig_steps: int = 0, corrupt: str | None = None) -> Result:
    """One prompt: direct effects on ``answer`` (or answer − ``distractor``), and optionally IG
    knowledge neurons (``ig_steps`` > 0) and attribution patching against ``corrupt``."""
    a = wb.answer_token(answer)
    d = None if distractor is None else wb.answer_token(distractor)
    fx = direct_effects(wb, [prompt], [a], None if d is None else [d])
    rows = effect_tables(fx, [{"prompt": prompt}], top)
    tensors = {k: v[0] for k, v in _tensors(fx).items()}
    meta = {"prompt": prompt, "answer": answer, "distractor": distractor, "p_answer": float(fx.probs[0]),
            "predicted": wb.decode(fx.top_pred[0]), "position": "last prompt token", "top": top}
    if ig_steps > 0:
        ig = integrated_gradients(wb, prompt, a, steps=ig_steps)
        tensors["integrated_gradients"] = ig
        meta["knowledge_neurons"] = select_neurons(ig, 0.2, max_neurons=top)
    if corrupt is not None:
        attr, m_clean, m_corrupt = attribution_patching(wb, prompt, corrupt, a, d)
        tensors["attribution_patching"] = attr
        meta.update(corrupt=corrupt, metric_clean=m_clean, metric_corrupt=m_corrupt)
    return Result(kind="direct_effects", tables={k: table_from_rows(v) for k, v in rows.items()}, tensors=tensors,
                  meta=meta, provenance=make_provenance(wb, data_hash=None))


def write(result: Result, out_dir: str | Path) -> Path:
    """``out_dir/result``, ``attribution.png`` and ``heads.png`` of an :func:`attribute` result."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m, neurons = result.meta, result.table("neurons").to_dict("records")
    save_figure(plot_attribution(result.tensors["mlp_dla"], result.tensors["attn_dla"], neurons,
                                 prompt=m["prompt"], answer=m["answer"]), out / "attribution.png")
    save_figure(plot_heads(result.tensors["head_dla"], prompt=m["prompt"], answer=m["answer"]), out / "heads.png")
    return result.save(out / "result")
