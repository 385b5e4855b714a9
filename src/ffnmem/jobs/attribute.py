"""``ffnmem attribute``: where one prompt's answer is written (DLA, optional IG and attribution patching)."""

from __future__ import annotations

from pathlib import Path

from ffnmem.methods.attribution import direct_effects
from ffnmem.store.results import Result, make_provenance, table_from_rows
from ffnmem.viz import plot_attribution, plot_heads, save_figure
from ffnmem.core.workbench import Workbench


def run_attribute(wb: Workbench, prompt: str, answer: str, out_dir: str | Path, *, distractor: str | None = None,
                  top: int = 20, ig_steps: int = 0, corrupt: str | None = None) -> tuple[list[dict], Path]:
    """Attribute ``answer`` after ``prompt``; writes result/ and PNGs to ``out_dir``; returns top rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = wb.answer_token(answer)
    d = None if distractor is None else wb.answer_token(distractor)
    fx = direct_effects(wb, [prompt], [a], None if d is None else [d])
    rows = [{"layer": l, "neuron": n, "direct_effect": e, "coefficient": float(fx.coeffs[0, l, n])}
            for l, n, e in fx.top(0, top)]
    tensors = {"neuron_dla": fx.neurons[0], "mlp_dla": fx.mlp[0], "attn_dla": fx.attn[0], "head_dla": fx.heads[0]}
    n_heads, flat = fx.heads.shape[-1], fx.heads[0].flatten()
    head_rows = [{"layer": int(i) // n_heads, "head": int(i) % n_heads, "direct_effect": float(flat[i])}
                 for i in flat.abs().topk(min(top, flat.numel())).indices]  # largest |effect| first
    meta = {"prompt": prompt, "answer": answer, "distractor": distractor, "p_answer": float(fx.probs[0]),
            "predicted": wb.decode(fx.top_pred[0]), "position": "last prompt token"}
    if ig_steps > 0:
        from ffnmem.methods.knowledge_neurons import integrated_gradients, select_neurons

        ig = integrated_gradients(wb, prompt, a, steps=ig_steps)
        tensors["integrated_gradients"] = ig
        meta["knowledge_neurons"] = select_neurons(ig, 0.2, max_neurons=top)
    if corrupt is not None:
        from ffnmem.methods.patching import attribution_patching

        attr, m_clean, m_corrupt = attribution_patching(wb, prompt, corrupt, a, d)
        tensors["attribution_patching"] = attr
        meta.update(corrupt=corrupt, metric_clean=m_clean, metric_corrupt=m_corrupt)
    Result(kind="attribute", tables={"top_neurons": table_from_rows(rows), "top_heads": table_from_rows(head_rows)}, tensors=tensors, meta=meta,
           provenance=make_provenance(wb, data_hash=None)).save(out / "result")
    save_figure(plot_attribution(fx.mlp[0], fx.attn[0], rows, prompt=prompt, answer=answer), out / "attribution.png")
    save_figure(plot_heads(fx.heads[0], prompt=prompt, answer=answer), out / "heads.png")
    return rows, out
