"""One short check of the CUDA paths, for a session that has a GPU (prepared; not yet run).

Measures, each against the CPU path of the same run where that is quick:

1. proposed CNN (paper width) inference on one 5 × 350² scan with mixed precision
   (``torch.autocast`` bf16, fp16 where bf16 is unsupported) — goal < 50 ms (issue 11);
2. fast matching of a simulated 350² thigh slice on CUDA (the torch implementation; the fused
   C kernel is CPU-only) — goal < 0.1 s; agreement with the CPU's fused kernel;
3. KWIC reconstruction of 175 frames of a 350² slice with cufinufft (``Nufft2D`` backend
   ``auto`` picks it when CUDA and the ``cufinufft`` package are present) against finufft on the
   CPU: time and relative difference.

Needs: a CUDA build of torch and ``pip install cufinufft`` (step 3 is skipped without it).
About 1–2 minutes on an H100-class GPU (dictionary build and CPU references included).

Run: ``.venv/bin/python benchmarks/gpu_check.py [--skip-cpu]``. Prints Markdown for
benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from mrfrecon import Dictionary, Sequence, match, simulate  # noqa: E402
from mrfrecon.acquisition import kwic_reconstruct, kwic_weights, radial_trajectory, simulate_kspace  # noqa: E402
from mrfrecon.acquisition.nufft import nufft_backend  # noqa: E402
from mrfrecon.data import predict_volume  # noqa: E402
from mrfrecon.matching import match_indices_agree  # noqa: E402
from mrfrecon.models import build, count_macs  # noqa: E402
from mrfrecon.phantoms import make_phantom  # noqa: E402


def cuda_time(fn, repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls (s), after a warm-up, with CUDA synchronized."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-cpu", action="store_true", help="no CPU reference timings")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible to torch; nothing to check")
    dev = torch.device("cuda")
    print(f"# GPU check\n\nMachine: {machine()}; {torch.cuda.get_device_name(0)}\n")
    amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    seq = Sequence.mrf_wf()

    # 1. CNN inference, 5 × 350², autocast
    net = build("proposed", frames=seq.frames, maps=3).to(dev).eval()
    scan = np.random.default_rng(0).standard_normal((5, 2 * seq.frames, 350, 350)).astype(np.float32)
    macs = count_macs(net, (1, net.in_channels, 350 + 2 * net.margin, 350 + 2 * net.margin)) * 5

    def infer():
        with torch.autocast("cuda", dtype=amp):
            return predict_volume(net, scan, device=dev)

    t_cnn = cuda_time(infer, 3)
    print(f"- proposed CNN, 5 × 350² scan, autocast {str(amp).split('.')[-1]}: **{1e3 * t_cnn:.1f} ms** "
          f"({2 * macs / t_cnn / 1e12:.1f} TFLOP/s; goal < 50 ms; host↔device copies included)")

    # 2. matching of a 350² thigh slice
    ph = make_phantom("thigh", seed=0, slices=1)
    fg = ph.foreground[0]
    p = {k: ph.maps[k][0][fg] for k in ("t1h2o", "ff", "b1", "df", "t1fat", "pd")}
    rng = np.random.default_rng(0)
    x = simulate(seq, **p)
    x = (x + 0.01 * np.abs(x).mean() * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))).astype(np.complex64)
    d = Dictionary.build(seq, device="cpu")
    t_match = cuda_time(lambda: match(x, d, device=dev), 3)
    gpu_maps = match(x, d, device=dev)
    line = f"- fast matching of a 350² thigh slice ({x.shape[0]:,} voxels) on CUDA: **{t_match:.3f} s** (goal < 0.1 s)"
    if not args.skip_cpu:
        t0 = time.perf_counter()
        cpu_maps = match(x, d, device="cpu")
        t_cpu = time.perf_counter() - t0
        line += (f"; CPU (fused kernel, {torch.get_num_threads()} threads) {t_cpu:.2f} s; same pair on "
                 f"{100 * match_indices_agree(gpu_maps, cpu_maps).mean():.2f} % of voxels")
    print(line)

    # 3. KWIC with cufinufft
    backend = nufft_backend("auto")
    traj = radial_trajectory(seq, 350)
    k = 10
    disc = ((np.mgrid[:350, :350] - 175) ** 2).sum(0) < 140**2
    coeffs = (disc * (rng.standard_normal((1, k, 1, 1)) + 1j * rng.standard_normal((1, k, 1, 1)))).astype(np.complex64)
    basis = np.linalg.qr(rng.standard_normal((traj.shape[0], k)) + 1j * rng.standard_normal((traj.shape[0], k)))[0].astype(np.complex64)
    ksp = simulate_kspace(coeffs, basis, traj)
    weights = kwic_weights(traj, seq, 55)
    if backend != "cufinufft":
        print("- KWIC with cufinufft: skipped (pip install cufinufft)")
    else:
        import os

        os.environ["MRFRECON_NUFFT_BACKEND"] = "cufinufft"
        t0 = time.perf_counter()
        gpu_series = kwic_reconstruct(ksp, traj, seq, matrix=350, weights=weights)
        t_first = time.perf_counter() - t0
        t_kwic = cuda_time(lambda: kwic_reconstruct(ksp, traj, seq, matrix=350, weights=weights), 3)
        line = (f"- KWIC, 175 frames of a 350² slice, cufinufft: **{t_kwic:.3f} s** (first call with plans "
                f"{t_first:.2f} s)")
        if not args.skip_cpu:
            os.environ["MRFRECON_NUFFT_BACKEND"] = "finufft"
            t0 = time.perf_counter()
            cpu_series = kwic_reconstruct(ksp, traj, seq, matrix=350, weights=weights)
            t_cpu = time.perf_counter() - t0
            rel = np.abs(gpu_series - cpu_series).max() / np.abs(cpu_series).max()
            line += f"; finufft on the CPU {t_cpu:.2f} s; max difference {rel:.1e} of the series' maximum"
        print(line)


if __name__ == "__main__":
    main()
