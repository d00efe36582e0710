"""Paired Wilcoxon tests between two networks of the study (per-subject NRMSE averaged over the
seeds), from ``per_scan.csv`` of a compare run. The compare report tests every method against the
row's best only; this prints the network-against-network comparisons RESULTS.md quotes.

Run: ``.venv/bin/python docs/study/pairwise_networks.py docs/study/per_scan.csv``
"""

import collections
import csv
import sys

import numpy as np
from scipy.stats import wilcoxon

# The pairs RESULTS.md quotes, in its order; a pair is printed when the file holds both networks.
PAIRS = (("cohen2018", "proposed"), ("proposed", "balsiger2018"), ("cohen2018", "balsiger2018"))


def main(path: str) -> None:
    nrmse = collections.defaultdict(list)
    for r in csv.DictReader(open(path, newline="")):
        nrmse[(r["method"], r["against"], r["map"], r["scan"])].append(float(r["nrmse"]))
    against = sorted({k[1] for k in nrmse})
    methods = {k[0] for k in nrmse}
    pairs = [(a, b) for a, b in PAIRS if a in methods and b in methods]
    print("| against | map | A | B | subjects with A < B | two-sided p (uncorrected) |")
    print("|---|---|---|---|---|---|")
    for ag in against:
        for m in ("t1h2o", "ff", "b1"):
            for a, b in pairs:
                scans = sorted({k[3] for k in nrmse if k[0] == a and k[1] == ag and k[2] == m})
                va = np.array([np.mean(nrmse[(a, ag, m, s)]) for s in scans])
                vb = np.array([np.mean(nrmse[(b, ag, m, s)]) for s in scans])
                print(f"| {ag} | {m} | {a} | {b} | {int((va < vb).sum())} / {len(scans)} | {wilcoxon(va, vb).pvalue:.2g} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/study/per_scan.csv")
