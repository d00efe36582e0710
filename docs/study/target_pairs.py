"""Does training on the simulation's ground truth instead of the matching reference change a
network's test error? Paired Wilcoxon tests per network and map, from the ``per_scan.csv`` of two
compare runs on the same cohort (``--target reference`` and ``--target ground-truth``), per-subject
NRMSE averaged over the seeds. Also prints, for the ground-truth-trained networks, the same
network-against-network pairs as ``pairwise_networks.py``.

The two runs must share their test subjects (the same cohort): the script stops with one line if
the scans differ, or if the baselines that do not depend on training (dictionary matching against
the truth) differ between the two files — the check that the cohort was simulated the same.

Run: ``.venv/bin/python docs/study/target_pairs.py docs/study/per_scan.csv
docs/study/ground_truth/per_scan.csv``
"""

import collections
import csv
import sys

import numpy as np
from scipy.stats import wilcoxon

NETWORKS = ("proposed", "cohen2018", "fang2018", "balsiger2018")
PAIRS = (("cohen2018", "proposed"), ("proposed", "balsiger2018"))
MAPS = ("t1h2o", "ff", "b1")


def load(path: str) -> dict[tuple[str, str, str, str, str], list[float]]:
    """(trained_on, method, against, map, scan) → the NRMSE of each seed."""
    out = collections.defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out[(r["trained_on"], r["method"], r["against"], r["map"], r["scan"])].append(float(r["nrmse"]))
    return out


def per_subject(d, trained_on: str, method: str, against: str, mp: str, scans: list[str]) -> np.ndarray:
    return np.array([np.mean(d[(trained_on, method, against, mp, s)]) for s in scans])


def main(ref_path: str, gt_path: str) -> None:
    ref, gt = load(ref_path), load(gt_path)
    scans = sorted({k[4] for k in ref if k[0] == "reference" and k[1] == "proposed"})
    scans_gt = sorted({k[4] for k in gt if k[0] == "ground-truth" and k[1] == "proposed"})
    if scans != scans_gt:
        sys.exit(f"{gt_path}: test scans {scans_gt} differ from {ref_path}'s {scans}")
    for mp in MAPS:
        a = per_subject(ref, "-", "matching", "ground-truth", mp, scans)
        b = per_subject(gt, "-", "matching", "ground-truth", mp, scans)
        if not np.allclose(a, b, rtol=0, atol=2e-4):  # the cohort re-simulated by later code: float rounding
            sys.exit(f"{gt_path}: matching's {mp} NRMSE against the truth differs from {ref_path}'s "
                     f"(max |Δ| {np.abs(a - b).max():.3g}): not the same cohort")
    n = len(scans)
    print(f"Trained on the ground truth (G) vs on the reference (R), {n} test subjects, NRMSE per subject "
          "averaged over seeds; two-sided Wilcoxon, uncorrected (Bonferroni over the 24 tests: × 24).\n")
    print("| network | against | map | R | G | subjects with G < R | p |")
    print("|---|---|---|---|---|---|---|")
    for net in NETWORKS:
        if not any(k[0] == "ground-truth" and k[1] == net for k in gt):
            print(f"| {net} | not in {gt_path} | | | | | |")
            continue
        for ag in ("ground-truth", "reference"):
            for mp in MAPS:
                r = per_subject(ref, "reference", net, ag, mp, scans)
                g = per_subject(gt, "ground-truth", net, ag, mp, scans)
                print(f"| {net} | {ag} | {mp} | {r.mean():.4g} | {g.mean():.4g} | {int((g < r).sum())} / {n} | "
                      f"{wilcoxon(g, r).pvalue:.2g} |")
    print("\nGround-truth-trained networks against each other (against the truth; × 6 for Bonferroni):\n")
    print("| map | A | B | A | B | subjects with A < B | p |")
    print("|---|---|---|---|---|---|---|")
    for mp in MAPS:
        for a, b in PAIRS:
            va = per_subject(gt, "ground-truth", a, "ground-truth", mp, scans)
            vb = per_subject(gt, "ground-truth", b, "ground-truth", mp, scans)
            print(f"| {mp} | {a} | {b} | {va.mean():.4g} | {vb.mean():.4g} | {int((va < vb).sum())} / {n} | "
                  f"{wilcoxon(va, vb).pvalue:.2g} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: target_pairs.py <per_scan.csv trained on the reference> <per_scan.csv trained on the truth>")
    main(sys.argv[1], sys.argv[2])
