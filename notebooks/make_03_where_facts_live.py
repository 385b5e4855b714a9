"""Generate notebooks/03_where_facts_live.ipynb (committed without outputs). Run: python notebooks/make_03_where_facts_live.py"""

from pathlib import Path

import nbformat as nbf

cells = [
    ("md", "# 03 · Where facts live in SmolLM2\n\nRecall of shipped fact sets, the FFN neurons that write an answer "
           "(direct logit attribution), what happens when they are ablated, and causal tracing (Meng et al. 2022). "
           "Small samples so the notebook runs in about two minutes on a CPU; the CLI (`ffnmem recall/attribute/trace`) "
           "runs the full sets."),
    ("code", "import torch\nimport ffnmem\nfrom ffnmem.data.facts import load_facts, encode_facts\nfrom ffnmem.methods.recall import recall\n"
             "from ffnmem.methods.ablation import top_vs_random, summarise_drops\nfrom ffnmem.methods.tracing import trace\n"
             "from ffnmem import viz\n\ntorch.manual_seed(0)\nwb = ffnmem.load_model('smollm2-135m', device='cpu')\nwb"),
    ("md", "## Recall per relation (3 facts per relation, first-token scoring)"),
    ("code", "facts = load_facts('all', limit_per_relation=3)\nres = recall(wb, facts, scoring='first_token', k=5)\n"
             "res.table('relations').round(3)"),
    ("md", "## Which FFN neurons write ' Paris'?"),
    ("code", "from ffnmem.methods.attribution import direct_effects\nparis = wb.answer_token(' Paris')\n"
             "fx = direct_effects(wb, ['The capital of France is'], [paris])\n"
             "[(l, n, round(e, 3)) for l, n, e in fx.top(0, 8)]"),
    ("md", "## Ablating the top-20 DLA neurons vs 20 random neurons (zero, last position)"),
    ("code", "enc = encode_facts(wb, load_facts('all', relations=['capital_of'], limit_per_relation=4))\n"
             "rows = top_vs_random(wb, [e.fact.prompt for e in enc], [e.answer_ids[0] for e in enc], k=20, seed=0)\n"
             "summarise_drops(rows)"),
    ("md", "## Localization methods compared, validated the same way\n\n"
           "`locate` ranks memories for the answer's *margin* over the relation's other answers; `validate` ablates "
           "each fact's top k and measures the margin's relative drop on the fact, on random sets matched on layer and "
           "activation (the null), on other facts of the same and other relations, and on the held-out paraphrase. "
           "Four facts of two relations and DLA only here (seconds); `ffnmem localize` runs every method on the fact "
           "sets, and docs/FINDINGS.md has the 100-fact table."),
    ("code", "from ffnmem.jobs import localization\n"
             "p = localization.LocalizationParams(methods=['dla'], k=10, modes=['zero'], ks=[1, 4, 16], n_random=2, n_collateral=3)\n"
             "cmp = localization.compute(wb, load_facts('all', relations=['capital_of', 'currency'], limit_per_relation=4), p)\n"
             "cmp.table('validation')[['subject', 'target_drop', 'random_drop', 'same_relation_drop', "
             "'other_relation_drop', 'paraphrase_drop', 'k_half']].round(2)"),
    ("md", "## Causal tracing of one fact (2 noise samples, even layers)"),
    ("code", "e = enc[0]\nt = trace(wb, e.fact.prompt, e.answer_ids[0], e.subject, n_samples=2, layers=list(range(0, 30, 2)))\n"
             "viz.plot_trace(t);"),
]
nb = nbf.v4.new_notebook()
nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("03_where_facts_live.ipynb"))
