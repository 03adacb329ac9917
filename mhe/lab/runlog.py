"""The logs of a training run: ``train_log.csv``, ``val_log.csv`` and ``log.jsonl`` in its folder.

:class:`RunLogger` appends one row per logged step (loss terms) or validation (metrics); when a run is
resumed from a checkpoint, rows logged after that checkpoint are dropped, so the logs read like one
uninterrupted run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class RunLogger:
    """Rows of training terms (``train_log.csv``) and validation metrics (``val_log.csv``), plus ``log.jsonl``.

    CSV headers grow when a row brings a new column (the file is then rewritten). ``resume_at(step)``
    drops rows logged after the checkpoint a run resumes from, so the logs read like one run.
    """

    FILES = {"train": "train_log.csv", "val": "val_log.csv"}

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
        self.columns: dict[str, list[str]] = {"train": [], "val": []}

    def start_fresh(self) -> None:
        """Forget earlier logs in ``out_dir``."""
        if self.enabled:
            for name in [*self.FILES.values(), "log.jsonl"]:
                (self.out_dir / name).unlink(missing_ok=True)

    def resume_at(self, step: int) -> None:
        """Reload the logs, keeping rows up to ``step``."""
        if not self.enabled:
            return
        path = self.out_dir / "log.jsonl"
        records = []
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec.get("step", 0) <= step:
                        records.append(rec)
        for kind in self.rows:
            self.rows[kind] = [{k: v for k, v in r.items() if k != "kind"} for r in records if r["kind"] == kind]
            self.columns[kind] = []
            for r in self.rows[kind]:
                self.columns[kind] += [k for k in r if k not in self.columns[kind]]
            self._rewrite(kind)
        with open(path, "w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")

    def log(self, kind: str, row: dict[str, Any]) -> None:
        """Append one row of kind ``"train"`` or ``"val"``."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"kind": kind, **row}) + "\n")
        self.rows[kind].append(row)
        new = [k for k in row if k not in self.columns[kind]]
        if new:
            self.columns[kind] += new
            self._rewrite(kind)
        else:
            with open(self.out_dir / self.FILES[kind], "a", newline="") as f:
                csv.DictWriter(f, self.columns[kind]).writerow(row)

    def _rewrite(self, kind: str) -> None:
        path = self.out_dir / self.FILES[kind]
        if not self.rows[kind]:
            path.unlink(missing_ok=True)
            return
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns[kind])
            writer.writeheader()
            writer.writerows(self.rows[kind])
