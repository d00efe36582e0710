"""Overhead of the write safety (Fletcher-32 checksums + fsync of file and folder) on one paper-size scan.

Simulates one thigh scan of 5 slices × 350² (175 frames; acquisition without reference matching,
the smaller, conservative denominator), then writes it with ``save_scan`` as shipped (checksums and
fsync) and with both switched off (plain ``h5py.File``, no fsync), complex64 and float16, best of
``--repeat``. Prints a Markdown table; the goal is an overhead ≤ 5 % of the simulation time.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_write_safety.py [--matrix 350] [--slices 5]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

import mrfrecon.atomic as atomic  # noqa: E402
from mrfrecon import Sequence  # noqa: E402
from mrfrecon.cohort import acquire  # noqa: E402
from mrfrecon.io import Scan, save_scan  # noqa: E402
from mrfrecon.phantoms import make_phantom  # noqa: E402


VARIANTS = {"plain": (False, False), "checksums": (True, False), "fsync": (False, True), "both": (True, True)}


def _write_once(scan: Scan, target: Path, storage: str, checksums: bool, fsync: bool) -> tuple[float, float]:
    real_file, real_fsync = atomic.ChecksummedFile, atomic.fsync_path
    if not checksums:
        atomic.ChecksummedFile = h5py.File
    if not fsync:
        atomic.fsync_path = lambda p: None
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        save_scan(target, scan, storage=storage)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        atomic.ChecksummedFile, atomic.fsync_path = real_file, real_fsync
        target.unlink()


def _writes(scan: Scan, folder: Path, storage: str, repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per variant; the variants interleaved so that load changes hit them alike.
    CPU time shows the checksum's cost (computation) without the other processes' share of the cores;
    wall time includes the fsync (waiting for the disk)."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in VARIANTS}
    for i in range(repeat):
        for k, (c, f) in VARIANTS.items():
            times[k].append(_write_once(scan, folder / f"{storage}-{k}-{i}.h5", storage, c, f))
    return {k: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v]))) for k, v in times.items()}


def _checksum_cpu(series: np.ndarray, repeat: int) -> tuple[float, float]:
    """Median CPU seconds of writing the series into an in-memory HDF5 file (no disk), without and
    with Fletcher-32: the checksum's own cost, free of the disk's and of most of the load's noise."""
    out = []
    for fletcher in (False, True):
        t = []
        for _ in range(repeat):
            c0 = time.process_time()
            with h5py.File(f"mem-{fletcher}.h5", "w", driver="core", backing_store=False) as f:
                f.create_dataset("series", data=series, chunks=(1, 25, *series.shape[2:]), fletcher32=fletcher)
            t.append(time.process_time() - c0)
        out.append(float(np.median(t)))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--matrix", type=int, default=350)
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load = os.getloadavg()
    seq = Sequence.mrf_wf()
    ph = make_phantom("thigh", seed=3, matrix=args.matrix, fov_mm=350.0, slices=args.slices)
    t0 = time.perf_counter()
    series = acquire(seq, ph.maps, seed=3, snr=10.0)
    t_sim = time.perf_counter() - t0
    scan = Scan(series=series, foreground=ph.foreground, sequence=seq, maps=dict(ph.maps), labels=ph.labels,
                label_names=ph.label_names, attrs={"subject": "bench"})
    mem_plain, mem_f32 = _checksum_cpu(series, 2 * args.repeat + 1)
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        for storage in ("complex64", "float16"):
            rows.append((storage, _writes(scan, Path(tmp), storage, args.repeat)))
    print(f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_write_safety.py --matrix {args.matrix} "
          f"--slices {args.slices} --repeat {args.repeat}`\n")
    print(f"Machine: {machine()}; load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, "
          f"after {os.getloadavg()[0]:.2f} (1/5/15 min)\n")
    print(f"One thigh scan {args.slices} × {args.matrix}², 175 frames; simulation (acquisition, no reference "
          f"matching) {t_sim:.1f} s. Writes: median of {args.repeat}, variants interleaved.\n")
    print("wall (CPU) seconds per write:\n")
    print("| storage | plain h5py, no fsync | + Fletcher-32 | + fsync | both (shipped) | overhead of both / simulation, wall (CPU) |")
    print("|---|---|---|---|---|---|")
    for storage, t in rows:
        cells = " | ".join(f"{t[k][0]:.2f} ({t[k][1]:.2f})" for k in VARIANTS)
        print(f"| {storage} | {cells} | {100 * (t['both'][0] - t['plain'][0]) / t_sim:+.1f} % "
              f"({100 * (t['both'][1] - t['plain'][1]) / t_sim:+.1f} %) |")
    print(f"\nFletcher-32 alone (series written to an in-memory HDF5 file, CPU time, median of {2 * args.repeat + 1}): "
          f"{mem_plain:.2f} s without, {mem_f32:.2f} s with: {mem_f32 - mem_plain:+.2f} s = "
          f"{100 * (mem_f32 - mem_plain) / t_sim:+.2f} % of the simulation.")


if __name__ == "__main__":
    main()
