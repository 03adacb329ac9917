"""Posterior diagnostics and selection by extra evidence for the shipped hand models: figures/04_hand_diagnostics.csv.

Kept for its name: the same as ``python tools/diagnostics.py --body hand`` (see that tool for what the
CSV holds: all hands and the occluded ones, i.e. at least one whole finger hidden).

    python tools/hand_diagnostics.py [--items N] [--models ...]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("diagnostics_tool", Path(__file__).with_name("diagnostics.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.main(["--body", "hand", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
