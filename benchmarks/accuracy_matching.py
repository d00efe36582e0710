"""Bias and spread of fast two-component matching against ground truth at several noise levels.

Voxels: thigh-like tissue (``mrfrecon.demo.tissue_sample``), off-grid parameters, complex Gaussian
noise with SD = level × mean |fingerprint| on every frame. T1H2O is scored where FF < 0.65 (the
paper's mask); B1, Δf and FF everywhere; T1fat where FF ≥ 0.5.

Run: ``.venv/bin/python benchmarks/accuracy_matching.py [--voxels 4000]``
"""

from __future__ import annotations

import argparse

import numpy as np

from mrfrecon import match

from common import complex_noise, tissue_voxels  # benchmarks/, the script's folder, is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, d, truth, clean, scale, masks = tissue_voxels(args.voxels, args.seed)
    units = {"t1h2o": "ms", "ff": "", "b1": "", "df": "Hz", "t1fat": "ms"}
    print(f"{args.voxels} voxels, seed {args.seed}; noise SD relative to the mean |fingerprint| per frame\n")
    print("| noise | " + " | ".join(f"{k} {u} bias ± SD" if u else f"{k} bias ± SD" for k, u in units.items()) + " |")
    print("|---" * (len(units) + 1) + "|")
    for level in (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0):
        noise = complex_noise(rng, clean.shape, level * scale)
        m = match((clean + noise).astype(np.complex64), d)
        cells = []
        for k in units:
            e = (m[k] - truth[k])[masks[k]]
            cells.append(f"{e.mean():+.3g} ± {e.std():.3g}")
        print(f"| {100 * level:g} % | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
