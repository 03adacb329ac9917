"""Sphinx configuration of the book (``make book``; ``book/build.py`` stages the source tree and runs Sphinx).

Sphinx with MyST-NB renders the executed notebooks (never executing them itself) and the Markdown pages;
the book theme gives the sidebar, previous / next links and search. Everything a page needs is copied
into the site: MathJax 3 from the ``sphinx-mathjax-offline`` package and plotly.js from the ``plotly``
package, so the book works offline, from the file system.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SMOKE = os.environ.get("MHE_BOOK_SMOKE", "0") == "1"

project = "mhe"
author = "the mhe authors"
copyright = "the mhe authors (MIT licence)"
html_title = "mhe: multi-hypothesis 3D pose with MHEntropy"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]

# -- MyST and notebooks ------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "html_image"]
myst_heading_anchors = 4  # GitHub's anchors (docs/glossary.md#pjd), which the notebooks and docs link to
nb_execution_mode = "off"  # book/build.py executes (cached by content); Sphinx only renders
nb_merge_streams = True
nb_code_prompt_show = "Show the solution ({type})"
nb_code_prompt_hide = "Hide the solution ({type})"
nb_render_markdown_format = "myst"
exclude_patterns = ["figures/**", "**/.ipynb_checkpoints"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

# -- API reference -------------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- HTML ------------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["book.css"]
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
    # the pages of wide results tables give the right-hand contents column to the tables
    "secondary_sidebar_items": {"**": ["page-toc"], "index": [], "docs/results": []},
}
if SMOKE:
    html_theme_options["announcement"] = (
        "A smoke build: the notebooks ran on tiny settings, so numbers and figures are placeholders. "
        "`make book` builds the real one.")
html_context = {"default_mode": "light"}  # the figures are drawn on white
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None

# MathJax 3, shipped by the sphinx-mathjax-offline package, copied into the site (no CDN).
mathjax_path = "mathjax/tex-chtml.js"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the book needs the package {name!r}: pip install -e '.[book]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _copy_assets(app, exc) -> None:
    """After a successful build: MathJax and plotly.js into the site's _static folder (once)."""
    if exc is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    mathjax = static / "mathjax"
    if not (mathjax / "tex-chtml.js").is_file():
        shutil.copytree(_package_dir("sphinx-mathjax-offline") / "static" / "mathjax", mathjax, dirs_exist_ok=True)
    plotly_js = static / "plotly.min.js"
    if not plotly_js.is_file():
        shutil.copyfile(_package_dir("plotly") / "package_data" / "plotly.min.js", plotly_js)


def _plotly_on_its_pages(app, pagename, templatename, context, doctree) -> None:
    """plotly.js (4 MB) only on the pages that draw a plotly figure, loaded before the figures' scripts run."""
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file("plotly.min.js", priority=100)


def _plain_bars(app, what, name, obj, options, lines) -> None:
    """Docstrings write |x| for an absolute value or a norm, which reStructuredText reads as a substitution."""
    for i, line in enumerate(lines):
        bare = line.strip()
        table = bare.startswith(("+-", "+=")) or (len(bare) > 1 and bare[0] == bare[-1] == "|")
        if "|" in line and not table:
            parts = re.split(r"(``.*?``|`[^`]*`)", line)  # literals keep their bars
            lines[i] = "".join(p if k % 2 else p.replace("|", "\\|") for k, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", _plain_bars)
    app.connect("html-page-context", _plotly_on_its_pages)
    app.connect("build-finished", _copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
