"""Import of a paper-size ISMRMRD scan with many receive coils, with and without SVD coil
compression: 5 slices × 350², 1400 golden-angle spokes of 700 samples, 24 coils (a thigh array
at 3 T delivers 16-30), frame SNR 10 (the presets'), a noise-adjustment measurement in the file
(so prewhitening runs), KWIC window 55.

The k-space is the project's own simulation of a thigh phantom (temporal basis → per-coil NUFFTs
with synthetic birdcage sensitivities, as ``mrfrecon.cohort.acquire``), written with
:func:`mrfrecon.io.ismrmrd.write_ismrmrd`. For every configuration — all coils, ``--virtual``
fixed virtual coils, the automatic choice, and the automatic choice with the readout oversampling
removed — it prints the seconds per stage of :func:`mrfrecon.io.ismrmrd.read_ismrmrd`, the ratio
to the all-coil import, and the frame error that the choice costs: the fingerprint error over the
foreground with a free complex factor per voxel (what matching sees), against the all-coil series
and against the noiseless, fully sampled frames (the truth; its value for all coils is the
undersampling and noise error that compression adds to).

    OMP_NUM_THREADS=1 python benchmarks/bench_import_coils.py [--matrix 350] [--slices 5] [--coils 24]
        [--virtual 4] [--recon kwic|kwic-tv]

At the defaults this needs about 4 GiB of memory and a long time on 2 cores (the all-coil import
is the slow part); ``--matrix 32 --slices 1 --coils 8`` checks that it runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mrfrecon import Sequence
from mrfrecon.acquisition import coil_sensitivities, image_noise_std, kwic_weights, radial_trajectory, simulate_kspace
from mrfrecon.io.geometry import affine_from_axcodes
from mrfrecon.io.ismrmrd import read_ismrmrd, write_ismrmrd

from common import machine, peak_rss_mib, thigh_coefficients


def fingerprint_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − c·b‖ / ‖a‖ with the least-squares complex factor c per voxel (rows: voxels)."""
    c = (b.conj() * a).sum(-1, keepdims=True) / (np.abs(b) ** 2).sum(-1, keepdims=True)
    return float(np.linalg.norm(a - c * b) / np.linalg.norm(a))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--matrix", type=int, default=350)
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--coils", type=int, default=24)
    ap.add_argument("--virtual", type=int, default=4, help="fixed number of virtual coils to time")
    ap.add_argument("--snr", type=float, default=10.0, help="frame SNR, as mrfrecon.cohort.acquire defines it")
    ap.add_argument("--recon", choices=("kwic", "kwic-tv"), default="kwic")
    a = ap.parse_args()
    seq = Sequence.mrf_wf()
    t0 = time.perf_counter()
    fg, basis, coeffs, img, level = thigh_coefficients(seq, a.matrix, a.slices)
    # the truth: noiseless frames, the mean of each frame's spokes
    k = basis.shape[1]
    truth = coeffs @ basis.T.reshape(k, seq.frames, seq.spokes_per_frame).mean(-1)
    traj = radial_trajectory(seq, matrix=a.matrix)
    sigma = level / a.snr / float(image_noise_std(1.0, kwic_weights(traj, seq, 55)).mean())
    rng = np.random.default_rng(1)
    ksp = simulate_kspace(img, basis, traj, coils=coil_sensitivities(a.coils, a.matrix, seed=1), noise_std=sigma,
                          rng=rng)
    del img
    noise = (sigma * (rng.normal(size=(a.coils, 16, 256)) + 1j * rng.normal(size=(a.coils, 16, 256))) / np.sqrt(2))
    t_sim = time.perf_counter() - t0
    aff = affine_from_axcodes((350 / a.matrix, 350 / a.matrix, 8.0), (a.matrix, a.matrix, a.slices))
    print(f"machine: {machine()}")
    print(f"scan: {a.slices} × {a.matrix}², {seq.spokes} spokes × {2 * a.matrix} samples, {a.coils} coils, frame SNR "
          f"{a.snr:g}, recon {a.recon} (simulated in {t_sim:.0f} s)")
    configs = [("all coils", None, "keep"), (f"{a.virtual} virtual", a.virtual, "keep"), ("auto", "auto", "keep"),
               ("auto, oversampling removed", "auto", "remove")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.mrd"
        write_ismrmrd(path, ksp, seq, aff, matrix=a.matrix, noise=noise.astype(np.complex64), dwell_us=2.5,
                      noise_dwell_us=2.5)
        del ksp
        print(f"file: {path.stat().st_size / 2**20:.0f} MiB")
        for name, cc, readout in configs:
            t0 = time.perf_counter()
            imp = read_ismrmrd(path, seq, coil_compression=cc, readout=readout, recon=a.recon)
            total = time.perf_counter() - t0
            fp = np.moveaxis(imp.series, 1, -1)[fg]
            results.append((name, imp.notes.get("virtual_coils", a.coils), total, imp.seconds, fp))
    ref_time, ref_fp = results[0][2], results[0][4]
    print("| configuration | coils | import s | read / prewhiten+compress+crop / sensitivities / KWIC / CS-TV s | "
          "ratio to all coils | fingerprint error vs all coils | vs truth |")
    print("|---|---|---|---|---|---|---|")
    for name, kv, total, sec, fp in results:
        stages = " / ".join(f"{sec[s]:.1f}" for s in ("read", "prepare", "sensitivities", "kwic", "cs-tv"))
        print(f"| {name} | {kv} | {total:.1f} | {stages} | {total / ref_time:.2f} | "
              f"{fingerprint_error(fp, ref_fp):.4f} | {fingerprint_error(fp, truth):.4f} |")
    print(f"peak memory: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
