"""How far two training seeds of the *same* network lie apart, paired over the test subjects: the
proposed CNN (11 × 11) of the study's comparison, seeds 0, 1, 2, from ``per_scan.csv``. The
receptive-field sweep trains one seed per field, so its paired tests compare networks, not
fields; a field difference is attributable to the field only where it exceeds this.

Run: ``.venv/bin/python docs/study/seed_noise.py docs/study/per_scan.csv > docs/study/seed_noise.md``
"""

import collections
import csv
import itertools
import sys

import numpy as np
from scipy.stats import wilcoxon


def main(path: str) -> None:
    d: dict[tuple[str, str, str], dict[str, float]] = collections.defaultdict(dict)
    for r in csv.DictReader(open(path, newline="")):
        if r["method"] == "proposed":
            d[(r["against"], r["map"], r["seed"])][r["scan"]] = float(r["nrmse"])
    print("| against | map | median NRMSE per seed (0 / 1 / 2) | paired Wilcoxon between seeds, two-sided p (uncorrected) |")
    print("|---|---|---|---|")
    for ag in ("reference", "ground-truth"):
        for m in ("t1h2o", "ff", "b1"):
            seeds = sorted(k[2] for k in d if k[0] == ag and k[1] == m)
            if not seeds:
                continue
            scans = sorted(d[(ag, m, seeds[0])])
            v = {s: np.array([d[(ag, m, s)][x] for x in scans]) for s in seeds}
            meds = " / ".join(f"{np.median(v[s]):.4f}" for s in seeds)
            ps = ", ".join(f"{a} vs {b}: {wilcoxon(v[a], v[b]).pvalue:.2g}" for a, b in itertools.combinations(seeds, 2))
            print(f"| {ag} | {m} | {meds} | {ps} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/study/per_scan.csv")
