"""The pages of an offline memory browser (``ffnmem browse``): static HTML, one CSS and one JS file.

Nothing here reads results or computes: :mod:`ffnmem.jobs.browse` gathers the data and calls these.
The site works from ``file://`` (no server, no network): data travel as ``.js`` files that call
``FFNMEM.got(...)`` (a ``<script>`` loads from disk where ``fetch`` of JSON is refused), so

* ``index.html`` loads ``data/index.js`` (per memory: its top promoted tokens and top trigger tokens as
  indices into one token list) and searches it in the browser (``index.html?q=Paris``);
* ``memory.html?layer=L&neuron=N`` loads ``data/layer-L.js`` and draws one memory (trigger examples,
  promoted/suppressed tokens, the coefficient histogram as inline SVG, the facts it carries);
  ``memory.html?layer=L`` lists the layer's memories. One page for all memories keeps a 46k-memory
  site to 30 data files instead of 46k pages;
* ``facts/*.html`` are fact cards (:class:`ffnmem.viz.factcard.FactCard`), ``claims.html`` the claims.
"""

from __future__ import annotations

import html
import json

from ffnmem.viz.tables import ClaimsTable

CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:1em auto;padding:0 1em;color:#222}
a{color:#1a55a8;text-decoration:none} a:hover{text-decoration:underline}
nav{font-size:.9em;margin-bottom:.6em;color:#666} h1{font-size:1.5em;margin:.2em 0}
table{border-collapse:collapse;margin:.4em 0 1em} td,th{padding:2px 8px;text-align:left;vertical-align:top}
tr:nth-child(even){background:#f4f4f4} .num{text-align:right} .muted{color:#777}
code,.tok{background:#eef;border-radius:3px;padding:0 3px;white-space:pre;font-family:ui-monospace,monospace}
td.ctx{font-family:ui-monospace,monospace;white-space:pre-wrap} mark{background:#ffd54f}
#q{font-size:1.1em;padding:4px 8px;width:22em} .layers a{display:inline-block;min-width:3.2em}
section{border-top:1px solid #ccc;margin-top:1em} svg text{font-size:10px;fill:#444} img{max-width:100%}
"""

JS = r"""const FFNMEM = {waiting: {}, data: {}};
FFNMEM.got = (name, value) => { FFNMEM.data[name] = value; (FFNMEM.waiting[name] || []).forEach(f => f(value)); };
FFNMEM.load = (name, src, then) => {  // a <script> works from file://, where fetch() of JSON is refused
  if (name in FFNMEM.data) return then(FFNMEM.data[name]);
  (FFNMEM.waiting[name] = FFNMEM.waiting[name] || []).push(then);
  const s = document.createElement('script'); s.src = src;
  s.onerror = () => FFNMEM.fail('cannot load ' + src + ': not in this site');
  document.head.appendChild(s);
};
FFNMEM.fail = msg => { const m = document.getElementById('main'); m.textContent = ''; m.appendChild(el('p', {class: 'error'}, msg)); };
function el(tag, attrs, ...kids) {  // DOM built with textContent only: run text never becomes markup
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids.flat(Infinity)) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const tok = t => el('span', {class: 'tok'}, t);
const memHref = (l, n) => 'memory.html?layer=' + l + '&neuron=' + n;
const norm = s => s.trim().toLowerCase();
const fmt = x => (x === null || x === undefined) ? '–' : (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));

function search(idx, query) {
  // memories whose top promoted or top trigger tokens include the query token (trimmed, any case);
  // ranked by where the token stands in the memory's lists (promoted first)
  const q = norm(query); if (!q) return [];
  const hits = new Set(); idx.tokens.forEach((t, i) => { if (norm(t) === q) hits.add(i); });
  if (!hits.size) return [];
  const out = [];
  for (const m of idx.memories) {
    let score = Infinity;
    m[2].forEach((t, r) => { if (hits.has(t)) score = Math.min(score, r); });
    m[3].forEach((t, r) => { if (hits.has(t)) score = Math.min(score, 100 + r); });
    if (score < Infinity) out.push([score, m]);
  }
  out.sort((a, b) => a[0] - b[0] || a[1][0] - b[1][0] || a[1][1] - b[1][1]);
  return out;
}

function showSearch(idx, query) {
  const box = document.getElementById('results'); box.textContent = '';
  if (!norm(query)) return;
  const t0 = performance.now(), found = search(idx, query), ms = performance.now() - t0, shown = found.slice(0, 300);
  box.appendChild(el('p', {id: 'count'}, found.length + ' memories with ' + JSON.stringify(query.trim()) +
    ' among their top promoted or trigger tokens' + (found.length > shown.length ? ' (first ' + shown.length + ' shown)' : ''),
    el('span', {class: 'muted', id: 'ms'}, ' · searched ' + idx.memories.length + ' memories in ' + ms.toFixed(0) + ' ms')));
  if (!shown.length) return;
  const rows = shown.map(([s, m]) => el('tr', {class: 'hit'},
    el('td', {}, el('a', {href: memHref(m[0], m[1])}, 'L' + m[0] + '.' + m[1])),
    el('td', {}, s < 100 ? 'promotes (#' + (s + 1) + ')' : 'fires on (#' + (s - 99) + ')'),
    el('td', {}, m[2].map(t => [tok(idx.tokens[t]), ' '])), el('td', {}, m[3].map(t => [tok(idx.tokens[t]), ' ']))));
  box.appendChild(el('table', {}, el('tr', {}, el('th', {}, 'memory'), el('th', {}, 'match'),
    el('th', {}, 'top promoted tokens'), el('th', {}, 'top trigger tokens')), rows));
}

function indexPage() {
  FFNMEM.load('index', 'data/index.js', idx => {
    const input = document.getElementById('q');
    const q = new URLSearchParams(location.search).get('q') || decodeURIComponent(location.hash.replace(/^#q=/, ''));
    input.value = q; showSearch(idx, q);
    input.addEventListener('input', () => { history.replaceState(null, '', '?q=' + encodeURIComponent(input.value)); showSearch(idx, input.value); });
  });
}

function histogram(counts, lo, hi, ntok) {
  const W = 420, H = 130, pad = 28, n = counts.length, top = Math.log1p(Math.max(...counts, 1));
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('width', W); svg.setAttribute('height', H + 34); svg.setAttribute('class', 'hist');
  const add = (tag, attrs, text) => { const e = document.createElementNS(svg.namespaceURI, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; svg.appendChild(e); };
  counts.forEach((c, i) => { const h = H * Math.log1p(c) / top;
    add('rect', {x: pad + i * (W - pad) / n, y: H - h, width: (W - pad) / n - 1, height: h, fill: '#5b8bd0'}, undefined); });
  add('text', {x: pad, y: H + 14}, fmt(lo)); add('text', {x: W - 30, y: H + 14}, fmt(hi));
  add('text', {x: pad + 60, y: H + 28}, 'coefficient m over ' + ntok + ' tokens (bar height: log(1 + count))');
  if (lo < 0 && hi > 0) { const x = pad + (W - pad) * (-lo) / (hi - lo); add('line', {x1: x, x2: x, y1: 0, y2: H, stroke: '#c33'}); }
  return svg;
}

function memoryView(site, L, n, d) {
  const m = document.getElementById('main'); m.textContent = '';
  document.title = 'L' + L + '.' + n + ' · ' + site.model;
  m.appendChild(el('h1', {}, 'Memory L' + L + '.' + n));
  m.appendChild(el('nav', {}, el('a', {href: 'index.html'}, 'index'), ' · ', el('a', {href: 'memory.html?layer=' + L}, 'layer ' + L),
    ' · ', n > 0 ? el('a', {href: memHref(L, n - 1), id: 'prev'}, '← L' + L + '.' + (n - 1)) : '', ' ',
    n + 1 < site.d_mlp ? el('a', {href: memHref(L, n + 1), id: 'next'}, 'L' + L + '.' + (n + 1) + ' →') : ''));
  if (!d) { m.appendChild(el('p', {}, 'This run holds nothing on this memory (its layer was not mined and no fact names it).')); return; }
  const toks = ts => ts.map(([t, s]) => [tok(t), el('span', {class: 'muted'}, ' ' + fmt(s) + '  ')]);
  if (d.p) m.appendChild(el('section', {id: 'values'}, el('h3', {}, 'Value in vocabulary space'),
    el('p', {}, el('b', {}, 'promotes: '), toks(d.p)), el('p', {}, el('b', {}, 'suppresses: '), toks(d.s || []))));
  else m.appendChild(el('p', {class: 'muted'}, 'No value tokens in this run: `ffnmem keys` writes them (memories/).'));
  if (d.st) m.appendChild(el('p', {}, 'mean ' + fmt(d.st[0]) + ' · std ' + fmt(d.st[1]) + ' · share m > 0 ' + fmt(d.st[2]) +
    ' · max ' + fmt(d.st[3]) + (d.ag === undefined ? '' : ' · key-value agreement: ' + (d.ag ? 'yes' : 'no'))));
  if (d.h) m.appendChild(el('section', {id: 'histogram'}, el('h3', {}, 'Activation histogram'), histogram(d.h, d.he[0], d.he[1], site.hist_tokens)));
  if (d.ex) m.appendChild(el('section', {id: 'examples'}, el('h3', {}, 'Top trigger examples'),
    el('table', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, 'm'), el('th', {}, 'prefix · trigger'), el('th', {}, 'next')),
      d.ex.map(([c, ctx, trig, nxt], r) => el('tr', {}, el('td', {}, r + 1), el('td', {class: 'num'}, fmt(c)),
        el('td', {class: 'ctx'}, ctx, el('mark', {}, trig)), el('td', {}, tok(nxt)))))));
  if (d.f) m.appendChild(el('section', {id: 'facts'}, el('h3', {}, 'Facts it carries'),
    el('ul', {}, d.f.map(([href, label, how]) => el('li', {}, el('a', {href: href}, label), ' — ', how)))));
}

function layerView(site, L, layer) {
  const m = document.getElementById('main'); m.textContent = '';
  m.appendChild(el('h1', {}, 'Layer ' + L));
  m.appendChild(el('nav', {}, el('a', {href: 'index.html'}, 'index')));
  const ns = Object.keys(layer).map(Number).sort((a, b) => a - b);
  m.appendChild(el('table', {}, el('tr', {}, el('th', {}, 'memory'), el('th', {}, 'max m'), el('th', {}, 'promotes')),
    ns.map(n => el('tr', {}, el('td', {}, el('a', {href: memHref(L, n)}, 'L' + L + '.' + n)),
      el('td', {class: 'num'}, layer[n].st ? fmt(layer[n].st[3]) : '–'),
      el('td', {}, (layer[n].p || []).slice(0, 6).map(([t]) => [tok(t), ' ']))))));
}

function memoryPage() {
  const a = new URLSearchParams(location.search), L = a.get('layer'), n = a.get('neuron');
  FFNMEM.load('site', 'data/site.js', site => {
    if (L === null || !site.layers.includes(Number(L))) return FFNMEM.fail('no layer ' + L + ' in this site (layers: ' + site.layers.join(', ') + ')');
    FFNMEM.load('layer-' + L, 'data/layer-' + L + '.js', layer =>
      n === null ? layerView(site, Number(L), layer) : memoryView(site, Number(L), Number(n), layer[n]));
  });
}
"""


def page(title: str, body: str, *, script: str = "", depth: int = 0) -> str:
    """A page of the site: local CSS and JS only (``depth``: folders below the site root)."""
    up = "../" * depth
    run = f"<script>{script}</script>" if script else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<link rel=stylesheet href='{up}site.css'><script src='{up}site.js'></script></head>"
            f"<body>{body}{run}</body></html>")


def data_js(name: str, value) -> str:
    """A data file: ``FFNMEM.got(name, {...})`` (compact JSON)."""
    return f"FFNMEM.got({json.dumps(name)},{json.dumps(value, separators=(',', ':'), ensure_ascii=False)});\n"


def index_page(site: dict, facts: list[tuple[str, str]], has_claims: bool) -> str:
    """The front page: search box, layers, facts (``(href, label)``), the claims link."""
    esc = html.escape
    layers = " ".join(f"<a href='memory.html?layer={l}'>L{l}</a>" for l in site["layers"])
    fact_list = "".join(f"<li><a href='{esc(h)}'>{esc(label)}</a></li>" for h, label in facts)
    sources = "".join(f"<li><code>{esc(s)}</code></li>" for s in site["sources"])
    return page(f"ffnmem · {site['model']}", (
        f"<h1>FFN memories of {esc(site['model'])}</h1>"
        f"<p class=muted>{site['n_memories']:,} memories in {len(site['layers'])} layers"
        f"{' · <a href=claims.html>claims</a>' if has_claims else ''} · built from:</p><ul class=muted>{sources}</ul>"
        "<p><input id=q placeholder='a token, e.g. Paris' autofocus> <span class=muted>finds memories whose top "
        "promoted tokens or top trigger tokens include it</span></p><div id=results></div>"
        f"<section><h3>Layers</h3><p class=layers>{layers or 'none'}</p></section>"
        f"<section><h3>Facts ({len(facts)})</h3><ul>{fact_list or '<li>none in this run</li>'}</ul></section>"
        "<div id=main></div>"), script="indexPage()")


def memory_page() -> str:
    return page("memory", "<div id=main>loading…</div>", script="memoryPage()")


def claims_page(rows: list[dict]) -> str:
    """The claims table (:class:`ffnmem.viz.tables.ClaimsTable`, as in a notebook): one row per claim."""
    return page("claims", "<nav><a href='index.html'>index</a></nav><h1>Claims</h1>" + ClaimsTable(rows).to_html())


def fact_page(card_html: str, title: str) -> str:
    """A fact card (``FactCard.to_html()``) as a page of the site, one folder down."""
    return page(title, f"<nav><a href='../index.html'>index</a></nav>{card_html}", depth=1)
