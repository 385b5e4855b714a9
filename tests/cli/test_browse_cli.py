"""`ffnmem browse`: a site built from a tiny keys run loads in headless Chromium, every internal link
resolves, and the search finds a memory by one of its tokens; a folder that is not a run is one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


def _dom(chromium: str, url: str) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tempfile.mkdtemp()}", "--virtual-time-budget=5000", "--dump-dom", url],
                          check=True, capture_output=True, text=True, timeout=60).stdout


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v and not v.startswith(("data:", "#")):
                self.links.append(v)


def _links(html: str) -> list[str]:
    p = _Links()
    p.feed(html)
    return p.links


def _check_links(page: Path, html: str, site: Path) -> None:
    for link in _links(html):
        url = urlsplit(link)
        assert not url.scheme and not url.netloc, f"{page.name} links outside the site: {link}"
        target = (page.parent / unquote(url.path)).resolve()
        assert target.is_file() and target.is_relative_to(site.resolve()), f"{page.name}: broken link {link}"


@pytest.fixture(scope="module")
def keys_run(tiny, tmp_path_factory):
    """The two results of a tiny-2l keys run that a site's memory pages read (both layers); a short
    fixed text, not the stdlib corpus (11 s to gather)."""
    from ffnmem.data.corpus import windows
    from ffnmem.jobs.keys import memory_views
    from ffnmem.methods import triggers as T

    text = ["The capital of France is Paris. The capital of Italy is Rome. def read(path): return open(path).read()"] * 6
    tr = T.mine(tiny, windows(tiny, text, window=32, max_windows=12), [0, 1], k=5, progress=False)
    out = tmp_path_factory.mktemp("run") / "keys"
    T.to_result(tiny, tr).save(out / "triggers")
    memory_views(tiny, tr).save(out / "memories")
    return out


def test_browse_site_loads_links_resolve_and_search_finds_a_memory(cli, keys_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it with apt-get when run as root)")
    site = tmp_path / "site"
    r = cli("browse", keys_run, "-o", site)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "512 memories in 2 layers" in r.stdout
    layer = json.loads(re.search(r",(\{.*\})\);", (site / "data" / "layer-1.js").read_text()).group(1))
    token = next(t for t, _ in layer["7"]["p"] if t.strip())  # memory L1.7's first visible promoted token
    # the search: index.html?q=TOKEN lists L1.7 among the memories
    dom = _dom(chromium, (site / "index.html").as_uri() + "?q=" + token.strip())
    assert re.search(r"<p id=\"count\">\d+ memories", dom), dom[:2000]
    assert 'href="memory.html?layer=1&amp;neuron=7"' in dom
    _check_links(site / "index.html", dom, site)  # the index after its script ran: search hits, layers
    # the memory page renders from data/layer-1.js: examples with the trigger marked, the histogram
    dom = _dom(chromium, (site / "memory.html").as_uri() + "?layer=1&neuron=7")
    assert "<h1>Memory L1.7</h1>" in dom and "<mark>" in dom and "<svg" in dom and "<rect" in dom
    assert "[object" not in dom
    _check_links(site / "memory.html", dom, site)
    dom = _dom(chromium, (site / "memory.html").as_uri() + "?layer=0")  # a layer's list of memories
    assert dom.count('href="memory.html?layer=0&amp;neuron=') == 256
    for page in site.rglob("*.html"):  # every static page's links
        _check_links(page, page.read_text(), site)


def test_browse_refuses_a_folder_that_is_not_a_run(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    r = cli("browse", tmp_path, "-o", tmp_path / "site")
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "holds no browsable ffnmem results" in r.stderr


def test_browse_claims_page_lists_every_claim(cli, keys_run, tmp_path):
    """With --claims, claims.html has one row per claim file entry (NOT RUN where no run exists) and the
    index links to it."""
    from ffnmem.batch.claims import all_claims

    probes = Path(__file__).resolve().parents[2] / "probes" / "claims"
    r = cli("browse", keys_run, "-o", tmp_path / "site", "--claims", tmp_path / "no-runs", "--probes", probes)
    assert r.returncode == 0, r.stdout + r.stderr
    page = (tmp_path / "site" / "claims.html").read_text()
    ids = [c.id for c in all_claims(probes)]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<tr><td>([^<]+)</td><td><b[^>]*>([A-Z ]+)</b></td>", page)}
    assert ids and all(rows.get(i) == "NOT RUN" for i in ids)
    assert "href=claims.html" in (tmp_path / "site" / "index.html").read_text()
