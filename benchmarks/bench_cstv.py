"""KWIC + CS-TV frame reconstruction of one 350² slice: time per stage as ratios to KWIC, the
Toeplitz normal operator against the NUFFT route, frame error against ground truth, phantom time.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cstv.py [--matrix 350] [--coils 1]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import machine
from mrfrecon import Sequence
from mrfrecon.acquisition import (coil_sensitivities, image_noise_std, kwic_reconstruct, kwic_weights,
                                  lowrank_series, radial_trajectory, simulate_kspace)
from mrfrecon.acquisition.cstv import CsTvOptions, ToeplitzNormal, _data_weights, cstv_reconstruct, recon_basis, subspace_adjoint
from mrfrecon.acquisition.nufft import Nufft2D
from mrfrecon.phantoms import make_phantom
from mrfrecon.physics import simulate, simulate_projected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--matrix", type=int, default=350)
    ap.add_argument("--region", default="thigh")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--coils", type=int, default=1)
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--weight", type=float, default=CsTvOptions().weight)
    a = ap.parse_args()
    print(machine(), "| load:", os.getloadavg())
    seq = Sequence.mrf_wf()
    n = a.matrix
    t0 = time.perf_counter()
    ph = make_phantom(a.region, seed=a.seed, matrix=n, slices=5)
    t_ph = (time.perf_counter() - t0) / 5
    m = {k: v[2:3] for k, v in ph.maps.items()}
    fg = m["pd"] > 0
    p = [m[k][fg].astype(np.float64) for k in ("t1h2o", "t1fat", "b1", "df", "ff", "pd")]
    sub = np.arange(0, fg.sum(), max(1, fg.sum() // 8000))
    xs = simulate(seq, *[q[sub] for q in p], per_spoke=True)
    basis, _ = lowrank_series(xs, energy=0.9999)
    coeffs = np.zeros((*fg.shape, basis.shape[1]), np.complex64)
    coeffs[fg] = simulate_projected(seq, basis.conj(), *p)
    truth = np.zeros((175, n, n), np.complex64)
    truth[:, fg[0]] = simulate(seq, *p).T
    traj = radial_trajectory(seq, matrix=n)
    wts = kwic_weights(traj, seq, 55)
    sens = coil_sensitivities(a.coils, n, seed=a.seed) if a.coils > 1 else None
    noise_std = float(np.abs(seq.frame_mean(xs)).mean()) / a.snr / float(image_noise_std(1.0, wts).mean())
    ksp = simulate_kspace(np.ascontiguousarray(coeffs.transpose(0, 3, 1, 2)), basis, traj, coils=sens,
                          noise_std=noise_std, rng=np.random.default_rng(a.seed))

    def nrmse(x: np.ndarray) -> float:
        d = (x - truth)[:, fg[0]]
        return float(np.linalg.norm(d) / np.linalg.norm(truth[:, fg[0]]))

    t0 = time.perf_counter()
    kw = kwic_reconstruct(ksp, traj, seq, coils=sens, weights=wts, nthreads=1)
    t_kwic = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = recon_basis(seq, CsTvOptions().rank)
    t_basis = time.perf_counter() - t0
    w = _data_weights(traj)
    t0 = time.perf_counter()
    normal = ToeplitzNormal(traj, w, b, (n, n), nthreads=1)
    t_kern = time.perf_counter() - t0
    # normal operator: Toeplitz against the NUFFT route (forward + weighted adjoint), one application
    x = np.random.default_rng(0).standard_normal((b.shape[1], n, n)).astype(np.complex64)
    op = Nufft2D(n, traj.reshape(-1, 2), nthreads=1)
    t0 = time.perf_counter()
    ref = subspace_adjoint(op, simulate_kspace(x[None], b, traj, coils=sens, nthreads=1)[0], b, w, sens)
    t_nufft = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = normal.apply(x, sens)
    t_toep = time.perf_counter() - t0
    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    info: dict = {}
    t0 = time.perf_counter()
    cs = cstv_reconstruct(ksp, traj, seq, options=CsTvOptions(weight=a.weight), basis=b, coils=sens, start=kw,
                          normal=normal, nthreads=1, info=info)
    t_cs = time.perf_counter() - t0
    it = info["tv_slices"][0]["iterations"]
    print(f"{a.region} slice {n}², {a.coils} coil(s), SNR {a.snr:g}, TV weight {a.weight:g}, {it} iterations")
    print("| stage | seconds | ratio to KWIC |\n|---|---|---|")
    for name, t in (("phantom, per slice", t_ph), ("KWIC, 175 frames", t_kwic),
                    ("reconstruction basis (once per sequence)", t_basis),
                    ("Toeplitz kernels (once per scan geometry)", t_kern),
                    (f"CS-TV, {it} iterations (incl. AᴴWy, norm estimate)", t_cs)):
        print(f"| {name} | {t:.2f} | {t / t_kwic:.2f} |")
    print(f"normal operator, one application: NUFFT route {t_nufft:.2f} s, Toeplitz {t_toep:.2f} s "
          f"({t_nufft / t_toep:.1f}x faster; relative difference {rel:.1e})")
    print(f"frame NRMSE vs ground truth (foreground): KWIC {nrmse(kw[0]):.4f}, KWIC + CS-TV {nrmse(cs[0]):.4f}")
    per_slice = t_cs + t_kern / 5
    print(f"projected paper cohort, CS-TV only (95 scans × 5 slices, 1 process): {95 * 5 * per_slice / 3600:.2f} h")


if __name__ == "__main__":
    main()
