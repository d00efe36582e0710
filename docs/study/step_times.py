"""Seconds per optimizer step of a comparison's runs, from each run's ``log.csv`` (one row per
evaluation period; ``seconds`` is the period's training time, validations excluded).

Run: ``.venv/bin/python docs/study/step_times.py docs/study/compare24000/runs``
"""

import csv
import sys
from pathlib import Path

import numpy as np


def main(root: str) -> None:
    print("| run | periods | training s | s per step (median) | s per step (range) |")
    print("|---|---|---|---|---|")
    for log in sorted(Path(root).glob("*/*/seed-*/log.csv")):
        rows = list(csv.DictReader(open(log, newline="")))
        steps = np.diff([0] + [int(r["step"]) for r in rows])
        per_step = np.array([float(r["seconds"]) for r in rows]) / steps
        total = sum(float(r["seconds"]) for r in rows)
        print(f"| {log.parent.parent.name} {log.parent.name} | {len(rows)} | {total:.0f} | {np.median(per_step):.3f} | "
              f"{per_step.min():.3f}–{per_step.max():.3f} |")


if __name__ == "__main__":
    main(sys.argv[1])
