"""``ffnmem attribute``: where one prompt's answer is written (DLA, optional IG and attribution patching)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ffnmem.attribution import direct_effects  # noqa: E402
from ffnmem.results import Result, make_provenance, table_from_rows  # noqa: E402
from ffnmem.workbench import Workbench  # noqa: E402


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
        from ffnmem.knowledge_neurons import integrated_gradients, select_neurons

        ig = integrated_gradients(wb, prompt, a, steps=ig_steps)
        tensors["integrated_gradients"] = ig
        meta["knowledge_neurons"] = select_neurons(ig, 0.2, max_neurons=top)
    if corrupt is not None:
        from ffnmem.patching import attribution_patching

        attr, m_clean, m_corrupt = attribution_patching(wb, prompt, corrupt, a, d)
        tensors["attribution_patching"] = attr
        meta.update(corrupt=corrupt, metric_clean=m_clean, metric_corrupt=m_corrupt)
    Result(kind="attribute", tables={"top_neurons": table_from_rows(rows), "top_heads": table_from_rows(head_rows)}, tensors=tensors, meta=meta,
           provenance=make_provenance(wb, data_hash=None)).save(out / "result")
    _plot(fx.mlp[0], fx.attn[0], rows, prompt, answer, out / "attribution.png")
    _plot_heads(fx.heads[0], prompt, answer, out / "heads.png")
    return rows, out


def _plot(mlp: torch.Tensor, attn: torch.Tensor, rows: list[dict], prompt: str, answer: str, path: Path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    x = range(len(mlp))
    a1.bar([i - 0.2 for i in x], mlp.numpy(), width=0.4, label="FFN", color="#3a8f3a")
    a1.bar([i + 0.2 for i in x], attn.numpy(), width=0.4, label="attention", color="#c0392b")
    a1.set_xlabel("layer")
    a1.set_ylabel("direct effect (logit)")
    a1.legend()
    a1.set_title("direct effect per layer")
    labels = [f"L{r['layer']}.{r['neuron']}" for r in rows][::-1]
    a2.barh(labels, [r["direct_effect"] for r in rows][::-1], color="#3b75af")
    a2.tick_params(labelsize=7)
    a2.set_title("top FFN neurons")
    fig.suptitle(f"{prompt!r} → {answer!r}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_heads(heads: torch.Tensor, prompt: str, answer: str, path: Path) -> None:
    """Heatmap of each attention head's direct effect on the answer logit (layers × heads)."""
    vmax = float(heads.abs().max()) or 1.0
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * heads.shape[1] + 2), max(3, 0.22 * heads.shape[0] + 1)))
    im = ax.imshow(heads.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"attention heads' direct effect: {prompt!r} → {answer!r}", fontsize=9)
    fig.colorbar(im, ax=ax, label="logit")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
