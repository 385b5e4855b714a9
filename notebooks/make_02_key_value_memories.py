"""Generate notebooks/02_key_value_memories.ipynb (committed without outputs)."""

from pathlib import Path

import nbformat as nbf

cells = [
    ("md", "# FFN layers as key-value memories (SmolLM2-135M)\n\nKeys detect patterns in the input (their top "
           "*trigger examples* over a corpus); values promote tokens (read through the final norm and the "
           "unembedding). Geva et al. (2021) found that a value's top token matches its key's trigger next token "
           "more often in upper layers. We measure that here on a small slice of the built-in corpus."),
    ("code", "import ffnmem\nfrom ffnmem.methods import triggers as T, updates as U\nfrom ffnmem.viz.cards import neuron_card\n"
             "from ffnmem.data.corpus import default_corpus, windows\n\n"
             "wb = ffnmem.load_model('smollm2-135m', device='cpu')\n"
             "tokens = windows(wb, default_corpus(), window=64, max_windows=32)\ntokens.shape"),
    ("md", "## Trigger examples per key\nRanked by the signed coefficient m (gated SiLU coefficients can be "
           "negative; at every example the memory writes +v)."),
    ("code", "tr = T.mine(wb, tokens, [1, 25, 28], k=10, progress=False)\n"
             "import pandas as pd\npd.DataFrame(T.example_rows(wb, tr, 25, [int(tr.values[25][0].argmax())]))"
             "[['coeff', 'context', 'trigger', 'next']]"),
    ("md", "## Agreement by layer vs a shuffled key-value pairing"),
    ("code", "ag = T.agreement_by_layer(wb, tr, value_k=10, n_triggers=10, n_shuffles=3)\n"
             "pd.DataFrame(ag.rows())"),
    ("code", "from ffnmem import viz\nviz.plot_agreement(ag);"),
    ("md", "## A neuron card"),
    ("code", "neuron_card(wb, tr, 25, int(tr.values[25][0].argmax()), hist_windows=8)"),
    ("md", "## How FFN updates build a prediction (Geva 2022)\nPer layer: the logit-lens prediction before and "
           "after the FFN, and whether the FFN keeps it, replaces it with its dominant memory's token, or composes "
           "a new one."),
    ("code", "b = U.build_prediction(wb, 'The capital of France is')\nprint(b.shares())\n"
             "pd.DataFrame([r for r in b.layers if r['pos'] == max(x['pos'] for x in b.layers)])"
             "[['layer', 'before', 'after', 'dominant_token', 'case']].tail(10)"),
    ("code", "pd.DataFrame(b.updates)"),
]
nb = nbf.v4.new_notebook()
nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("02_key_value_memories.ipynb"))
