"""Shared helpers for the benchmark scripts: machine description and load, measured peaks, and the
simulated inputs that several scripts share."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time

import numpy as np
import torch


def machine() -> str:
    """One line naming the machine, the thread count and the torch build."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {dev}"


def uptime() -> str:
    """The ``uptime`` line (the load: the machine may be busy), or the load average without it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load %.2f %.2f %.2f" % os.getloadavg()


def best_of(fn, repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn`` (s), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak_gflops(n: int = 2048, device: str = "cpu") -> float:
    """Measured float32 matrix-multiply rate (GFLOP/s) on ``device``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = best_of(lambda: a @ b, 5)
    return 2 * n**3 / t / 1e9


def copy_bandwidth_gbs(mib: int = 512) -> float:
    """Measured memory copy bandwidth (GB/s, read + write counted) with numpy."""
    src = np.ones(mib * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t = best_of(lambda: np.copyto(dst, src), 5)
    return 2 * src.nbytes / t / 1e9


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def complex_noise(rng: np.random.Generator, shape, sd: float) -> np.ndarray:
    """Complex white Gaussian noise of SD ``sd`` (``sd / √2`` in each of the real and imaginary parts)."""
    return sd * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def tissue_voxels(voxels: int, seed: int):
    """The setup of the white-noise accuracy benchmarks (accuracy_matching.py, accuracy_uncertainty.py):
    ``voxels`` thigh-like voxels off the clinical grid (:func:`mrfrecon.demo.tissue_sample`), their
    noiseless fingerprints under the MRF-WF sequence and its clinical dictionary.

    Returns ``(rng, dictionary, truth, clean, scale, masks)``: the generator (seeded with ``seed``;
    the noise continues its draws), the dictionary, the true parameters, the fingerprints, the mean
    fingerprint magnitude (the noise levels' unit) and the voxels each map is scored on (T1H2O
    where FF < 0.65, the paper's mask; T1fat where FF ≥ 0.5; FF, B1 and Δf everywhere)."""
    from mrfrecon import Dictionary, Sequence, simulate
    from mrfrecon.demo import tissue_sample

    rng = np.random.default_rng(seed)
    seq = Sequence.mrf_wf()
    d = Dictionary.build(seq)
    truth = tissue_sample(voxels, rng)
    clean = simulate(seq, **truth)
    every = np.ones(voxels, bool)
    masks = {"t1h2o": truth["ff"] < 0.65, "ff": every, "b1": every, "df": every, "t1fat": truth["ff"] >= 0.5}
    return rng, d, truth, clean, np.abs(clean).mean(), masks


def thigh_coefficients(seq, matrix: int, slices: int):
    """A paper-like thigh scan for the raw-data benchmarks (bench_import.py, bench_import_coils.py),
    simulated as :func:`mrfrecon.cohort.acquire` does before the k-space: the phantom (seed 1), the
    temporal basis (99.99 % of the energy of about 8000 foreground voxels' per-spoke signals) and
    every foreground voxel's coefficients in it.

    Returns ``(foreground, basis, coeffs, images, level)``: ``coeffs`` complex64 (voxels, K), the
    coefficient images complex64 ``(slices, K, y, x)`` (0 outside the foreground) and the mean frame
    magnitude of the subset (the signal level a frame SNR refers to)."""
    from mrfrecon.acquisition import lowrank_series
    from mrfrecon.phantoms import make_phantom
    from mrfrecon.physics import simulate, simulate_projected

    ph = make_phantom("thigh", seed=1, matrix=matrix, slices=slices)
    fg = ph.foreground
    keys = ("t1h2o", "t1fat", "b1", "df", "ff", "pd")
    p = {k: ph.maps[k][fg].astype(np.float64) for k in keys}
    x_sub = simulate(seq, *(p[k][:: max(1, fg.sum() // 8000)] for k in keys), per_spoke=True)
    basis, _ = lowrank_series(x_sub, energy=0.9999)
    level = float(np.abs(seq.frame_mean(x_sub)).mean())
    del x_sub
    coeffs = simulate_projected(seq, basis.conj(), *(p[k] for k in keys)).astype(np.complex64)  # (voxels, K)
    full = np.zeros((fg.size, basis.shape[1]), np.complex64)
    full[np.flatnonzero(fg)] = coeffs
    img = np.ascontiguousarray(full.reshape(slices, matrix, matrix, -1).transpose(0, 3, 1, 2))
    return fg, basis, coeffs, img, level
