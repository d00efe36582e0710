"""Accuracy of the estimated foreground (mrfrecon.io.foreground) against the simulated ground truth.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/foreground_accuracy.py``; prints the table of
docs/IMPORT.md (Dice, ground-truth voxels missed, extra voxels, muscle voxels kept).
"""

from mrfrecon.cohort import simulate_scan
from mrfrecon.presets import load_preset
from mrfrecon.sequence import Sequence
from mrfrecon.io.foreground import estimate_foreground
seq = Sequence.mrf_wf()
for region, seed, matrix, snr in (("thigh", 1, 48, 10.0), ("leg", 2, 48, 10.0), ("thigh", 3, 96, 30.0), ("leg", 4, 96, 30.0)):
    cfg = {**load_preset("tiny")["cohort"], "matrix": matrix, "slices": 2, "snr": snr}
    s = simulate_scan("x", region, seed, cfg, seq, None)
    fg, gt = estimate_foreground(s.series), s.foreground
    mus = s.labels >= 11
    print(f"| {region} | {matrix}² × 2 | {snr:g} | {2*(fg&gt).sum()/(fg.sum()+gt.sum()):.3f} | {(gt&~fg).sum()/gt.sum():.3f} | {(fg&~gt).sum()/gt.sum():.3f} | {(fg&mus).sum()/mus.sum():.4f} |")
