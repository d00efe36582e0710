"""The thread policy under load: match / simulate / predict with one thread, the default and two threads,
on an idle machine and with a CPU-burner process keeping one core busy, all in the same run.

- ``one``: an explicit single thread (:func:`mrfrecon.runtime.set_threads` ``(1)`` and
  ``torch.set_num_threads(1)``, as ``OMP_NUM_THREADS=1`` or ``--threads 1``);
- ``default``: no setting at all — the policy of :mod:`mrfrecon.runtime` (the cores free at call
  time; matching's voxel blocks and simulation's chunks on that many workers);
- ``two``: an explicit two threads (what torch does by default on 2 cores, without the policy).

Workloads (realistic: a simulated thigh slice, ``mrfrecon.phantoms.make_phantom``):

- ``match``: fast matching of ``--voxels`` foreground voxels of the slice (clinical dictionary);
- ``simulate``: fingerprints of ``--sim-voxels`` voxels of the slice;
- ``predict``: the proposed CNN (paper width) on a ``--size``² crop of the slice's series.

Each time is the median of ``--repeat`` calls, the three settings interleaved call by call (so that
the load of other users drifts alike for all); ratios are to ``one`` in the same condition. The
burner is a process of this script (``while True: pass``); the machine's 1-minute load average is
printed beside each figure (other users' work counts there too).

Run: ``.venv/bin/python benchmarks/bench_threads.py [--voxels 20000] [--sim-voxels 5000] [--size 64] [--repeat 3]``
(about 2–4 min on a 2-core CPU). Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, uptime  # noqa: E402

from mrfrecon import Dictionary, Sequence, match, runtime, simulate  # noqa: E402
from mrfrecon.data import predict_slice  # noqa: E402
from mrfrecon.models import build  # noqa: E402
from mrfrecon.phantoms import make_phantom  # noqa: E402

SETTINGS = ("one", "default", "two")
SPLIT = ("match", "simulate")  # split into pieces on workers (thread_policy(split=True))


def apply(setting: str, torch_default: int) -> None:
    """Put the process in the thread state a user would have for ``setting``."""
    if setting == "default":
        runtime.set_threads(None)
        torch.set_num_threads(torch_default)  # torch's own start-up value: not an explicit choice
    else:
        n = 1 if setting == "one" else 2
        runtime.set_threads(n)
        torch.set_num_threads(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=20000)
    ap.add_argument("--sim-voxels", type=int, default=5000, help="voxels of the simulate workload")
    ap.add_argument("--size", type=int, default=64, help="side of the crop the CNN predicts")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for name in ("MRFRECON_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name):
            sys.exit(f"unset {name}: this benchmark sets the threads itself")
    torch_default = torch.get_num_threads()
    print(f"# Thread policy under load\n\nMachine: {machine()}\n")
    print(f"- start: `{uptime()}`")

    seq = Sequence.mrf_wf()
    ph = make_phantom("thigh", seed=0, slices=1)
    fg = ph.foreground[0]
    rng = np.random.default_rng(0)
    sel = rng.choice(int(fg.sum()), min(args.voxels, int(fg.sum())), replace=False)
    p = {k: ph.maps[k][0][fg][sel] for k in ("t1h2o", "ff", "b1", "df", "t1fat", "pd")}
    runtime.set_threads(1)
    x = simulate(seq, **p)
    x = (x + 0.01 * np.abs(x).mean() * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))).astype(np.complex64)
    d = Dictionary.build(seq)
    match(x[:600], d)  # one-off precomputation and kernel load, outside the timings
    net = build("proposed", frames=seq.frames, maps=3).eval()
    y0, x0 = (np.array(fg.shape) - args.size) // 2
    crop = np.zeros((seq.frames, args.size, args.size), np.complex64)
    img = np.zeros(fg.shape + (seq.frames,), np.complex64)
    fgi = np.flatnonzero(fg.reshape(-1))[sel]
    img.reshape(-1, seq.frames)[fgi] = x
    crop[:] = np.moveaxis(img[y0 : y0 + args.size, x0 : x0 + args.size], -1, 0)
    crop /= np.abs(crop).max() + 1e-12
    print(f"- {x.shape[0]:,} voxels of a simulated thigh slice (seed 0); proposed CNN on a {args.size}² crop; "
          f"median of {args.repeat}\n")

    work = {
        "match": lambda: match(x, d),
        "simulate": lambda: simulate(seq, **{k: v[: args.sim_voxels] for k, v in p.items()}),
        "predict": lambda: predict_slice(net, crop),
    }
    rows = []
    for condition in ("no burner", "burner"):
        burner = None
        if condition == "burner":
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(2.0)  # let the scheduler and the load sample see it
        try:
            for name, fn in work.items():
                times: dict[str, list[float]] = {k: [] for k in SETTINGS}
                loads = []
                fn()  # warm-up
                # settings interleaved, so that the other users' load drifts alike for all three
                for _ in range(args.repeat):
                    for setting in SETTINGS:
                        apply(setting, torch_default)
                        runtime._SAMPLE = None  # sample the free cores afresh for this call
                        loads.append(os.getloadavg()[0])
                        t0 = time.perf_counter()
                        fn()
                        times[setting].append(time.perf_counter() - t0)
                t = {k: statistics.median(v) for k, v in times.items()}
                apply("default", torch_default)
                runtime._SAMPLE = None
                # what the default picks now: workers for split work, else torch threads
                chosen = (f"{runtime.physical_cores()} workers" if name in SPLIT
                          else f"{runtime.auto_threads()} thread(s)")
                rows.append((condition, name, t, loads, chosen))
                print(f"  - {condition} {name}: one {t['one']:.3f} s, default {t['default']:.3f} s, "
                      f"two {t['two']:.3f} s (load {min(loads):.2f}–{max(loads):.2f}; default picks {chosen})", flush=True)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    apply("default", torch_default)
    print(f"\n- end: `{uptime()}`\n")
    print("| condition | workload | one thread | default | two threads | default ÷ one | two ÷ one | default picks | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for condition, name, t, loads, chosen in rows:
        print(f"| {condition} | {name} | {t['one']:.3f} s | {t['default']:.3f} s | {t['two']:.3f} s | "
              f"{t['default'] / t['one']:.2f} | {t['two'] / t['one']:.2f} | {chosen} | {min(loads):.2f}–{max(loads):.2f} |")
    print("\nGoals (issue 11): with the burner, default ÷ one ≤ 1.5; on an idle machine (load < 0.5 without "
          "the burner), matching default ÷ one ≤ 1 / 1.7 = 0.59.")


if __name__ == "__main__":
    main()
