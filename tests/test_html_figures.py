"""The committed HTML figures in a real browser: headless Chromium (Debian's ``chromium``) opens each one
offline, and the plot must draw — every trace of the figure rendered, a non-blank screenshot, no console
error. A page that fails to draw (demonstrated on a copy without plotly.js) fails the same check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = sorted((ROOT / "figures").glob("*.html"))
BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
               None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")

# Appended to a copy of the page: once plotly has drawn, the page's title reports what it drew.
_PROBE = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var gd = document.querySelector(".plotly-graph-div");
    var out = {found: !!gd};
    if (gd && gd._fullData) {
      out.traces = gd._fullData.length;
      out.cartesian = gd.querySelectorAll("g.trace").length;
      out.canvases = gd.querySelectorAll("canvas").length;
      out.svg = gd.querySelectorAll("svg.main-svg").length;
    }
    document.title = "PROBE" + JSON.stringify(out);
  }, 1500);
});
</script>"""
_THREE_D = ("scatter3d", "mesh3d", "surface", "cone", "isosurface", "volume", "streamtube")


def _figure_data(html: str) -> list[dict]:
    """The traces of a page written by plotly's ``write_html``: the list passed to ``Plotly.newPlot``."""
    call = html.rfind("Plotly.newPlot(")
    assert call >= 0, "the page does not call Plotly.newPlot"
    start = html.index("[", html.index(",", call))
    data, _ = json.JSONDecoder().raw_decode(html, start)
    return data


def _render(page: Path, tmp_path: Path) -> tuple[dict, np.ndarray, list[str]]:
    """Open ``page`` (with the probe) in headless Chromium: the probe's report, a screenshot and the console
    errors."""
    probed = tmp_path / page.name
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    shot = tmp_path / (page.stem + ".png")
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=8000", "--window-size=1400,900", f"file://{probed}"]
    # one browser run dumps the DOM and takes the screenshot, both once the virtual-time budget has run out
    dom = subprocess.run([*flags[:-1], "--dump-dom", f"--screenshot={shot}", flags[-1]], capture_output=True,
                         text=True, timeout=120)
    if not shot.exists():  # a Chromium that does one of the two per run: a second run for the screenshot
        subprocess.run([*flags[:-1], f"--screenshot={shot}", flags[-1]], capture_output=True, timeout=120)
    match = re.search(r"<title>PROBE(.*?)</title>", dom.stdout)
    probe = json.loads(match.group(1).replace("&quot;", '"')) if match else {"found": False}
    errors = [line for line in dom.stderr.splitlines()
              if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot) if shot.exists() else np.ones((2, 2, 3))
    return probe, pixels, errors


def _drew(page: Path, tmp_path: Path) -> list[str]:
    """What is wrong with how ``page`` drew (empty when it drew every trace, visibly, without errors)."""
    html = page.read_text(encoding="utf-8")
    problems = []
    probe, pixels, errors = _render(page, tmp_path)
    if errors:
        problems.append(f"console errors: {errors[:3]}")
    if not probe.get("found") or "traces" not in probe:
        return problems + ["plotly drew nothing (no graph div with data)"]
    try:
        data = _figure_data(html)
    except (AssertionError, ValueError) as err:
        return problems + [f"cannot read the figure's traces: {err}"]
    if probe["traces"] != len(data):
        problems.append(f"{probe['traces']} traces drawn, the figure has {len(data)}")
    flat = [t for t in data if t.get("type", "scatter") not in _THREE_D]
    if probe["cartesian"] < len([t for t in flat if t.get("type", "scatter") in ("scatter", "bar")]):
        problems.append(f"{probe['cartesian']} 2D trace layers drawn for {len(flat)} 2D traces")
    if any(t.get("type") in _THREE_D for t in data) and probe["canvases"] == 0:
        problems.append("a 3D scene without a WebGL canvas")
    rgb = pixels[..., :3]
    inked = float((rgb.min(-1) < 0.9).mean())  # share of pixels that are not (near) white
    if inked < 0.02:
        problems.append(f"the screenshot is blank ({100 * inked:.2f} % of pixels inked)")
    return problems


def test_there_are_html_figures():
    assert FIGURES, "figures/ holds no HTML figure"


@pytest.mark.parametrize("page", FIGURES, ids=[p.stem for p in FIGURES])
def test_committed_html_figure_draws_offline(page, tmp_path):
    problems = _drew(page, tmp_path)
    assert not problems, f"{page.name}: {'; '.join(problems)}"


def test_a_page_without_plotly_fails_the_check(tmp_path):
    """The check can fail: the same figure with its inline plotly.js removed draws nothing."""
    page = FIGURES[0]
    html = page.read_text(encoding="utf-8")
    broken = re.sub(r"<script[^>]*>/\*\*\s*\n\* plotly\.js.*?</script>", "<script></script>", html, count=1, flags=re.S)
    assert broken != html, "could not remove plotly.js from the page"
    bad = tmp_path / "broken" / page.name
    bad.parent.mkdir()
    bad.write_text(broken, encoding="utf-8")
    problems = _drew(bad, tmp_path)
    assert problems and any("drew nothing" in p or "console errors" in p for p in problems)
