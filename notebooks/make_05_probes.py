"""Generate notebooks/05_probes.ipynb (committed without outputs)."""

from pathlib import Path

from nbgen import write_notebook

cells = [
    ("md", "# Linear probes with control tasks (SmolLM2-135M)\n\nWhat can be read off the residual stream at the "
           "last subject token, layer by layer? A logistic probe (scikit-learn estimator contract) is cross-validated "
           "on the task and on a Hewitt & Liang *control task* (random labels per subject); selectivity is the gap."),
    ("code", "import numpy as np, pandas as pd\nimport ffnmem\nfrom ffnmem import viz\nfrom ffnmem.methods import probes as P\n"
             "from ffnmem.jobs.probe import builtin_task\n\n"
             "wb = ffnmem.load_model('smollm2-135m', device='cpu')\n"
             "tasks = {t: builtin_task(t) for t in ['city_continent', 'word_category']}\n"
             "tasks['city_continent'][0][:3], tasks['city_continent'][1][:3]"),
    ("code", "layers = [0, 4, 8, 12, 16, 20, 24, 29]\nhooks = [f'blocks.{l}.hook_resid_post' for l in layers]\n"
             "curves = {}\nfor name, (prompts, labels, types) in tasks.items():\n"
             "    acts, where = P.representations(wb, prompts, hooks, positions='last')\n"
             "    curves[name] = P.layer_curve(acts, np.array(labels), types, cv=5, probe=P.LogisticProbe(C=0.1))\n"
             "pd.concat({k: pd.DataFrame(v) for k, v in curves.items()})[['accuracy', 'control', 'selectivity', 'majority']].round(3)"),
    ("code", "viz.plot_curves(curves);"),
    ("md", "## Sparse probing: which FFN neurons carry the category?\nAn L1 probe on the FFN coefficients of "
           "one layer names the few neurons it relies on."),
    ("code", "prompts, labels, _ = tasks['word_category']\nacts, _ = P.representations(wb, prompts, ['blocks.12.mlp.hook_post'])\n"
             "y = np.array(labels) == 'animal'\nsp = P.SparseProbe(C=0.05).fit(acts['blocks.12.mlp.hook_post'].numpy(), y)\n"
             "print('train accuracy', sp.score(acts['blocks.12.mlp.hook_post'].numpy(), y))\nsp.top_neurons(5)"),
]
write_notebook(cells, Path(__file__).with_name("05_probes.ipynb"))
