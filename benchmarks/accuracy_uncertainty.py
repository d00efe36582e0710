"""Matching's Cramér–Rao SD against its actual error on white-noise fingerprints (known σ).

Voxels: thigh-like tissue off the clinical grid (``mrfrecon.demo.tissue_sample``), complex Gaussian
noise with SD = level × the mean fingerprint magnitude per frame, the SD computed with the true σ
(and, at 0 % noise, only the grid's rounding). Per map: RMS error, RMS SD and the coverage of
±1.96 SD (T1H2O where FF < 0.65, T1fat where FF ≥ 0.5, the others everywhere).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/accuracy_uncertainty.py [--voxels 2000]``
"""

from __future__ import annotations

import argparse

import numpy as np

from mrfrecon import match
from mrfrecon.uncertainty.calibration import coverage
from mrfrecon.uncertainty.fisher import crb_sd

from common import complex_noise, tissue_voxels  # benchmarks/, the script's folder, is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, d, truth, clean, scale, masks = tissue_voxels(args.voxels, args.seed)
    print(f"{args.voxels} voxels, seed {args.seed}; cells: RMS error / RMS SD (coverage of ±1.96 SD)\n")
    print("| noise | " + " | ".join(masks) + " |\n|---" + "|---" * len(masks) + "|")
    for level in (0.0, 0.05, 0.2, 0.5):
        sigma = level * scale
        noise = complex_noise(rng, clean.shape, sigma)
        m = match((clean + noise).astype(np.complex64), d)
        sd = crb_sd(d, m, max(sigma, 1e-12))
        cells = []
        for k, mk in masks.items():
            e, s = np.abs(m[k] - truth[k])[mk], sd[f"sd_{k}"][mk]
            cells.append(f"{np.sqrt(np.mean(e**2)):.3g} / {np.sqrt(np.mean(s**2)):.3g} ({coverage(e, s):.2f})")
        print(f"| {100 * level:g} % | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
