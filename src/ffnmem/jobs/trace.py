"""``ffnmem trace``: causal tracing over a fact set, each fact written as soon as it is done."""

from __future__ import annotations

import re
from pathlib import Path

from tqdm.auto import tqdm

from ffnmem.data.facts import Fact, check_first_token, encode_facts
from ffnmem.methods.recall import facts_hash
from ffnmem.store.results import Result, make_provenance, table_from_rows
from ffnmem.methods.tracing import POSITIONS, average_aligned, peak, trace
from ffnmem.viz import plot_average, plot_trace, save_figure
from ffnmem.core.workbench import Workbench


def run_trace(wb: Workbench, facts: list[Fact], out_dir: str | Path, *, n_samples: int = 10, window: int = 10,
              seed: int = 0, max_rows: int = 256,
              kinds: tuple[str, ...] = ("resid", "mlp", "attn")) -> dict[str, tuple[int, str, float]]:
    """Trace every fact (first-token answers); returns each kind's peak (layer, position, value).

    Per-fact results land in ``out_dir/facts/`` as they finish, so an interrupted run keeps them.
    """
    out = Path(out_dir)
    (out / "facts").mkdir(parents=True, exist_ok=True)
    encoded = encode_facts(wb, facts)
    for e in encoded:
        check_first_token(wb, e)
    traces, rows = [], []
    for i, e in enumerate(tqdm(encoded, desc="tracing", unit="fact")):
        t = trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, n_samples=n_samples, window=window,
                  seed=seed + i, max_rows=max_rows, kinds=kinds)
        stem = f"{i:03d}_{re.sub(r'[^A-Za-z0-9]+', '_', e.fact.subject)}"
        save_figure(plot_trace(t, title=f"{e.fact.prompt!r} → {e.fact.target!r}"), out / "facts" / f"{stem}.png")
        Result(kind="trace_fact", tensors={k: v for k, v in t.effects.items()},
               meta={"prompt": e.fact.prompt, "target": e.fact.target, "tokens": t.tokens,
                     "subject": list(t.subject), "p_clean": t.p_clean, "p_corrupt": t.p_corrupt},
               provenance=make_provenance(wb, seed=seed + i)).save(out / "facts" / stem)
        traces.append(t)
        rows.append({"relation": e.fact.relation, "subject": e.fact.subject, "prompt": e.fact.prompt,
                     "p_clean": t.p_clean, "p_corrupt": t.p_corrupt})
    avg = average_aligned(traces)
    save_figure(plot_average(avg, n_facts=len(traces)), out / "average.png")
    peaks = {k: peak(a) for k, a in avg.items()}
    Result(kind="trace", tables={"facts": table_from_rows(rows)},
           tensors={f"average_{k}": v for k, v in avg.items()},
           meta={"positions": list(POSITIONS), "n_samples": n_samples, "window": window, "noise": "3 x std(W_E)",
                 "scoring": "first_token", "peaks": {k: list(v) for k, v in peaks.items()}},
           provenance=make_provenance(wb, data_hash=facts_hash(facts), seed=seed)).save(out / "result")
    return peaks
