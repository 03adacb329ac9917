"""The live explorer of notebook 06 in a real JupyterLab, in headless Chromium, used as a user would.

A Jupyter server on 127.0.0.1 opens notebook 06 in smoke mode; the test runs all cells from the Run menu,
moves every control of the explorer, clicks a point of the accuracy-vs-diversity scatter, saves, reloads
the page at a smaller window and checks, at every step:

- the figure updated to what the controls say (its title: item, objective, temperature, hypotheses drawn)
  and the metrics line says the same, and its 3D panel drawn by WebGL (its pixels show the hypotheses);
- neither the page nor the kernel reported an error (widget callbacks' tracebacks are what JupyterLab's
  log console collects), and the log console's counter stays at zero;
- every panel of the figure fits the output area (no horizontal scroll) at 1440 × 900 and 1280 × 800,
  and the figures follow the output area's width when the sidebar closes and opens;
- a click rings the chosen point and brings the item's figure into view;
- after a reload the figure shows the state the controls show.

``make test`` runs it beside the other tests, on one of its two workers: it needs no idle machine (it passes
beside a load of seven busy processes on two cores), as its waits poll for what they wait for or leave a wide
margin; anywidget's fixed 2 s start-up timer may fire meanwhile, and its one message is not counted (see
``ANYWIDGET_TIMER``). Skipped only where no Chromium or
Playwright is installed (``.ci/run`` installs Debian's ``chromium``
and then requires this test to run: ``MHE_BROWSER_TESTS=required``).
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("jupyterlab_session", ROOT / "tools" / "jupyterlab_session.py")
lab_tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lab_tools)

REQUIRED = os.environ.get("MHE_BROWSER_TESTS") == "required"
_missing = ("no Chromium on this machine (Debian: apt-get install chromium)" if lab_tools.find_browser() is None
            else "Playwright is not installed (pip install -e '.[test]')"
            if importlib.util.find_spec("playwright") is None else None)
if _missing and REQUIRED:
    raise RuntimeError(f"MHE_BROWSER_TESTS=required but {_missing}")
# one xdist worker runs these tests together: one JupyterLab server, one browser and one run of the notebook
pytestmark = [pytest.mark.skipif(_missing is not None, reason=_missing or ""), pytest.mark.browser,
              pytest.mark.xdist_group("lab")]

WIDGET = ".widget-vbox"
LABELS = {"MHEntropy": "mhentropy", "NLL (ProHMR-style)": "nll", "deterministic": "deterministic"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    env = {"MHE_FIGURES_DIR": str(work / "figures"), "OMP_NUM_THREADS": "1", "MHE_SMOKE": "1"}
    with lab_tools.LabSession(ROOT / "notebooks" / "06_diversity_explorer.ipynb", work, {"SMOKE": True},
                              viewport=(1440, 900), env=env, browser_args=lab_tools.NO_WEBGL_ANTIALIASING) as session:
        session.run_all(timeout=600)
        session.scroll_to(f"{WIDGET} .js-plotly-plot")
        yield session


# -- reading the page ---------------------------------------------------------------------------------

_STATE = """() => {
  const box = document.querySelector('.widget-vbox');
  const plots = box.querySelectorAll('.js-plotly-plot');
  const slider = (name) => [...box.querySelectorAll('.widget-slider')]
      .find(s => s.querySelector('.widget-label').textContent.trim() === name)
      .querySelector('.widget-readout').textContent;
  const select = box.querySelector('.widget-dropdown select');
  return {objective: select.options[select.selectedIndex].textContent, item: slider('item'),
          temperature: slider('temperature'), drawn: slider('hypotheses drawn'),
          title: plots[0].layout.title.text, metrics: box.querySelector('.widget-html-content').innerHTML,
          scatterTitle: plots.length > 1 ? plots[1].layout.title.text : null};
}"""


def state(lab) -> dict:
    return lab.page.evaluate(_STATE)


def consistent(s: dict) -> list[str]:
    """What in the page disagrees with the controls (empty when the figure and the line show their state)."""
    problems = []
    label = s["objective"].replace("\xa0", " ")
    head = s["title"].split("<br>")[0]
    wanted = [f"item {int(s['item'])} · {label} · "]
    if LABELS.get(label) != "deterministic":
        wanted.append(f"T = {float(s['temperature']):g} · {int(s['drawn'])} of ")
    problems += [f"the title {head!r} does not say {w!r}" for w in wanted if w not in head]
    if not s["metrics"].startswith(f"<b>{head}</b><br>{s['title'].split('<br>')[1]}"):
        problems.append(f"the metrics line {s['metrics'][:120]!r} is not the title {s['title'][:120]!r}")
    return problems


def settle(lab, expect: str, timeout: float = 30) -> dict:
    """Wait until the figure's title contains ``expect``; return the page's state."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = state(lab)
        if expect in s["title"]:
            lab.page.wait_for_timeout(300)
            return state(lab)
        lab.page.wait_for_timeout(200)
    raise AssertionError(f"the figure never showed {expect!r}; its title: {state(lab)['title']!r}")


def set_slider(lab, name: str, value: str) -> None:
    """Type a value into a slider's readout, as a user can in ipywidgets 8."""
    readout = lab.page.locator(".widget-slider", has_text=name).first.locator(".widget-readout")
    readout.click()
    lab.page.keyboard.press("Control+A")
    lab.page.keyboard.type(value)
    lab.page.keyboard.press("Enter")


# anywidget rejects a model's start-up promise after a fixed 2 s timer even when the model then starts (its
# JavaScript is busy drawing the explorer's plotly figures meanwhile). The page helper demonstrably runs in this
# test (a click reaches Python, rings the point and scrolls the item's figure into view), so that one message is
# not counted; any other page error is.
ANYWIDGET_TIMER = "[anywidget] Failed to initialize model."


def no_errors(lab) -> list[str]:
    page = [e for e in lab.console_errors if e.strip().removeprefix("uncaught: ") != ANYWIDGET_TIMER]
    return ([f"kernel: {e}" for e in lab.kernel_errors()] + [f"page: {e}" for e in page]
            + ([f"the log console counts {lab.log_console_count()}"] if lab.log_console_count() else []))


def overflow(lab) -> list[str]:
    """Panels of the item figure outside the output area or the window (empty when everything fits)."""
    return lab.page.evaluate("""() => {
      const gd = document.querySelector('.widget-vbox .js-plotly-plot');
      const out = gd.closest('.jp-OutputArea-output').getBoundingClientRect();
      const problems = [];
      const panels = [gd.querySelector('.subplot.x2y2'), gd.querySelector('.subplot.xy'),
                      gd.querySelector('#scene, [id^=scene]')];
      for (const el of panels) {
        if (!el) { problems.push('a panel is missing'); continue; }
        const r = el.getBoundingClientRect();
        if (r.right > out.right + 1 || r.right > window.innerWidth || r.width < 50)
          problems.push(`a panel ends at ${r.right} px, the output area at ${out.right} px, ` +
                        `the window at ${window.innerWidth} px`);
      }
      const area = gd.closest('.jp-OutputArea-output');
      if (area.scrollWidth > area.clientWidth + 1)
        problems.push(`the output scrolls: ${area.scrollWidth} > ${area.clientWidth} px`);
      return problems;
    }""")


def scene_drawn(lab) -> list[str]:
    """What is missing from the 3D panel of the item figure as the page shows it: a live WebGL canvas, and in a
    screenshot of the panel the colours of the hypotheses (drawn by WebGL; empty when the scene is drawn)."""
    box = lab.page.evaluate("""() => {
      const scene = document.querySelector('.widget-vbox .js-plotly-plot [id^=scene]');
      const canvas = scene && scene.querySelector('canvas');
      if (!canvas) return null;
      const gl = canvas.getContext('webgl') || canvas.getContext('webgl2');
      const r = canvas.getBoundingClientRect();
      return {live: !!gl && !gl.isContextLost(), x: r.left, y: r.top, width: r.width, height: r.height};
    }""")
    if box is None:
        return ["the 3D panel has no canvas"]
    if not box.pop("live"):
        return ["the 3D panel's canvas has no live WebGL context"]
    rgb = np.asarray(Image.open(io.BytesIO(lab.page.screenshot(clip=box))).convert("RGB")).astype(int)
    coloured = float(((rgb.max(-1) - rgb.min(-1)) > 60).mean())  # saturated: not white, grey or black
    return [] if coloured > 0.002 else [f"the 3D panel shows no hypotheses ({100 * coloured:.2f} % coloured)"]


# -- the test -----------------------------------------------------------------------------------------


def test_every_control_updates_the_figure_without_errors(lab):
    first = state(lab)
    assert not consistent(first), consistent(first)
    assert not scene_drawn(lab), scene_drawn(lab)
    assert not no_errors(lab), no_errors(lab)
    assert not overflow(lab), overflow(lab)

    lab.page.locator(f"{WIDGET} .widget-dropdown select").select_option(label="NLL (ProHMR-style)")
    s = settle(lab, "NLL (ProHMR-style)")
    assert not consistent(s), consistent(s)
    steps = [("item", "3", "item 3 ·"), ("temperature", "1.3", "T = 1.3 ·"), ("hypotheses drawn", "1", "· 1 of ")]
    for name, value, expect in steps:
        set_slider(lab, name, value)
        s = settle(lab, expect)
        assert not consistent(s), (name, consistent(s))
        assert not no_errors(lab), (name, no_errors(lab))
    assert "RD n/a" not in s["title"]  # the numbers are those of all S hypotheses, whatever is drawn
    lab.page.locator(WIDGET).get_by_role("button", name="▶").click()
    s = settle(lab, "item 4 ·")
    assert not consistent(s), consistent(s)
    lab.page.locator(WIDGET).get_by_role("button", name="◀").click()
    s = settle(lab, "item 3 ·")
    assert not consistent(s) and not no_errors(lab), (consistent(s), no_errors(lab))
    assert not overflow(lab), overflow(lab)
    assert not scene_drawn(lab), scene_drawn(lab)


def widths(lab) -> list[tuple[float, float]]:
    """(figure width, output-area width) of the item figure and of the scatter, px."""
    return lab.page.evaluate("""() => [...document.querySelectorAll('.widget-vbox .js-plotly-plot')].map(gd => {
      const main = gd.querySelector('.main-svg');
      return [main.getBoundingClientRect().width,
              gd.closest('.jp-OutputArea-output').getBoundingClientRect().width]; })""")


def fills(lab, timeout: float = 10) -> list[str]:
    """Figures narrower than their output area (a figure must follow its width), after at most ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        short = [f"a figure {w:.0f} px wide in an output area of {o:.0f} px" for w, o in widths(lab) if w < o - 60]
        if not short or time.monotonic() > end:
            return short
        lab.page.wait_for_timeout(250)


def test_the_figures_follow_the_width_of_the_output_area(lab):
    assert not fills(lab), fills(lab)
    before = widths(lab)[0][1]
    for _ in range(2):  # close the left sidebar, then open it again: the output area widens, then narrows
        area = widths(lab)[0][1]
        lab.page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
        lab.page.keyboard.press("Control+b")
        end = time.monotonic() + 10  # until the output area has changed its width (and then as long as it moves)
        while abs(widths(lab)[0][1] - area) < 2 and time.monotonic() < end:
            lab.page.wait_for_timeout(100)
        assert abs(widths(lab)[0][1] - area) >= 2, f"the output area kept its width ({area:.0f} px)"
        while (now := widths(lab)[0][1]) != area and time.monotonic() < end:
            area = now
            lab.page.wait_for_timeout(150)
        assert not fills(lab), fills(lab)
        assert not overflow(lab), overflow(lab)
    assert abs(widths(lab)[0][1] - before) < 2
    assert not no_errors(lab), no_errors(lab)


def test_a_click_on_the_scatter_rings_the_point_and_shows_its_figure(lab):
    page = lab.page
    target = page.evaluate("""() => {
      const gd = document.querySelectorAll('.widget-vbox .js-plotly-plot')[1];
      const fl = gd._fullLayout, trace = gd._fullData[0];
      for (let k = 0; k < trace.x.length; k++) {
        const x = trace.x[k], y = trace.y[k];
        if (x === null || y === null || !isFinite(x) || !isFinite(y)) continue;
        if (trace.customdata[k][0] === 0) continue;  // a point that is not where the figure already is
        const box = gd.getBoundingClientRect();
        return {k, item: trace.customdata[k][0], x, y,
                px: box.left + fl._size.l + fl.xaxis.l2p(x), py: box.top + fl._size.t + fl.yaxis.l2p(y)};
      }
      return null;
    }""")
    assert target is not None, "the scatter has no MHEntropy point to click"
    page.evaluate("() => document.querySelectorAll('.widget-vbox .js-plotly-plot')[1].scrollIntoView()")
    page.wait_for_timeout(500)
    target.update(page.evaluate("""(t) => {
      const gd = document.querySelectorAll('.widget-vbox .js-plotly-plot')[1], fl = gd._fullLayout;
      const box = gd.getBoundingClientRect();
      return {px: box.left + fl._size.l + fl.xaxis.l2p(t.x), py: box.top + fl._size.t + fl.yaxis.l2p(t.y)};
    }""", target))
    page.mouse.move(target["px"], target["py"])
    page.wait_for_timeout(300)
    page.mouse.click(target["px"], target["py"])
    s = settle(lab, f"item {int(target['item'])} · MHEntropy")
    assert not consistent(s), consistent(s)
    ring = page.evaluate("""() => { const gd = document.querySelectorAll('.widget-vbox .js-plotly-plot')[1];
      const t = gd._fullData[gd._fullData.length - 1]; return {name: t.name, x: [...t.x], y: [...t.y]}; }""")
    assert ring["name"] == "chosen item" and ring["x"] == pytest.approx([target["x"]]) \
        and ring["y"] == pytest.approx([target["y"]]), ring
    top, end = None, time.monotonic() + 15  # a smooth scroll, asked for after the redraw
    while time.monotonic() < end:
        top = page.evaluate("() => document.querySelector('.widget-vbox .js-plotly-plot').getBoundingClientRect().top")
        if 0 <= top < page.viewport_size["height"] / 2:
            break
        page.wait_for_timeout(250)
    assert 0 <= top < page.viewport_size["height"] / 2, \
        f"the item's figure is not in view after the click (top {top} px)"
    assert not no_errors(lab), no_errors(lab)


def test_a_reload_shows_the_state_of_the_controls(lab):
    before = state(lab)
    lab.save()
    lab.page.set_viewport_size({"width": 1280, "height": 800})
    lab.reload()
    lab.scroll_to(f"{WIDGET} .js-plotly-plot")
    lab.page.wait_for_timeout(1500)
    after = state(lab)
    assert not consistent(after), consistent(after)
    assert {k: after[k] for k in ("objective", "item", "temperature", "drawn")} == \
        {k: before[k] for k in ("objective", "item", "temperature", "drawn")}
    assert after["title"] == before["title"]
    assert not overflow(lab), overflow(lab)  # 1280 × 800: every panel still fits
    assert not fills(lab), fills(lab)
    assert not no_errors(lab), no_errors(lab)
