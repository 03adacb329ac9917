"""The book (``make book``) in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright)
opens every page of the site from a local HTTP server and checks what a reader would see go wrong.

- every page loads without a page error (an uncaught exception), a console error or a failed request;
- every image on every page has loaded (a broken ``<img>`` has no natural width);
- each notebook page shows every figure its executed notebook holds (PNG outputs as images, plotly
  outputs as drawn plotly graphs), and its math is typeset (MathJax, offline);
- the search page finds "entropy", and its hits link to pages of the book;
- every solution starts folded (its code not visible), one fold per cell tagged ``solution``, and opens on a
  click; exercises are visible;
- previous / next links chain the landing page and the notebooks, and every page links back to the landing page.

The site checked is the smoke book (``SMOKE=1 make book``), built here through ``book/build.py`` (quick when
the smoke runs are cached in ``build/notebooks-smoke/``: in a whole run these tests start after the notebook smoke
tests and wait until the last of them has written its executed copy); ``MHE_BOOK_DIR=build/book`` checks a built
full book instead. With ``MHE_BROWSER_TESTS=required`` (``.ci/run`` sets it where Chromium is installed) a missing
browser or Playwright is an error, not a skip.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab_tools = _load("jupyterlab_session", ROOT / "tools" / "jupyterlab_session.py")
book_build = _load("book_build", ROOT / "book" / "build.py")

REQUIRED = os.environ.get("MHE_BROWSER_TESTS") == "required"
_missing = ("no Chromium on this machine (Debian: apt-get install chromium)" if lab_tools.find_browser() is None
            else "Playwright is not installed (pip install -e '.[test]')"
            if importlib.util.find_spec("playwright") is None
            else "Sphinx / MyST-NB are not installed (pip install -e '.[book]')"
            if importlib.util.find_spec("myst_nb") is None else None)
if _missing and REQUIRED:
    raise RuntimeError(f"MHE_BROWSER_TESTS=required but {_missing}")
# One xdist worker runs these tests together (one build, one server, one browser), after the notebook smoke tests.
pytestmark = [pytest.mark.skipif(_missing is not None, reason=_missing or ""), pytest.mark.browser,
              pytest.mark.xdist_group("book"), pytest.mark.after_notebooks]

FIGURE_MIME = ("image/png", "application/vnd.plotly.v1+json")


@pytest.fixture(scope="module")
def site(request) -> Path:
    given = os.environ.get("MHE_BOOK_DIR")
    if given:
        path = Path(given).resolve()
        assert (path / "index.html").is_file(), f"MHE_BOOK_DIR={given} holds no index.html: run `make book` first"
        return path
    # the notebook smoke tests of this run (tests/test_notebooks.py, on either xdist worker) write the executed
    # copies the build reuses: wait for them rather than run the notebooks a second time
    request.getfixturevalue("notebook_runs")
    # Sphinx in this process: autodoc finds the package and torch imported already (see book/build.py's render)
    return book_build.build(smoke=True, jobs=2, in_process=True)


@pytest.fixture(scope="module")
def browser(site):
    """One browser context for every page of these tests: one HTTP cache (and with it V8's cache of compiled
    scripts), so the theme's scripts every page loads (fontawesome's 1.5 MB, the search index) and plotly.js are
    fetched and compiled once, not once per page. The server lets the browser keep what it fetched for the
    length of the tests (the site does not change meanwhile). A resource that fails is never cached, so every
    page that asks for it still sees it fail."""
    from playwright.sync_api import sync_playwright

    with book_build.serve(site, cache_seconds=3600) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=lab_tools.find_browser(), args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            yield context, url
            context.close()
        finally:
            chromium.close()


# After the load event: wait until every plotly figure is drawn and MathJax has typeset (the scripts that run
# on load), and until 300 ms have passed since the load event (a script's late error still counts); then
# return what did not work out: the images not loaded, the plotly figures not drawn within 20 s.
SETTLE = """async () => {
  const undrawn = () => Array.from(document.querySelectorAll('.plotly-graph-div'))
    .filter(d => !(d._fullData && d._fullData.length > 0 && d.querySelector('.main-svg'))).length;
  for (let k = 0; k < 400 && undrawn() > 0; k++) await new Promise(r => setTimeout(r, 50));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const since = performance.now() - performance.getEntriesByType('navigation')[0].loadEventEnd;
  if (since < 300) await new Promise(r => setTimeout(r, 300 - since));
  return {broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
          undrawn: undrawn()};
}"""


class Tab:
    """A browser tab (of the shared context, 1280 × 900) that records what goes wrong on the page it shows: page
    errors (uncaught exceptions), console errors, failed requests and HTTP errors. What the page shown before
    causes (a request its unloading cancels, such as a favicon still on its way) is no error of the next page:
    console messages and page errors count from the moment the new page's document is committed, requests when
    the new page asked for them (its own navigation included)."""

    def __init__(self, browser) -> None:
        context, self.served = browser
        self.page = context.new_page()
        self.errors: list[str] = []
        self._committed = False  # the page asked for by ``open`` has replaced the one shown before
        self._requests: set = set()  # the requests of that page
        self.page.on("framenavigated", lambda frame: self._commit(frame))
        self.page.on("request", lambda req: self._request(req))
        self.page.on("pageerror", lambda err: self._committed and self.errors.append(f"page error: {err}"))
        self.page.on("console", lambda msg: self._committed and msg.type == "error"
                     and self.errors.append(f"console: {msg.text}"))
        self.page.on("requestfailed", lambda req: req in self._requests
                     and self.errors.append(f"request failed: {req.url}"))
        self.page.on("response", lambda res: res.request in self._requests and res.status >= 400
                     and self.errors.append(f"HTTP {res.status}: {res.url}"))

    def _commit(self, frame) -> None:
        if frame == self.page.main_frame:
            self._committed = True

    def _request(self, req) -> None:
        if self._committed or (req.is_navigation_request() and req.frame == self.page.main_frame):
            self._requests.add(req)

    def open(self, path: str, base: str | None = None, settle: bool = True) -> None:
        """Load ``path`` as a page opened alone: what the page shown before does from now on is not recorded,
        and recording starts with the first request of ``path`` (see the class). ``settle=False``: only start
        loading (the caller waits, see ``settle``)."""
        self.errors, self._committed, self._requests = [], False, set()
        self.page.goto(f"{base or self.served}/{path}", wait_until="commit")
        if settle:
            self.settle()

    def settle(self) -> dict:
        """Wait for the load event and the scripts run on load (``SETTLE``); return its findings."""
        self.page.wait_for_load_state("load")
        return self.page.evaluate(SETTLE)

    def broken_images(self) -> list[str]:
        return self.page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")

    def close(self) -> None:
        self.page.close()


class Visit(Tab):
    """One page opened in a new tab, loaded and settled."""

    def __init__(self, browser, path: str, base: str | None = None) -> None:
        super().__init__(browser)
        self.open(path, base)


def _pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not p.relative_to(site).parts[0].startswith("_"))


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _executed(site: Path, notebook: Path) -> dict:
    """The executed notebook behind a page (the book's staged copy, outputs of the run the site shows)."""
    work = site.parent / f"{site.name}-work" / "source" / "notebooks" / notebook.name
    return json.loads(work.read_text(encoding="utf-8"))


TABS = 4  # pages loading at once


def _notebook_page(notebook: Path) -> str:
    return f"notebooks/{notebook.stem}.html"


class LoadedPages:
    """Pages loaded once and read by several tests: the page sweep leaves the landing page and the notebook pages
    as they loaded, each in its own tab, for the notebook page test (which reads and clicks a page) and then the
    previous / next walk (which follows one link from each), rather than each test loading them again (two of
    them draw 3D plotly figures, seconds of CPU time a load). A test that finds a page not loaded (it runs
    without the sweep) loads it itself."""

    def __init__(self, browser) -> None:
        self.browser = browser
        self.tabs: dict[str, Tab] = {}
        self.wanted = {"index.html", *(_notebook_page(nb) for nb in _notebooks())}

    def keep(self, path: str, tab: Tab) -> None:
        self.tabs[path] = tab

    def get(self, path: str) -> Tab:
        """The page, loaded and settled, left open for the next test."""
        if path not in self.tabs:
            self.tabs[path] = Visit(self.browser, path)
        return self._front(self.tabs[path])

    def take(self, path: str) -> Tab:
        """The page, loaded and settled, for the caller to close."""
        return self._front(self.tabs.pop(path, None) or Visit(self.browser, path))

    @staticmethod
    def _front(tab: Tab) -> Tab:
        # the tab a reader looks at: a tab in the background gets its animation frames throttled, and a click
        # waits for two of them (the element must be stable), 2 s where the front tab takes 0.2 s
        tab.page.bring_to_front()
        return tab


@pytest.fixture(scope="module")
def loaded(browser) -> LoadedPages:
    return LoadedPages(browser)


def test_every_page_loads_without_errors_and_every_image_loads(site, browser, loaded):
    pages = _pages(site)
    assert "index.html" in pages and "search.html" in pages and len(pages) > 20, pages
    problems = {}
    waiting, loading = list(reversed(pages)), collections.deque()

    def next_page(tab: Tab | None) -> None:  # the next page in this tab (a new tab if None), or close it
        if waiting:
            tab = tab or Tab(browser)
            path = waiting.pop()
            tab.open(path, settle=False)
            loading.append((tab, path))
        elif tab is not None:
            tab.close()

    for _ in range(TABS):  # each tab loads one page after another
        next_page(None)
    while loading:  # the page that started first is checked first, while the others load
        tab, path = loading.popleft()
        found = tab.settle()
        if tab.errors or found["broken"] or found["undrawn"]:
            problems[path] = tab.errors[:5] + [f"image not loaded: {src}" for src in found["broken"][:5]] + (
                [f"{found['undrawn']} plotly figures not drawn"] if found["undrawn"] else [])
        if path in loaded.wanted:  # left as it loaded, for the tests below
            loaded.keep(path, tab)
            next_page(None)
        else:
            next_page(tab)
    assert not problems, f"{len(problems)} pages with problems: {problems}"


@pytest.mark.parametrize("notebook", _notebooks(), ids=[p.stem[:2] for p in _notebooks()])
def test_notebook_page_shows_every_figure_and_folds_every_solution(site, loaded, notebook):
    nb = _executed(site, notebook)
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    plots = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    solutions = sum("solution" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
    assert pngs + plots > 0 and solutions >= 3, f"{notebook.name}: {pngs} PNGs, {plots} plotly, {solutions} solutions"

    visit = loaded.get(_notebook_page(notebook))  # as the page sweep loaded it (or loaded now, without the sweep)
    page = visit.page
    assert not visit.errors, visit.errors
    shown = page.evaluate("""Array.from(document.querySelectorAll('.cell_output img'))
        .filter(i => i.complete && i.naturalWidth > 0).length""")
    drawn = page.evaluate("""Array.from(document.querySelectorAll('.cell_output .plotly-graph-div'))
        .filter(d => d._fullData && d._fullData.length > 0 && d.querySelector('.main-svg')).length""")
    assert shown >= pngs, f"{notebook.name}: {shown} images shown of its {pngs} PNG figures"
    assert drawn == plots, f"{notebook.name}: {drawn} plotly figures drawn of its {plots}"
    if "$" in "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"):
        page.wait_for_selector("mjx-container", state="attached", timeout=10_000)

    # Exercises are visible; each solution is folded, and opens on a click.
    exercises = page.locator("div.cell.tag_exercise")
    assert exercises.count() >= 3 and exercises.first.locator("pre").first.is_visible()
    folds = page.locator("div.cell.tag_solution details")
    assert folds.count() == solutions, f"{notebook.name}: {folds.count()} folded cells for {solutions} solutions"
    for k in range(solutions):
        fold = folds.nth(k)
        assert fold.get_attribute("open") is None and not fold.locator("pre").first.is_visible(), (
            f"{notebook.name}: solution {k + 1} starts open")
    first = folds.first
    first.locator("summary").click()
    assert first.locator("pre").first.is_visible(), f"{notebook.name}: the solution does not open on a click"

    # Navigation: previous / next, and the landing page.
    assert page.locator("a.left-prev").count() == 1 and page.locator("a.right-next").count() == 1
    assert page.locator('a[href$="index.html"]').count() > 0
    assert not visit.errors, visit.errors  # nor while it was read and clicked


def test_previous_and_next_walk_the_notebooks_in_order(site, loaded):
    """From the landing page, "next" leads through the notebooks in order, and "previous" goes back: on each
    page (loaded, as a reader reaches it) a click on its link, until the browser goes to the page it leads to."""

    def follow(path: str, link: str) -> str:
        tab = loaded.take(path)
        tab.page.locator(link).first.click()
        tab.page.wait_for_url(lambda url: not url.endswith(f"/{path}"), wait_until="commit")
        there = tab.page.url.rsplit("/", 1)[-1]
        tab.close()
        return there

    chain = ["index.html", *(_notebook_page(nb) for nb in _notebooks())]
    walked = [follow(here, "a.right-next") for here in chain[:-1]]
    assert walked == [p.rsplit("/", 1)[-1] for p in chain[1:]], walked
    assert follow(chain[-1], "a.left-prev") == chain[-2].rsplit("/", 1)[-1]


def test_search_finds_entropy(site, browser):
    visit = Visit(browser, "search.html?q=entropy")
    page = visit.page
    hits = page.locator("ul.search li a")
    hits.first.wait_for(timeout=20_000)
    targets = {hits.nth(k).get_attribute("href").split("#")[0].split("?")[0] for k in range(hits.count())}
    assert hits.count() >= 5 and any(t.startswith("notebooks/01_") for t in targets), sorted(targets)
    assert "docs/glossary.html" in targets, sorted(targets)
    assert not visit.errors, visit.errors
    visit.close()


def test_the_check_can_fail(site, browser, tmp_path):
    """A page whose image is missing and whose script throws is reported: the checks above can fail. A tab that
    goes on to the next page reports that page alone: the bad page's problems stay with it, in either order."""
    (tmp_path / "bad.html").write_text(
        '<html><body><img src="missing.png"><script>undefined_function()</script></body></html>')
    (tmp_path / "good.html").write_text(
        '<html><head><link rel="icon" href="good.svg"></head><body><img src="good.svg"><p>fine</p></body></html>')
    (tmp_path / "good.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    with book_build.serve(tmp_path) as url:
        visit = Visit(browser, "bad.html", url)
        assert visit.broken_images() and any("page error" in e for e in visit.errors), visit.errors
        assert any("HTTP 404" in e for e in visit.errors), visit.errors
        visit.close()
        tab = Tab(browser)
        for path in ("good.html", "bad.html", "good.html"):
            tab.open(path, url, settle=False)
            found = tab.settle()
            bad = path == "bad.html"
            assert bool(found["broken"]) == bad and any("page error" in e for e in tab.errors) == bad, (
                path, found, tab.errors)
            assert any("HTTP 404" in e for e in tab.errors) == bad, (path, tab.errors)
        tab.close()
