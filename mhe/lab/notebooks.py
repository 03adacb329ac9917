"""Execute, strip and list the tutorial notebooks (``python -m mhe.lab.notebooks {reproduce,run,strip,list}``).

Every notebook in ``notebooks/`` has a cell tagged ``parameters`` holding at least ``SMOKE`` and
``SEED``. :func:`run_notebook` executes one through papermill with parameters injected;
``reproduce`` runs the whole sequence with ``SMOKE=False`` and writes ``figures/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mhe.utils import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
BUILD_DIR = REPO_ROOT / "build" / "notebooks"


def list_notebooks() -> list[Path]:
    """The tutorial sequence, in order (files named ``NN_*.ipynb``)."""
    return sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(
    path: str | os.PathLike,
    parameters: dict | None = None,
    out_dir: str | os.PathLike | None = None,
    timeout: int = 1800,
) -> Path:
    """Execute ``path`` with papermill, injecting ``parameters``; return the executed copy's path.

    The kernel runs in the notebooks folder (so relative paths behave as in JupyterLab) and with
    this process's environment (so ``MHE_FIGURES_DIR`` etc. carry over), less ``MPLBACKEND``: the kernel
    keeps Jupyter's inline backend, so every figure is stored in the executed notebook as it is shown.
    A full run writes the executed copy as each cell starts and ends (it can be followed while it runs); a
    smoke run (``SMOKE`` true) writes it once, at the end or at the cell that failed, since rewriting the
    whole notebook, figures included, twice a cell costs more than a smoke run's cells do.
    """
    import papermill as pm

    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else BUILD_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    backend = os.environ.pop("MPLBACKEND", None)
    try:
        _execute(pm, path, out, parameters, timeout, save_every_cell=not (parameters or {}).get("SMOKE"))
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    return out


def _execute(pm: Any, path: Path, out: Path, parameters: dict | None, timeout: int, *,
             save_every_cell: bool = True) -> None:
    pm.execute_notebook(
        str(path),
        str(out),
        parameters=parameters or {},
        request_save_on_cell_execute=save_every_cell,
        cwd=str(path.parent),
        kernel_name="python3",
        language="python",
        progress_bar=False,
        execution_timeout=timeout,
        log_output=False,
    )


def strip_notebook(path: str | os.PathLike) -> bool:
    """Remove outputs and execution counts in place; return True if the file changed."""
    path = Path(path)
    text = path.read_text()
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("papermill", None)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def reproduce(seed: int = 0, only: list[str] | None = None) -> None:
    """Run every notebook with ``SMOKE=False`` (the embedded defaults) and report the time of each."""
    notebooks = list_notebooks()
    if only:
        notebooks = [p for p in notebooks if any(key in p.name for key in only)]
    if not notebooks:
        raise SystemExit(f"no notebooks found in {NOTEBOOK_DIR}")
    total = time.perf_counter()
    for path in notebooks:
        start = time.perf_counter()
        print(f"[mhe] running {path.name} ...", flush=True)
        run_notebook(path, {"SMOKE": False, "SEED": seed})
        print(f"[mhe]   done in {time.perf_counter() - start:.1f} s", flush=True)
    # The README's generated blocks quote the CSVs the notebooks just wrote: regenerate them too.
    from mhe.lab.report import main as report_main

    report_main(["--readme", str(REPO_ROOT / "README.md"), "--figures", str(REPO_ROOT / "figures")])
    print(
        f"[mhe] all {len(notebooks)} notebooks in {time.perf_counter() - total:.1f} s; "
        f"figures in {REPO_ROOT / 'figures'}, executed notebooks in {BUILD_DIR}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m mhe.lab.notebooks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", allow_abbrev=False, help="run the notebook sequence with SMOKE=False")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--only", nargs="*", help="substrings of notebook names to run")
    run = sub.add_parser("run", allow_abbrev=False, help="run one notebook")
    run.add_argument("notebook")
    run.add_argument("--smoke", action="store_true")
    run.add_argument("--seed", type=int, default=0)
    strip = sub.add_parser("strip", allow_abbrev=False, help="strip outputs in place")
    strip.add_argument("notebooks", nargs="+")
    sub.add_parser("list", allow_abbrev=False, help="list the notebook sequence")
    args = parser.parse_args(argv)
    if args.command == "reproduce":
        reproduce(args.seed, args.only)
    elif args.command == "run":
        print(run_notebook(args.notebook, {"SMOKE": args.smoke, "SEED": args.seed}))
    elif args.command == "strip":
        for nb in args.notebooks:
            if strip_notebook(nb):
                print(f"stripped {nb}")
    else:
        for nb in list_notebooks():
            print(nb.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
