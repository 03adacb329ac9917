"""Check that the live explorer's browser test catches the defects it was written against.

Each mutant brings one defect of the live explorer into the source (an item figure that is not drawn
again when a control moves, which a reloaded page would show too; a scatter whose clicks never reach
Python; a fixed 1400 px item figure that overflows the output area), runs ``tests/test_lab_explorer.py``
and restores the file. A mutant the test lets pass is reported and the
exit status is 1.

    python tools/check_browser_test.py            # every mutant (about a minute each)
    python tools/check_browser_test.py --list

It edits ``mhe/viz/`` in place (and puts it back, even on Ctrl-C), so it refuses to run when those files
have uncommitted changes. It needs what the browser test needs: Chromium and Playwright.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPLORER = Path("mhe/viz/explorer.py")
WIDGET = Path("mhe/viz/explorer_widget.py")
FIGURES = Path("mhe/viz/explorer_figures.py")

# name -> (file, the current code, the defect)
MUTANTS: dict[str, tuple[Path, str, str]] = {
    "an item figure not drawn again": (
        WIDGET, "        _copy_into(self.figure, new)\n        self._view.outputs = (_mimebundle(self.figure),)\n",
        "        _copy_into(self.figure, new)\n"),
    "scatter clicks that never reach Python": (
        WIDGET, 'gd.on("plotly_click", (event) => {', 'gd.on("plotly_nothing", (event) => {'),
    "a fixed 1400 px item figure": (
        FIGURES, 'barmode="overlay", autosize=True, height=ITEM_HEIGHT,',
        'barmode="overlay", autosize=False, width=1400, height=ITEM_HEIGHT,'),
}


def run_test() -> tuple[int, list[str]]:
    """Run the browser test; its exit status and the names of the tests that failed."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-m", "browser", "-q", "-rf",
                             "tests/test_lab_explorer.py"], cwd=ROOT, capture_output=True, text=True)
    failed = [line.split("::")[-1].split(" ")[0] for line in result.stdout.splitlines() if line.startswith("FAILED")]
    return result.returncode, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="name the mutants and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(MUTANTS))
        return 0
    dirty = subprocess.run(["git", "status", "--porcelain", "--", str(EXPLORER), str(WIDGET), str(FIGURES)], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        sys.exit(f"check_browser_test: {EXPLORER}, {WIDGET} or {FIGURES} has uncommitted changes; commit them first")
    missed = []
    for name, (path, current, defect) in MUTANTS.items():
        file = ROOT / path
        text = file.read_text()
        if text.count(current) != 1:
            sys.exit(f"check_browser_test: the code of mutant {name!r} is no longer in {path}; update MUTANTS")
        file.write_text(text.replace(current, defect))
        try:
            code, failed = run_test()
        finally:
            file.write_text(text)
        caught = code != 0 and bool(failed)
        print(f"{'caught' if caught else 'MISSED'}: {name}" + (f" (failed: {', '.join(failed)})" if failed else ""),
              flush=True)
        if not caught:
            missed.append(name)
    code, failed = run_test()
    print(f"unmutated code: {'passes' if code == 0 else 'FAILS: ' + ', '.join(failed)}")
    return 1 if missed or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
