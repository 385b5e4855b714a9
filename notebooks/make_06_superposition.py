"""Generate notebooks/06_superposition.ipynb (committed without outputs)."""

from pathlib import Path

import nbformat as nbf

cells = [
    ("md", "# Superposition: toy models and sparse dictionaries over FFN activations\n\nElhage et al. (2022): "
           "with sparse features, a model with m hidden dimensions stores more than m features, in superposition. "
           "All instances below train at once (a batch dimension over instances) on CPU."),
    ("code", "import pandas as pd\n"
             "from ffnmem import viz\nfrom ffnmem.methods import superposition as sp\n\n"
             "models = sp.sparsity_sweep([0.0, 0.7, 0.9, 0.99, 0.999], n_features=20, n_hidden=5, steps=1500)\n"
             "pd.DataFrame({'sparsity': models.config.sparsity, 'represented': models.metrics['represented'],\n"
             "              'dims_per_feature': models.metrics['dims_per_feature']})"),
    ("code", "viz.plot_wtw(models);"),
    ("code", "viz.plot_dimensionality(models);"),
    ("md", "## Phase diagram (n=2, m=1)\nFeature 1 has importance 1, feature 2 a relative importance r."),
    ("code", "d = sp.phase_diagram([0.0, 0.7, 0.9, 0.99], [0.1, 0.5, 2.0, 10.0], restarts=2, steps=800)\n"
             "viz.plot_phase(d);"),
    ("md", "## Sparse dictionaries on a real FFN (eai-sparsify)\nA transcoder (FFN input → FFN output) and an "
           "SAE on the coefficients of tiny-2l layer 1, trained by `sparsify.Trainer`; held-out FVU, L0, dead "
           "latents, and the monosemanticity proxy (entropy of the top-10 example tokens; lower = fewer contexts)."),
    ("code", "import ffnmem\nfrom ffnmem.methods import sae as S\nfrom ffnmem.data.corpus import default_corpus, windows\n"
             "wb = ffnmem.load_model('tiny-2l', device='cpu')\ntokens = windows(wb, default_corpus(), window=64, max_windows=48)\n"
             "x, y, ids = S.capture_pairs(wb, tokens, 1, target='post')\nn = len(x) * 3 // 4\n"
             "coder = S.train(x[:n], y[:n], transcode=False, expansion=4, k=16, epochs=3)\n"
             "S.evaluate(coder, x[n:], y[n:])"),
    ("code", "S.monosemanticity(x[n:], S.encode(coder, x[n:]), ids[n:], k=10)"),
]
nb = nbf.v4.new_notebook()
nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("06_superposition.ipynb"))
