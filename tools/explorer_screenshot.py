"""The README's picture of the live explorer: notebook 06 run in JupyterLab (headless Chromium), at 1440 × 900.

Opens notebook 06 on the shipped models (``--smoke`` for tiny ones), runs all cells from the Run menu,
scrolls to the explorer, picks a hand with a hidden finger, and saves the window to
``figures/06_explorer_jupyterlab.png``. Fails if the kernel or the page reported an error on the way.

    python tools/explorer_screenshot.py [--smoke] [--out figures/06_explorer_jupyterlab.png]
"""

# The caption must stay on one line (mhe.lab.gallery reads it to the end of the line): no line limit here.
# ruff: noqa: E501
# caption 06_explorer_jupyterlab: The live explorer of notebook 06 in JupyterLab at 1440 × 900 (default layout, file browser open): controls, the metrics line and the three panels, all in view.

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from jupyterlab_session import LabSession  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models (a quick check, not the README's picture)")
    parser.add_argument("--out", default=str(ROOT / "figures" / "06_explorer_jupyterlab.png"))
    parser.add_argument("--size", default="1440x900", help="the browser window, WIDTHxHEIGHT px")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="mhe_lab_") as tmp:
        env = {"MHE_FIGURES_DIR": str(Path(tmp) / "figures"), "OMP_NUM_THREADS": "1"}
        with LabSession(ROOT / "notebooks" / "06_diversity_explorer.ipynb", Path(tmp) / "lab",
                        {"SMOKE": bool(args.smoke)}, viewport=(width, height), env=env) as lab:
            seconds = lab.run_all(timeout=1200)
            print(f"notebook 06 ran in {seconds:.0f} s")
            anchor = lab.scroll_to(".widget-vbox .widget-html")
            anchor.scroll_into_view_if_needed()
            # the controls at the top of the window: scroll so that the widget starts there
            lab.page.evaluate("""() => {
              const box = document.querySelector('.widget-vbox');
              const outer = document.querySelector('.jp-WindowedPanel-outer');
              outer.scrollTop += box.getBoundingClientRect().top - outer.getBoundingClientRect().top - 8; }""")
            lab.page.wait_for_timeout(2000)
            problems = lab.kernel_errors() + lab.console_errors
            if problems:
                print("errors on the way:", *problems, sep="\n  ")
                return 1
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            lab.page.screenshot(path=str(out))
            print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
