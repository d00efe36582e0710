"""Cost of the uncertainty as a ratio to the matching or prediction it accompanies.

Prints a Markdown report (with the ``uptime`` load: the machine may be busy):

1. matching's SD (:func:`mrfrecon.uncertainty.matched.scan_match_uncertainty`: the noise level
   from the residual, the Cramér–Rao bound, the grid rounding) against the fast two-component
   matching of the same foreground, on one simulated thigh slice (KWIC frames); the first call
   (which tabulates the amplitudes of the dictionary's grid once) and a second one;
2. the same on fingerprint lists (:func:`mrfrecon.uncertainty.matched.match_uncertainty`);
3. an ensemble of shipped checkpoints: the members' predictions against the uncertainty added
   on top (the spread; with a dictionary, matching + its SD + the data-consistency check).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_uncertainty.py [--size 96] [--voxels 20000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, uptime  # noqa: E402

from mrfrecon import Dictionary, Sequence, acquire, match, simulate  # noqa: E402
from mrfrecon.demo import tissue_sample  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96, help="matrix of the simulated slice")
    ap.add_argument("--voxels", type=int, default=20000, help="fingerprints of the list benchmark")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from mrfrecon.cohort import reference_maps
    from mrfrecon.matching import MAP_KEYS
    from mrfrecon.phantoms import make_phantom
    from mrfrecon.uncertainty.matched import match_uncertainty, scan_match_uncertainty

    print(f"# bench_uncertainty ({machine()})\n\n{uptime()}\n")
    seq = Sequence.mrf_wf()
    d = Dictionary.build(seq)
    ph = make_phantom("thigh", seed=0, matrix=args.size, slices=1)
    series = acquire(seq, ph.maps, seed=0, snr=10.0)
    fg = ph.foreground
    n = int(fg.sum())
    match(np.moveaxis(series, 1, -1)[fg][:64], d)  # kernels compiled/loaded, dictionary prepared
    print(f"## 1. one thigh slice {args.size}², KWIC frames, SNR 10: {n:,} foreground voxels\n")
    print("| call | matching s | SD s | SD / matching |\n|---|---|---|---|")
    for call in range(1, args.repeat + 1):
        m, tm = timed(lambda: reference_maps(series, fg, d, keys=(*MAP_KEYS, "valid")))
        _, ts = timed(lambda: scan_match_uncertainty(series, fg, d, m))
        print(f"| {call}{' (tabulates the grid)' if call == 1 else ''} | {tm:.3f} | {ts:.3f} | {ts / tm:.2f} |")
    rng = np.random.default_rng(0)
    truth = tissue_sample(args.voxels, rng)
    x = simulate(seq, **truth)
    x = (x + 0.1 * np.abs(x).mean() * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))).astype(np.complex64)
    print(f"\n## 2. {args.voxels:,} fingerprints (thigh-like, off the grid, 10 % noise)\n")
    print("| call | matching s | SD s | SD / matching |\n|---|---|---|---|")
    for call in range(1, args.repeat + 1):
        m, tm = timed(lambda: match(x, d))
        _, ts = timed(lambda: match_uncertainty(x, d, m))
        print(f"| {call} | {tm:.3f} | {ts:.3f} | {ts / tm:.2f} |")
    print(f"\n{uptime()}\n")
    from mrfrecon.checkpoint import load_checkpoint
    from mrfrecon.inference import predict_scan
    from mrfrecon.io import Scan
    from mrfrecon.shipped import resolve_checkpoint
    from mrfrecon.uncertainty.ensemble import network_uncertainty

    names = ("study-cohen2018", "study-balsiger2018")
    cks = [load_checkpoint(resolve_checkpoint(f"shipped:{k}")) for k in names]
    nets = [c.build_model() for c in cks]
    scan = Scan(series=series, foreground=fg, sequence=seq)
    print(f"## 3. ensemble of {len(cks)} shipped checkpoints ({', '.join(names)}) on the slice of 1\n")
    print("| call | members' prediction s | spread s | + data consistency (matching, SD, check) s | ratios |\n|---|---|---|---|---|")
    for call in range(1, args.repeat + 1):
        preds, tp = timed(lambda: [predict_scan(c, scan, net=net) for c, net in zip(cks, nets, strict=True)])
        _, t_spread = timed(lambda: network_uncertainty(series, fg, preds))
        _, t_dc = timed(lambda: network_uncertainty(series, fg, preds, dictionary=d))
        print(f"| {call} | {tp:.3f} | {t_spread:.3f} | {t_dc:.3f} | {t_spread / tp:.3f}, {t_dc / tp:.2f} |")
    print(f"\n{uptime()}")


if __name__ == "__main__":
    main()
