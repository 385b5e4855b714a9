"""Key-value memories: trigger mining, agreement, neuron cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ffnmem.cli.app import (
    SEED_MAX,
    DeviceOpt,
    ForceOpt,
    ModelOpt,
    TextOpt,
    _corpus_tokens,
    _load,
    app,
    out,
    parse_layers,
)
from ffnmem.core.errors import BadInput
from ffnmem.core.outputs import claim
from ffnmem.jobs.keys import KeyAgreementParams, run_keys
from ffnmem.methods import triggers as T
from ffnmem.store.results import Result
from ffnmem.viz.cards import neuron_card


@app.command()
def keys(
    model: ModelOpt = "smollm2-135m",
    text: TextOpt = None,
    layers: Annotated[str, typer.Option(help="Layers to mine: all, 5, 0-3,10, -1.")] = "all",
    window: Annotated[int, typer.Option(min=2, help="Tokens per window.")] = 128,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Stop after about this many tokens.")] = 16384,
    k: Annotated[int, typer.Option(min=1, help="Top trigger examples kept per key.")] = 20,
    value_k: Annotated[int, typer.Option(min=1, help="Top value tokens checked for agreement.")] = 10,
    n_triggers: Annotated[int, typer.Option(min=1, help="Top trigger examples whose next token is checked.")] = 10,
    cards: Annotated[int, typer.Option(min=0, help="Neuron cards written per layer.")] = 2,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of the shuffled-pairing baseline.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 8,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("ffnmem-out/keys"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Key-value memories: mine each key's top trigger examples over a corpus, read values in
    vocabulary space, measure key-value agreement by layer against a shuffled baseline, and write
    neuron cards and a report (Markdown + HTML)."""
    claim(out_dir, force=force)
    wb = _load(model, device)
    chosen = parse_layers(layers, wb.n_layers)
    tokens = _corpus_tokens(wb, text, window, max_tokens)
    usable = tokens.shape[0] * (tokens.shape[1] - 1)
    if k > usable:
        raise BadInput(f"--k {k} is larger than the corpus ({usable} usable token positions); give more text or a smaller --k")
    params = KeyAgreementParams(layers=chosen, k=k, value_k=value_k, n_triggers=n_triggers, batch_size=batch_size)
    report = run_keys(wb, tokens, params, out_dir, seed=seed, cards_per_layer=cards,
                      corpus=",".join(map(str, text)) if text else "stdlib-docstrings")
    out.print(f"report written to {report} (HTML: {report.with_suffix('.html')})")


@app.command()
def neuron(
    layer: Annotated[int, typer.Argument(help="Layer index (negative counts from the top).")],
    index: Annotated[int, typer.Argument(min=0, help="Neuron (memory) index within the layer.")],
    model: ModelOpt = "smollm2-135m",
    triggers: Annotated[Path | None, typer.Option(help="A triggers/ result written by `ffnmem keys` "
                                                  "(else the layer is mined over --max-tokens of the corpus).")] = None,
    text: TextOpt = None,
    window: Annotated[int, typer.Option(min=2, help="Tokens per window.")] = 128,
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens mined when no --triggers is given.")] = 8192,
    k: Annotated[int, typer.Option(min=1, help="Trigger examples shown.")] = 10,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default ffnmem-out/neuron-L-N.html).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """A neuron card: one memory's trigger examples, value tokens and activation histogram, as HTML."""
    if out_file is not None:
        claim(out_file, force=force, file=True)
    wb = _load(model, device)
    layer = wb.check_layer(layer)
    out_file = out_file or Path(f"ffnmem-out/neuron-{layer}-{index}.html")
    claim(out_file, force=force, file=True)
    if triggers is not None:
        tr = T.from_result(_triggers_of(triggers, wb))
    else:
        tr = T.mine(wb, _corpus_tokens(wb, text, window, max_tokens), [layer], k=k, progress="mining")
    card = neuron_card(wb, tr, layer, index, n_examples=k)
    path = card.save(out_file)
    for r in card.examples[:5]:
        out.print(f"  m={r['coeff']:7.3f}  …{r['context'][-40:]!r} [{r['trigger']!r}] → {r['next']!r}", highlight=False)
    out.print(f"value promotes: {', '.join(repr(t) for t, _ in card.top_tokens)}", highlight=False)
    out.print(f"card written to {path}")


def _triggers_of(path: Path, wb):
    """The triggers result at ``path``, refused when it was mined on other weights than ``wb``'s:
    its token ids and neuron indices would then describe another model."""
    res = Result.load(path)
    if res.kind != "triggers":
        raise BadInput(f"{path} holds a {res.kind!r} result, not triggers; pass the triggers/ folder written by `ffnmem keys`")
    mined = res.provenance.get("weight_hash"), res.provenance.get("model_id")
    if mined[0] != wb.weight_hash:
        raise BadInput(f"{path} was mined on {mined[1]} (weights {str(mined[0])[:12]}), not on {wb.model_id} "
                       f"(weights {wb.weight_hash[:12]}); pass the same --model or mine again")
    return res
