"""Write notebooks/01_quickstart.ipynb (no outputs). Run: python notebooks/make_01_quickstart.py"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# ffnmem quickstart: FFN layers as key-value memories

A feed-forward layer computes coefficients `m = act(K x)` (gated models: `act(G x) ⊙ K x`) and writes
`Σ_i m_i v_i + b_out` to the residual stream: key `k_i` detects a pattern, value `v_i` is what memory `i`
writes. This notebook loads the embedded SmolLM2-135M (offline), checks that reading, captures
coefficients over a corpus with a top-k reducer, runs the main job, and saves a result."""),
    ("code", """import tempfile
from pathlib import Path

import torch

import ffnmem
from ffnmem import viz
from ffnmem.methods.capture import NeuronStats, TopK, hook_names, reduce
from ffnmem.store.provenance import tokens_hash
from ffnmem.data.corpus import default_corpus, windows
from ffnmem.jobs.demo import run_demo
from ffnmem.methods.keyvalue import value_tokens
from ffnmem.store.results import Result, table_from_rows
from ffnmem.store.provenance import make_provenance

torch.set_num_threads(2)
wb = ffnmem.load_model("smollm2-135m", device="cpu")
wb"""),
    ("md", """## The FFN view of one layer

Keys, gates and values are `d_mlp × d_model` views of the live weights, whatever the architecture."""),
    ("code", """layer = 12
ffn = wb.ffn(layer)
print("keys", tuple(ffn.keys.shape), "gates", None if ffn.gates is None else tuple(ffn.gates.shape),
      "values", tuple(ffn.values.shape), "act", ffn.act_fn, "b_out", ffn.b_out)"""),
    ("md", """**Parity.** Capture the FFN input `x`, the coefficients `m` and the FFN output from hooks; then
`ffn.coefficients(x)` must give `m`, and `Σ_i m_i v_i + b_out` must give `hook_mlp_out`."""),
    ("code", """tokens = wb.to_tokens("The capital of France is Paris, and the capital of Italy is")
names = [ffnmem.hook_name(k, layer) for k in ("mlp_in", "post", "out")]
_, cache = wb.bridge.run_with_cache(tokens, names_filter=names)
x, m, out = (cache[n] for n in names)
print("coefficients:   max |ffn.coefficients(x) - m|   =", float((ffn.coefficients(x) - m).abs().max()))
print("FFN output:     max |Σ m_i v_i + b - mlp_out|   =", float((ffn.output(m) - out).abs().max()))
print("output scale:   max |mlp_out|                   =", float(out.abs().max()))
assert torch.allclose(ffn.output(m), out, atol=1e-4, rtol=1e-4)"""),
    ("md", """## Capture coefficients over a corpus with a top-k reducer

`reduce` streams token windows through the model with only the requested hooks and folds each batch into
reducers, so memory stays `O(k · d_mlp)` per layer whatever the corpus size. The default corpus is prose
from the standard library's docstrings (on every machine, no download)."""),
    ("code", """corpus = windows(wb, default_corpus(), window=64, max_windows=16)
names = hook_names(wb, ["post"], layers=[layer])
topk, stats = reduce(wb, corpus, names, [TopK(k=8), NeuronStats()], batch_size=8, progress=False)
top = topk.result()[names[0]]
st = stats.result()[names[0]]
print(corpus.shape, "tokens;", "top values", tuple(top["values"].shape),
      "; mean share of tokens with m > 0:", round(float(st["frac_active"].mean()), 3))"""),
    ("md", """The neuron with the largest activation in this sample, its top contexts (the token where it fires is
in brackets), and the tokens its value vector promotes when read through the unembedding."""),
    ("code", """neuron = int(top["values"][0].argmax())
flat, pos = corpus.reshape(-1), corpus.shape[1]
print(f"L{layer}.{neuron}")
for value, idx in zip(top["values"][:5, neuron].tolist(), top["index"][:5, neuron].tolist()):
    start = max(idx - 8, (idx // pos) * pos)  # stay inside the window
    context = wb.decode(flat[start:idx].tolist()).replace("\\n", " ")
    print(f"  m = {value:6.2f}   ...{context}[{wb.decode(flat[idx].tolist())}]")
proj = value_tokens(wb, layer, [neuron], k=8)
print("value promotes:", [wb.decode(i) for i in proj.top_ids[0].tolist()])"""),
    ("md", """## The main job

`run_demo` asks the model 20 capital-city facts, finds the FFN memories with the largest direct effect on
each answer and reads their values in vocabulary space (the same as `ffnmem demo` on the command line)."""),
    ("code", """out_dir = Path(tempfile.mkdtemp(prefix="ffnmem-quickstart-"))
report = run_demo(wb, out_dir)
print(report.read_text().splitlines()[4])
demo = Result.load(out_dir / "result")  # the job wrote layer_dla.png; draw the same figure from its tensors
viz.plot_layer_dla(demo.tensors["mlp_dla"], demo.tensors["attn_dla"], list(demo.table("facts")["subject"]));"""),
    ("md", """## Results with provenance

Analyses return `Result` objects: Parquet tables, safetensors tensors and a JSON header that records the
model's weight hash, the data hash, the seed and library versions. Saving is atomic."""),
    ("code", """rows = [{"layer": layer, "neuron": int(n), "max_m": float(top["values"][0, n]),
         "frac_active": float(st["frac_active"][n])} for n in top["values"][0].topk(5).indices.tolist()]
result = Result(kind="quickstart-topk", tables={"neurons": table_from_rows(rows)},
                tensors={"top_values": top["values"], "top_index": top["index"]},
                provenance=make_provenance(wb, data_hash=tokens_hash(corpus), seed=0))
path = result.save(out_dir / "topk")
loaded = Result.load(path)
assert torch.equal(loaded.tensors["top_values"], top["values"])
print(loaded.provenance["model_id"], loaded.provenance["weight_hash"][:12], loaded.provenance["data_hash"][:12])
loaded.table("neurons")"""),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).with_name("01_quickstart.ipynb")
    nbformat.write(build(), path)
    print(path)
