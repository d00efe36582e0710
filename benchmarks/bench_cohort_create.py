"""Time of ``mrfrecon cohort create`` per scan: paper-size scans (5 slices × 350², 175 frames) as
BIDS NIfTI magnitude + phase pairs (uncompressed float32, phase in radians), the clinical
dictionary (45,000 water + 4,125 fat atoms).

The series are the thigh phantom's fingerprints (``mrfrecon.physics.simulate``, no k-space: the
import of raw data is timed by bench_import.py) plus complex noise at frame SNR 30. Prints the
seconds per scan of each stage of :func:`mrfrecon.assemble.create_cohort` (reading and checks,
staging the imported scan, reading it back, matching, writing the scan file) and, as the baseline
in the same run, ``read_scan`` + ``reference_maps`` of one scan in memory (what `mrfrecon match`
does): the ratio is what the cohort's bookkeeping costs.

    OMP_NUM_THREADS=1 python benchmarks/bench_cohort_create.py [--matrix 350] [--slices 5] [--scans 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from mrfrecon import Sequence
from mrfrecon.assemble import create_cohort
from mrfrecon.cohort import reference_maps
from mrfrecon.dictionary import Dictionary
from mrfrecon.io.geometry import affine_from_axcodes
from mrfrecon.io.readers import read_scan
from mrfrecon.phantoms import make_phantom
from mrfrecon.physics import simulate

from common import machine, peak_rss_mib  # benchmarks/, the script's folder, is on sys.path


def write_pair(folder: Path, subject: str, seq: Sequence, matrix: int, slices: int, seed: int) -> Path:
    """``sub-XX_part-mag_MRF.nii`` and ``sub-XX_part-phase_MRF.nii`` of one thigh phantom."""
    ph = make_phantom("thigh", seed=seed, matrix=matrix, slices=slices)
    fg = ph.foreground
    keys = ("t1h2o", "t1fat", "b1", "df", "ff", "pd")
    fp = simulate(seq, *(ph.maps[k][fg].astype(np.float64) for k in keys))
    rng = np.random.default_rng(seed)
    sd = np.abs(fp).mean() / 30.0
    vol = np.zeros((*fg.shape, seq.frames), np.complex64)  # (slices, y, x, frames)
    vol[fg] = fp
    vol += (sd * (rng.standard_normal(vol.shape) + 1j * rng.standard_normal(vol.shape))).astype(np.complex64)
    xyzt = vol.transpose(2, 1, 0, 3)
    aff = affine_from_axcodes((350.0 / matrix, 350.0 / matrix, 8.0), (matrix, matrix, slices))
    mag = folder / f"{subject}_part-mag_MRF.nii"
    nib.save(nib.Nifti1Image(np.abs(xyzt).astype(np.float32), aff), str(mag))
    nib.save(nib.Nifti1Image(np.angle(xyzt).astype(np.float32), aff), str(folder / f"{subject}_part-phase_MRF.nii"))
    return mag


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--matrix", type=int, default=350)
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--scans", type=int, default=3)
    a = ap.parse_args()
    print(machine())
    print(f"load average before (1/5/15 min): {load_average()}")
    seq = Sequence.mrf_wf()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        inputs = [write_pair(root, f"sub-{i:02d}", seq, a.matrix, a.slices, i) for i in range(1, a.scans + 1)]
        d = Dictionary.build(seq)
        d.save(root / "d.h5")
        print(f"{a.scans} scans of {a.slices} × {a.matrix}², {seq.frames} frames written in {time.perf_counter() - t0:.1f} s")
        # baseline: one scan read and matched in memory (mrfrecon match without writing)
        t0 = time.perf_counter()
        scan = read_scan(inputs[0], sequence=seq)
        t1 = time.perf_counter()
        reference_maps(scan.series, scan.foreground, Dictionary.load(root / "d.h5"))
        t2 = time.perf_counter()
        base = t2 - t0
        print(f"baseline (sub-01): read_scan {t1 - t0:.1f} s + reference_maps {t2 - t1:.1f} s = {base:.1f} s, "
              f"{int(scan.foreground.sum()):,} foreground voxels")
        del scan
        info: dict = {}
        t0 = time.perf_counter()
        create_cohort(inputs, root / "cohort", root / "d.h5", info=info)
        total = time.perf_counter() - t0
        stages = ("import", "stage", "load", "match", "write")
        print("| scan | " + " | ".join(stages) + " | sum |")
        print("|---|" + "---|" * (len(stages) + 1))
        for sid, sec in info["seconds"].items():
            print(f"| {sid} | " + " | ".join(f"{sec[k]:.1f}" for k in stages) + f" | {sum(sec.values()):.1f} |")
        per = total / a.scans
        print(f"cohort create: {total:.1f} s for {a.scans} scans = {per:.1f} s per scan; "
              f"ratio to the in-memory baseline {per / base:.2f}")
    print(f"load average after: {load_average()}; peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
