"""The budget probe of issue 20: does twice the study's budget change a network's test error by more
than the spread over seeds? Compares, per test subject and map, the NRMSE of a run trained with the
doubled budget (``mrfrecon evaluate`` folders, against the reference and the ground truth) with the
same seed's 3,000-step run of the comparison (``per_scan.csv`` of ``experiment compare``), and
prints the seed spread of the comparison's three runs beside it.

Run: ``.venv/bin/python docs/study/budget_probe.py docs/study/compare2/per_scan.csv proposed 0 EVAL_DIR``
where ``EVAL_DIR`` holds ``reference/per_scan.csv`` and ``ground-truth/per_scan.csv`` of the longer run.
"""

import collections
import csv
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon


def main(compare_csv: str, model: str, seed: str, eval_dir: str) -> None:
    base: dict[tuple[str, str, str], float] = {}
    per_seed: dict[tuple[str, str, str], list[float]] = collections.defaultdict(list)
    for r in csv.DictReader(open(compare_csv, newline="")):
        if r["method"] != model or r["trained_on"] != "reference":
            continue
        key = (r["against"], r["map"], r["scan"])
        per_seed[(r["against"], r["map"], r["seed"])].append(float(r["nrmse"]))
        if r["seed"] == seed:
            base[key] = float(r["nrmse"])
    print("| against | map | 3,000 steps (seed {s}) | doubled budget | change | subjects better | p (two-sided) | SD over the 3 seeds |"
          .format(s=seed))
    print("|---|---|---|---|---|---|---|---|")
    for against in ("reference", "ground-truth"):
        longer = {(r["map"], r["scan"]): float(r["nrmse"])
                  for r in csv.DictReader(open(Path(eval_dir) / against / "per_scan.csv", newline=""))}
        for m in ("t1h2o", "ff", "b1"):
            scans = sorted(s for (a, mm, s) in base if a == against and mm == m)
            a = np.array([base[(against, m, s)] for s in scans])
            b = np.array([longer[(m, s)] for s in scans])
            seeds = sorted({k[2] for k in per_seed if k[0] == against and k[1] == m})
            spread = np.std([np.mean(per_seed[(against, m, s_)]) for s_ in seeds])
            p = wilcoxon(a, b).pvalue
            print(f"| {against} | {m} | {a.mean():.4f} | {b.mean():.4f} | {b.mean() / a.mean() - 1:+.1%} | "
                  f"{int((b < a).sum())} / {len(a)} | {p:.2g} | {spread:.4f} |")


if __name__ == "__main__":
    main(*sys.argv[1:5])
