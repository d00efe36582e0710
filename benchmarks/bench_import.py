"""Import speed of one paper-size ISMRMRD scan: 5 slices × 350², 1400 golden-angle spokes of 700
samples, ``--coils`` receive coils (4, as the round-trip test), KWIC window 55.

The k-space is the project's own simulation of a thigh phantom (temporal basis → per-coil
NUFFTs, as ``mrfrecon.cohort.acquire``), written with :func:`mrfrecon.io.ismrmrd.write_ismrmrd`.
Prints the seconds of ``read_scan`` (table read, Walsh sensitivities, KWIC frames) and, as the
baseline in the same run, of the direct reconstruction of the same k-space in memory
(``kwic_reconstruct`` with the same sensitivities): the ratio is what reading the file costs.

    OMP_NUM_THREADS=1 python benchmarks/bench_import.py [--matrix 350] [--slices 5] [--coils 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from mrfrecon import Sequence
from mrfrecon.acquisition import coil_sensitivities, kwic_reconstruct, kwic_weights, radial_trajectory, simulate_kspace
from mrfrecon.acquisition.nufft import Nufft2D
from mrfrecon.acquisition.walsh import walsh_sensitivities
from mrfrecon.io.geometry import affine_from_axcodes
from mrfrecon.io.ismrmrd import read_ismrmrd, write_ismrmrd
from mrfrecon.io.readers import read_scan

from common import thigh_coefficients  # benchmarks/, the script's folder, is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--matrix", type=int, default=350)
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--coils", type=int, default=4)
    a = ap.parse_args()
    seq = Sequence.mrf_wf()
    t0 = time.perf_counter()
    _, basis, _, img, _ = thigh_coefficients(seq, a.matrix, a.slices)
    traj = radial_trajectory(seq, matrix=a.matrix)
    ksp = simulate_kspace(img, basis, traj, coils=coil_sensitivities(a.coils, a.matrix, seed=1), noise_std=1e-4,
                          rng=np.random.default_rng(1))
    t_sim = time.perf_counter() - t0
    aff = affine_from_axcodes((350 / a.matrix, 350 / a.matrix, 8.0), (a.matrix, a.matrix, a.slices))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.mrd"
        t0 = time.perf_counter()
        write_ismrmrd(path, ksp, seq, aff, matrix=a.matrix, traj=traj)
        t_write = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        scan = read_scan(path)
        t_import = time.perf_counter() - t0
        stages = read_ismrmrd(path, seq).seconds  # the stages, timed once more
    t0 = time.perf_counter()
    full = kwic_weights(traj, seq.spokes, seq.spokes)
    op = Nufft2D(a.matrix)
    op.set_points(traj.reshape(-1, 2))
    avg = op.adjoint((ksp * full.weights[0][None, None]).reshape(a.slices, a.coils, -1))
    sens = walsh_sensitivities(avg)
    t_sens = time.perf_counter() - t0
    t0 = time.perf_counter()
    direct = kwic_reconstruct(ksp, traj, seq, coils=sens, matrix=a.matrix)
    t_kwic = time.perf_counter() - t0
    same = np.abs(scan.series - direct).max() / np.abs(direct).max()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"scan: {a.slices} × {a.matrix}², {seq.spokes} spokes × {2 * a.matrix} samples, {a.coils} coils; "
          f"file {size_mb:.0f} MiB (simulated in {t_sim:.1f} s, written in {t_write:.1f} s)")
    print(f"import (read + Walsh + KWIC): {t_import:.1f} s; a second read_ismrmrd: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    print(f"baseline, same run: Walsh {t_sens:.1f} s + KWIC {t_kwic:.1f} s = {t_sens + t_kwic:.1f} s in memory")
    print(f"ratio import / in-memory reconstruction: {t_import / (t_sens + t_kwic):.2f}; max relative difference {same:.1e}")


if __name__ == "__main__":
    main()
