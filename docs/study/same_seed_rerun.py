"""A run trained twice: the same network, seed and budget on two simulations of the same cohort.

Compares a comparison's ``per_scan.csv`` (columns method, seed, against, map, scan, nrmse) with a
budget test's (model, steps, seed, ...) for one seed and budget, per (network, target, map): the mean
test NRMSE of each and the largest per-subject change. Then the inputs themselves: the baselines
(constant, matching and its filtered versions), which depend only on the cohort, per subject against
an earlier comparison's ``per_scan.csv``.

Run: ``.venv/bin/python docs/study/same_seed_rerun.py docs/study/compare24000/per_scan.csv
docs/study/budget24000/per_scan.csv 24000 docs/study/compare2/per_scan.csv``
"""

import collections
import csv
import sys

import numpy as np

NETWORKS = ("proposed", "cohen2018", "fang2018", "balsiger2018")


def main(new: str, old: str, steps: str, old_compare: str, seed: str = "0") -> None:
    a: dict = collections.defaultdict(dict)
    b: dict = collections.defaultdict(dict)
    for r in csv.DictReader(open(new, newline="")):
        if r["seed"] == seed and r["method"] in NETWORKS:
            a[(r["method"], r["against"], r["map"])][r["scan"]] = float(r["nrmse"])
    for r in csv.DictReader(open(old, newline="")):
        if r["steps"] == steps and r["seed"] == seed:
            b[(r["model"], r["against"], r["map"])][r["scan"]] = float(r["nrmse"])
    print(f"Seed {seed}, {steps} steps: the earlier run against the rerun (mean over the test subjects).\n")
    print("| network | against | map | earlier | rerun | change | largest per-subject change |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(k for k in a if k in b):
        scans = sorted(a[key])
        x = np.array([b[key][s] for s in scans])
        y = np.array([a[key][s] for s in scans])
        print(f"| {key[0]} | {key[1]} | {key[2]} | {x.mean():.4f} | {y.mean():.4f} | {y.mean() / x.mean() - 1:+.1%} | "
              f"{np.abs(y / x - 1).max():.1%} |")
    base = {}
    for r in csv.DictReader(open(old_compare, newline="")):
        if r["method"] not in NETWORKS:
            base[(r["method"], r["against"], r["map"], r["scan"])] = float(r["nrmse"])
    change = [abs(float(r["nrmse"]) / base[k] - 1) for r in csv.DictReader(open(new, newline=""))
              if (k := (r["method"], r["against"], r["map"], r["scan"])) in base]
    print(f"\nThe cohort: {len(change)} baseline values (method × target × map × subject) against {old_compare}; "
          f"largest change {max(change):.2%}.")


if __name__ == "__main__":
    main(*sys.argv[1:])
