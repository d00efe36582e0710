"""Seconds per epoch of the study's runs: the median wall clock between epoch lines of each
``train.log`` (training + validation) and the median training seconds of ``log.csv``.

Run: ``python docs/study/epoch_times.py docs/study/runs``
"""

import csv
import datetime
import re
import statistics
import sys
from pathlib import Path

EPOCH = re.compile(r" epoch \d+/\d+:")


def main(root: str) -> None:
    print("| run | epochs | wall s per epoch (median) | training s per epoch (median) |")
    print("|---|---|---|---|")
    for run in sorted(Path(root).glob("*/seed-*")):
        stamps = [datetime.datetime.strptime(line[:8], "%H:%M:%S")
                  for line in (run / "train.log").read_text().splitlines() if EPOCH.search(line)]
        gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
        seconds = [float(r["seconds"]) for r in csv.DictReader(open(run / "log.csv", newline=""))]
        print(f"| {run.parent.name} {run.name} | {len(seconds)} | {statistics.median(gaps):.0f} | {statistics.median(seconds):.1f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/study/runs")
