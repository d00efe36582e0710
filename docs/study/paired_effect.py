"""Issue 20, "cheaper steps": what one change of the training recipe does to a network's test error.

Pairs, per test subject, the NRMSE of the same network trained two ways (each subject's NRMSE
averaged over the training seeds), from the ``per_scan.csv`` of two ``experiment compare`` folders
that differ only in that change and share their test subjects; the statistics are those of the
budget-doubling test (:func:`mrfrecon.experiments.budget.doubling_cells`: mean change B ÷ A − 1,
subjects better with B, paired two-sided Wilcoxon with Bonferroni over maps × targets, SD over
seeds). Used for:

- flips and quarter turns (`--augment`): ``.venv/bin/python docs/study/paired_effect.py
  study/compare2/per_scan.csv study/augment/per_scan.csv balsiger2018 "without,with augmentation"``;
- the number of training subjects at a fixed budget: ``.venv/bin/python docs/study/paired_effect.py
  study/half20/per_scan.csv study/compare2/per_scan.csv cohen2018 "20 training subjects,40"``.
"""

import collections
import csv
import sys

import numpy as np

from mrfrecon.experiments.budget import doubling_cells


def per_subject(path: str, model: str) -> tuple[dict, dict]:
    """(against, map) → per-subject NRMSE averaged over seeds (subjects sorted), and → SD over seeds."""
    vals: dict = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in csv.DictReader(open(path, newline="")):
        if r["method"] == model and r["trained_on"] == "reference":
            vals[(r["against"], r["map"])][r["scan"]][r["seed"]] = float(r["nrmse"])
    mean, sd = {}, {}
    for k, by_scan in vals.items():
        scans = sorted(by_scan)
        seeds = sorted(by_scan[scans[0]])
        m = np.array([[by_scan[s][e] for e in seeds] for s in scans])  # (subjects, seeds)
        mean[k], sd[k] = m.mean(axis=1), float(np.std(m.mean(axis=0)))
    return mean, sd


def scans(path: str, model: str) -> set[str]:
    """The test subjects a ``per_scan.csv`` scores ``model`` on."""
    return {r["scan"] for r in csv.DictReader(open(path, newline="")) if r["method"] == model}


def main(path_a: str, path_b: str, model: str, labels: str = "A,B") -> None:
    la, lb = labels.split(",")
    a, sd_a = per_subject(path_a, model)
    b, sd_b = per_subject(path_b, model)
    if scans(path_a, model) != scans(path_b, model):
        sys.exit(f"{path_a}, {path_b}: the two folders do not share their test subjects")
    print(f"| against | map | {la} | {lb} | change | subjects better | p (Bonferroni × 6) | seed SD {la} / {lb} |")
    print("|---|---|---|---|---|---|---|---|")
    for c in doubling_cells(model, a, b):
        k = (c.against, c.map)
        print(f"| {c.against} | {c.map} | {c.short:.4f} | {c.long:.4f} | {c.change:+.1%} | {c.better} / {c.n} | "
              f"{c.p_corrected:.2g} | {sd_a[k]:.4f} / {sd_b[k]:.4f} |")


if __name__ == "__main__":
    main(*sys.argv[1:5])
