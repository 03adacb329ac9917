"""Screenshots of the book (``make book``) at 1280 px: its landing page and notebook 01's page.

    python tools/book_screenshots.py [--book build/book] [--out figures]

Serves the built site on 127.0.0.1 and opens it in Debian's ``chromium`` through Playwright (as the book's
browser test does) at 1280 × 900: the top of the landing page, and notebook 01 from the heading above its first
figure. Writes ``book_landing.png`` and ``book_01.png``.
"""

# caption book_landing: The book's landing page at 1280 × 900 (`make book`), the sidebar listing every page.
# caption book_01: Notebook 01's page in the book at 1280 × 900, at its first figure.

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"book_landing.png": "index.html", "book_01.png": "notebooks/01_toy_nll_vs_entropy.html"}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/book_screenshots.py", allow_abbrev=False, description=__doc__)
    parser.add_argument("--book", type=Path, default=ROOT / "build" / "book", help="the built site (make book)")
    parser.add_argument("--out", type=Path, default=ROOT / "figures")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    if not (args.book / "index.html").is_file():
        parser.error(f"{args.book} holds no built book (index.html): run `make book` first")
    browser = _load("jupyterlab_session", ROOT / "tools" / "jupyterlab_session.py").find_browser()
    if browser is None:
        parser.error("no Chromium on the PATH (Debian: apt-get install chromium)")
    serve = _load("book_build", ROOT / "book" / "build.py").serve

    from playwright.sync_api import sync_playwright

    with serve(args.book) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chromium.new_page(viewport={"width": args.width, "height": args.height})
        for name, path in PAGES.items():
            page.goto(f"{url}/{path}", wait_until="load")
            if name != "book_landing.png":  # a notebook page: from the heading above its first figure
                page.evaluate("""() => {
                  const img = document.querySelector('.cell_output img');
                  let el = img.closest('section'), heading = el && el.querySelector('h2, h3');
                  const top = (heading || img).getBoundingClientRect().top;
                  window.scrollBy(0, top - 64); }""")  # just below the theme's sticky bar
            page.wait_for_timeout(1500)  # MathJax typesets after load
            page.screenshot(path=str(args.out / name))
            print(args.out / name)
        chromium.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
