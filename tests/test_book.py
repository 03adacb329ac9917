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
    return book_build.build(smoke=True, jobs=2)


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with book_build.serve(site) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=lab_tools.find_browser(), args=["--no-sandbox"])
        try:
            yield chromium, url
        finally:
            chromium.close()


class Visit:
    """One page opened at 1280 × 900, with what went wrong while it loaded."""

    def __init__(self, browser, path: str, base: str | None = None, settle: bool = True) -> None:
        chromium, served = browser
        base = base or served
        self.page = chromium.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        self.page.on("requestfailed", lambda req: self.errors.append(f"request failed: {req.url}"))
        self.page.on("response", lambda res: res.status >= 400 and self.errors.append(f"HTTP {res.status}: {res.url}"))
        # settle=False: the page starts loading and the caller waits (see visit_all)
        self.page.goto(f"{base}/{path}", wait_until="load" if settle else "commit")
        if settle:
            self.page.wait_for_timeout(300)  # scripts run on load (plotly draws, MathJax typesets)

    def broken_images(self) -> list[str]:
        return self.page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")

    def close(self) -> None:
        self.page.close()


def _pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not p.relative_to(site).parts[0].startswith("_"))


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _executed(site: Path, notebook: Path) -> dict:
    """The executed notebook behind a page (the book's staged copy, outputs of the run the site shows)."""
    work = site.parent / f"{site.name}-work" / "source" / "notebooks" / notebook.name
    return json.loads(work.read_text(encoding="utf-8"))


def test_every_page_loads_without_errors_and_every_image_loads(site, browser):
    pages = _pages(site)
    assert "index.html" in pages and "search.html" in pages and len(pages) > 20, pages
    problems = {}
    for start in range(0, len(pages), 8):  # eight tabs load at once, each checked as a page opened alone
        batch = pages[start:start + 8]
        visits = [Visit(browser, path, settle=False) for path in batch]
        for visit in visits:
            visit.page.wait_for_load_state("load")
        visits[-1].page.wait_for_timeout(300)  # scripts run on load (plotly draws, MathJax typesets)
        for path, visit in zip(batch, visits, strict=True):
            broken = visit.broken_images()
            if visit.errors or broken:
                problems[path] = visit.errors[:5] + [f"image not loaded: {src}" for src in broken[:5]]
            visit.close()
    assert not problems, f"{len(problems)} pages with problems: {problems}"


@pytest.mark.parametrize("notebook", _notebooks(), ids=[p.stem[:2] for p in _notebooks()])
def test_notebook_page_shows_every_figure_and_folds_every_solution(site, browser, notebook):
    nb = _executed(site, notebook)
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    plots = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    solutions = sum("solution" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
    assert pngs + plots > 0 and solutions >= 3, f"{notebook.name}: {pngs} PNGs, {plots} plotly, {solutions} solutions"

    visit = Visit(browser, f"notebooks/{notebook.stem}.html")
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
    visit.close()


def test_previous_and_next_walk_the_notebooks_in_order(site, browser):
    visit = Visit(browser, "index.html")
    page = visit.page
    walked = []
    for _ in _notebooks():
        page.locator("a.right-next").first.click()
        page.wait_for_load_state("load")
        walked.append(page.url.rsplit("/", 1)[-1])
    assert walked == [f"{p.stem}.html" for p in _notebooks()], walked
    page.locator("a.left-prev").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"{_notebooks()[-2].stem}.html")
    visit.close()


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
    """A page whose image is missing and whose script throws is reported: the checks above can fail."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="missing.png"><script>undefined_function()</script></body></html>')
    with book_build.serve(tmp_path) as url:
        visit = Visit(browser, "bad.html", url)
        assert visit.broken_images() and any("page error" in e for e in visit.errors), visit.errors
        assert any("HTTP 404" in e for e in visit.errors), visit.errors
        visit.close()
