"""The early-frames test of ``mrfrecon experiment occlusion`` (:func:`early_frames_test`) from a
finished run's ``nrmse_per_scan.csv`` — for the study's occlusion run, which was made with the
commit before the report printed this test.

Run: ``.venv/bin/python docs/study/occlusion_early_frames.py study-occlusion/nrmse_per_scan.csv``
"""

import csv
import sys

import numpy as np

from mrfrecon.experiments.occlusion import OcclusionResult, early_frames_test


def main(path: str, early: int = 10) -> None:
    rows = list(csv.DictReader(open(path, newline="")))
    scans = sorted({r["scan"] for r in rows})
    maps = tuple(dict.fromkeys(r["map"] for r in rows))
    n_t = 1 + max(int(r["frame"]) for r in rows)
    base = np.zeros((len(scans), len(maps)))
    occ = np.zeros((len(scans), n_t, len(maps)))
    for r in rows:
        i, j = scans.index(r["scan"]), maps.index(r["map"])
        base[i, j] = float(r["nrmse_original"])
        occ[i, int(r["frame"]), j] = float(r["nrmse_occluded"])
    res = OcclusionResult(maps, scans, base, occ, np.abs(occ.mean(0) - base.mean(0)[None]))
    out = early_frames_test(res, early)
    print("| " + " | ".join(out[0]) + " |")
    print("|" + "---|" * len(out[0]))
    for r in out:
        print("| " + " | ".join(str(v) for v in r.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
