"""Generate notebooks/08_popularity.ipynb (committed without outputs). Run: python notebooks/make_08_popularity.py"""

from pathlib import Path

from nbgen import write_notebook

cells = [
    ("md", "# 08 · Popularity and substitutions in SmolLM2\n\nThe real-model counterpart of notebook 04: there the "
           "exposure count of each synthetic fact is known; here it is proxied by how common the entity's name is in "
           "English (`wordfreq` Zipf frequency: log10 of occurrences per billion words). Two questions on all 439 "
           "shipped facts: is recall better for popular subjects and answers, and when the model is wrong, does it "
           "name a *more frequent* entity of the same type (Istanbul for Ankara) more often than chance? About a "
           "minute on a CPU; `ffnmem recall` runs the same analysis."),
    ("code", "import ffnmem\nfrom ffnmem.data.facts import load_facts\nfrom ffnmem.methods.recall import recall\n"
             "from ffnmem.methods.popularity import popularity, popularity_analysis, shipped_facts\n"
             "from ffnmem import viz\n\n"
             "wb = ffnmem.load_model('smollm2-135m', device='cpu')\n"
             "{name: popularity(name) for name in ['Paris', 'Sydney', 'Canberra', 'New Delhi', 'Herzogenaurach']}"),
    ("md", "Multi-word names get a combined, lower frequency (\"New Delhi\"), and every sense of a word counts "
           "(Turkey, Jordan): the proxy is rough. Score every fact (first-token scoring), then analyse."),
    ("code", "facts = load_facts('all')\nrec = recall(wb, facts)\n"
             "res = popularity_analysis(wb, facts, rec, pool_facts=shipped_facts(), seed=0)\n"
             "res.table('popularity_bins').round(2)"),
    ("code", "viz.plot_recall_vs_popularity(res);"),
    ("code", "res.meta['fits']"),
    ("md", "## Substitutions\n\nFor each wrong fact the model's greedy continuation is matched against the entities "
           "of the answer's type (cities, countries, currencies, … pooled over every shipped relation). The chance "
           "rate is the share expected if the substitute were drawn uniformly from the other entities of that type."),
    ("code", "res.meta['substitution']"),
    ("code", "s = res.table('substitutions')\n"
             "s[s.kind != 'not_listed'][['relation', 'subject', 'target', 'substitute', 'target_zipf', "
             "'substitute_zipf', 'kind']].head(15).round(2)"),
    ("code", "viz.plot_substitutions(res);"),
    ("code", "res.table('substitution_relations').round(2)"),
    ("md", "Points above the diagonal are substitutes more frequent than the right answer. The facts are not "
           "independent (the model answers \"Europe\" for most wrong continent facts), so read the p-value with "
           "the per-relation table beside it."),
]
write_notebook(cells, Path(__file__).with_name("08_popularity.ipynb"))
