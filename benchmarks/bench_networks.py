"""Training throughput and whole-scan inference time of the four networks, against dictionary matching.

For each network (paper width unless ``--width``; T = 175 frames, M = 3 maps) and device:

- **training**: patches per second of full training steps (forward, masked MSE, backward, Adam)
  on random inputs already on the device — the network's cost alone, without the patch
  cutting (its rate is measured separately, "loader"). Sample = one 42×42 → 32×32 patch
  (proposed), 36×36 → 32×32 (balsiger2018), 32×32 pixels (cohen2018), one whole slice
  (fang2018). FLOPs of a step ≈ 3 × the forward FLOPs (backward ≈ 2 × forward).
- **inference**: one scan of ``--slices`` slices of ``--size``² pixels, whole slices through
  :func:`mrfrecon.data.predict_volume` (fully convolutional); if ``--size`` < 350 the time
  is extrapolated to 350² by the ratio of exact MAC counts (:func:`mrfrecon.models.count_macs`).
- achieved GFLOP/s (2 × counted MACs / time) as a fraction of the measured matmul peak of the
  device (float32 on CPU; bf16 on CUDA, where AMP is used).
- **paper-scale projection**: one epoch = 55 scans × 5 slices × (patches with foreground per
  350² slice, counted on the two-limb slice of ``bench_matching.py``) ÷ measured rate, plus the
  validation of 20 scans × 5 slices.
- **dictionary matching** of one 350² slice (``mrfrecon.match``, clinical dictionary), or the
  number given with ``--match-seconds``.

Defaults keep a CPU run at a few minutes (``--size 128``, training batch 4); on CUDA the paper's
batch of 50 and 350² slices with bf16 autocast. Prints Markdown.

Run: ``.venv/bin/python benchmarks/bench_networks.py [--threads 1] [--models proposed,cohen2018]
[--size 96] [--train-batch 2] [--width 0.5] [--match-seconds 9.9] [--devices cpu] [--rounds 5]`` — on a shared
CPU, ``--threads 1`` gives stable numbers (two threads on two busy cores were 2–30× slower and
erratic); the peak is then the one-thread peak. About 1–3 min on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine, matmul_peak_gflops  # noqa: E402

from mrfrecon.data import PatchDataset, PatchGrid, PatchIndex, masked_mse, predict_volume  # noqa: E402
from mrfrecon.models import build, count_macs  # noqa: E402

MODELS = ("proposed", "cohen2018", "fang2018", "balsiger2018")
PAPER_TRAIN_SCANS, PAPER_VAL_SCANS, PAPER_SLICES, PAPER_SIZE = 55, 20, 5, 350


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bf16_peak_gflops(dev: torch.device, n: int = 8192) -> float:
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    t = best_of(lambda: a @ b, 5)
    return 2 * n**3 / t / 1e9


def _amp(dev: torch.device):
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sample_shape(net, patch: int, slice_size: int) -> tuple[int, int]:
    """(input, output) side of one training sample."""
    if net.kind == "slice":
        return slice_size, slice_size
    return patch + 2 * net.margin, patch


def train_rate(net, dev: torch.device, batch: int, steps: int, patch: int, slice_size: int) -> tuple[float, float]:
    """(samples/s, seconds per step) of full training steps on random data already on ``dev``:
    the mean over ``steps`` on CUDA, the fastest of ``steps`` on the CPU."""
    n_in, n_out = sample_shape(net, patch, slice_size)
    x = torch.randn(batch, net.in_channels, n_in, n_in, device=dev)
    y = torch.rand(batch, net.maps, n_out, n_out, device=dev)
    m = (torch.rand(batch, 1, n_out, n_out, device=dev) > 0.3).float()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()

    def step():
        with _amp(dev):
            pred = net(x)
        loss = masked_mse(pred.float(), y, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, kernels)
    _sync(dev)
    if dev.type == "cuda":  # steady state: the mean over the steps
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        dt = (time.perf_counter() - t0) / steps
    else:  # a shared CPU: the fastest step (others' load only slows steps down)
        dt = min(_timed(step) for _ in range(steps))
    return batch / dt, dt


@contextlib.contextmanager
def plain_inference(net):
    """The network as before the inference work: NCHW on the CPU, dense blocks that concatenate,
    batch norms not folded. Instance attributes shadow the class defaults (``cpu_channels_last``,
    ``fold_inference``, ``TemporalDenseBlock.fast_inference``) for the duration and are removed after."""
    from mrfrecon.models.layers import TemporalDenseBlock

    blocks = [m for m in net.modules() if isinstance(m, TemporalDenseBlock)]
    net.cpu_channels_last = False
    net.fold_inference = False
    for b in blocks:
        b.fast_inference = False
    try:
        yield
    finally:
        del net.cpu_channels_last, net.fold_inference
        for b in blocks:
            del b.fast_inference


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def inference_time(net, dev: torch.device, slices: int, size: int, frames: int) -> float:
    """Seconds for one scan (slices, T, size, size) through predict_volume, after a one-slice warm-up."""
    rng = np.random.default_rng(0)
    series = (rng.standard_normal((slices, frames, size, size), np.float32)
              + 1j * rng.standard_normal((slices, frames, size, size), np.float32)).astype(np.complex64)
    with _amp(dev):
        predict_volume(net, series[:1], device=dev)
        _sync(dev)
        t0 = time.perf_counter()
        predict_volume(net, series, device=dev)
        _sync(dev)
    return time.perf_counter() - t0


def loader_rate(frames: int, n: int = 200) -> float:
    """Samples/s of PatchDataset cutting 42×42 × 2T patches from a 350² slice (one CPU thread)."""
    rng = np.random.default_rng(0)
    s = (rng.standard_normal((1, frames, 350, 350), np.float32) * (1 + 1j)).astype(np.complex64)
    fg = np.ones((1, 350, 350), bool)
    ds = PatchDataset([s], [np.zeros((1, 3, 350, 350), np.float32)], [fg], grid=PatchGrid((32, 32), 5))
    idx = rng.integers(0, len(ds), n)
    t0 = time.perf_counter()
    for i in idx:
        ds[int(i)]
    return n / (time.perf_counter() - t0)


def paper_patches_per_slice(patch: int = 32) -> int:
    """Grid patches with foreground on the two-limb 350² slice of bench_matching (~35 % foreground)."""
    yy, xx = np.mgrid[:PAPER_SIZE, :PAPER_SIZE] / PAPER_SIZE
    fg = (((xx - 0.27) / 0.2) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1) | (((xx - 0.73) / 0.2) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1)
    return len(PatchIndex.build([fg[None]], PatchGrid((patch, patch), 0)))


def matching_seconds(size: int) -> tuple[float, str]:
    """Fast dictionary matching of one size² two-limb slice on the clinical dictionary (s), and a note."""
    from bench_matching import slice_fingerprints

    from mrfrecon import Dictionary, Sequence, match

    seq = Sequence.mrf_wf()
    d = Dictionary.build(seq)
    x, _, fg = slice_fingerprints(seq, size, np.random.default_rng(0))
    match(x[:8], d)
    t0 = time.perf_counter()
    match(x, d)
    t = time.perf_counter() - t0
    scale = (PAPER_SIZE / size) ** 2
    note = f"measured on a {size}² slice ({x.shape[0]:,} foreground voxels)" + (f", × {scale:.2f} to 350²" if scale != 1 else "")
    return t * scale, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--devices", default=None, help="cpu and/or cuda (default: both where available)")
    ap.add_argument("--frames", type=int, default=175)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=None, help="inference slice size (default 128 on CPU, 350 on CUDA)")
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--train-batch", type=int, default=None, help="default 4 on CPU, 50 (paper) on CUDA")
    ap.add_argument("--train-slice", type=int, default=None, help="fang2018 training slice (default 96 on CPU, 352 on CUDA)")
    ap.add_argument("--slice-batch", type=int, default=None,
                    help="fang2018 training batch of whole slices (default 2 on CPU, 8 on CUDA: 50 slices of 352² "
                         "do not fit in GPU memory at full width)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default 3 on CPU, 20 on CUDA)")
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--match-size", type=int, default=350, help="slice size for the matching timing (0: skip)")
    ap.add_argument("--match-seconds", type=float, default=None, help="use this matching time per 350² slice instead")
    ap.add_argument("--no-loader", action="store_true", help="skip the patch-cutting rate")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved inference rounds (public path, plain path, each bracketed by peak measurements)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    models = [m for m in args.models.split(",") if m]
    print(f"# Network benchmark\n\nMachine: {machine()}\n")
    print(f"Networks at width {args.width:g}, T = {args.frames} frames, M = 3 maps; "
          f"paper-scale epoch = {PAPER_TRAIN_SCANS} scans × {PAPER_SLICES} slices.\n")

    pps = paper_patches_per_slice(args.patch)
    if args.match_seconds is not None:
        t_match, match_note = args.match_seconds, "given on the command line"
    elif args.match_size > 0:
        t_match, match_note = matching_seconds(args.match_size)
    else:
        t_match, match_note = float("nan"), "skipped"
    print(f"- dictionary matching (fast two-component, clinical grid, CPU): **{t_match:.2f} s per 350² slice** ({match_note})")
    if not args.no_loader:
        print(f"- patch cutting (PatchDataset, 42×42 × {2 * args.frames} channels, one process): "
              f"**{loader_rate(args.frames):.0f} patches/s** per DataLoader worker")
    print(f"- training patches per 350² slice with foreground (two-limb slice, 32×32 grid): {pps} → "
          f"{PAPER_TRAIN_SCANS * PAPER_SLICES * pps:,} patches per paper epoch (fang2018: "
          f"{PAPER_TRAIN_SCANS * PAPER_SLICES} slices)\n")

    for dname in devices:
        dev = torch.device(dname)
        cuda = dev.type == "cuda"
        size = args.size or (350 if cuda else 128)
        batch = args.train_batch or (50 if cuda else 4)
        tslice = args.train_slice or (352 if cuda else 96)
        steps = args.steps or (20 if cuda else 3)
        # the machine may be shared: the peak is measured around every timed part (see below)
        peak_fn = (lambda: bf16_peak_gflops(dev)) if cuda else (lambda: matmul_peak_gflops(device=dname))
        peaks = [peak_fn()]
        peak32 = matmul_peak_gflops(device=dname) if cuda else peaks[0]
        prec = "bf16 autocast" if cuda else "fp32"
        rows = []
        for name in models:
            torch.manual_seed(0)
            net = build(name, frames=args.frames, maps=3, width=args.width).to(dev)
            n_in, n_out = sample_shape(net, args.patch, tslice)
            fwd_macs = count_macs(net, (1, net.in_channels, n_in, n_in))
            nb = (args.slice_batch or (8 if cuda else 2)) if net.kind == "slice" else batch
            p_before = peak_fn()
            rate, _ = train_rate(net, dev, nb, steps, args.patch, tslice)
            p_after = peak_fn()
            peaks += [p_before, p_after]
            train_gflops = rate * 3 * 2 * fwd_macs / 1e9
            train_frac = train_gflops / max(p_before, p_after)

            m = net.margin
            macs_s = count_macs(net, (1, net.in_channels, size + 2 * m, size + 2 * m))
            macs_350 = count_macs(net, (1, net.in_channels, PAPER_SIZE + 2 * m, PAPER_SIZE + 2 * m))
            # the baseline in the same run (NCHW, concatenating dense blocks), interleaved with the
            # public path; each round brackets both with a matmul-peak measurement and divides by the
            # larger of the two: this CPU's speed drifts by up to 1.6× within minutes (a shared host),
            # so a peak taken at another moment than the network's run can move the fraction more
            # than any change of the code. The median round is reported, with the range.
            per_round = []
            for _ in range(args.rounds):
                p_before = peak_fn()
                t_pub = inference_time(net, dev, args.slices, size, args.frames)
                with plain_inference(net):
                    t_pl = inference_time(net, dev, args.slices, size, args.frames)
                p_after = peak_fn()
                peaks += [p_before, p_after]
                ref_peak = max(p_before, p_after)
                gf = args.slices * 2 * macs_s / 1e9
                per_round.append((t_pub, t_pl, gf / t_pub / ref_peak, gf / t_pl / ref_peak))
            t_scan = float(np.median([r[0] for r in per_round]))
            t_plain = float(np.median([r[1] for r in per_round]))
            fr_pub = sorted(r[2] for r in per_round)
            fr_plain = sorted(r[3] for r in per_round)
            ratio = float(np.median([r[1] / r[0] for r in per_round]))
            inf_gflops = args.slices * 2 * macs_s / t_scan / 1e9
            t_scan_350 = t_scan * macs_350 / macs_s * PAPER_SLICES / args.slices
            t_slice_350 = t_scan_350 / PAPER_SLICES

            if net.kind == "slice":  # samples are slices; cost ∝ pixels
                epoch_samples = PAPER_TRAIN_SCANS * PAPER_SLICES
                sample_scale = count_macs(net, (1, net.in_channels, 352, 352)) / fwd_macs
            else:
                epoch_samples = PAPER_TRAIN_SCANS * PAPER_SLICES * pps
                sample_scale = 1.0
            t_epoch = epoch_samples * sample_scale / rate + PAPER_VAL_SCANS * t_scan_350
            rows.append((name, rate, train_gflops, t_epoch, t_scan_350, inf_gflops, 2 * macs_350 / 1e12, t_match / t_slice_350,
                         fr_pub, fr_plain, ratio, train_frac))
            del net
            if cuda:
                torch.cuda.empty_cache()
        peak = max(peaks)
        print(f"## {dname} ({prec}; matmul peak {peak:,.0f} GFLOP/s, the largest of {len(peaks)} measurements "
              f"(smallest {min(peaks):,.0f}){f'; fp32 {peak32:,.0f}' if cuda else ''})\n")
        print(f"Training: batch {batch} (fang2018: {args.slice_batch or (8 if cuda else 2)} slices of {tslice}²), {steps} timed steps ({'mean' if cuda else 'fastest'}). Inference: {args.slices} slices of {size}²"
              f"{' (time extrapolated to 350² by the MAC ratio)' if size != PAPER_SIZE else ''}.\n")
        print(f"Fractions of peak: training ÷ the larger of the peaks measured just before and after its steps; inference per round (of {args.rounds}), the scan's GFLOP/s ÷ the larger of the two "
              "peaks measured just before and after it; median [smallest–largest].\n")
        print("| network | train samples/s | train GFLOP/s (% peak) | paper epoch (train + val) | scan 5×350² | "
              "GFLOP/s | % of the adjacent peak | plain NCHW: % of the adjacent peak | plain ÷ this (median) | "
              "TFLOP/slice | matching ÷ network per slice |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, rate, train_gflops, t_epoch, t_scan_350, inf_gflops, tflop, speedup, fr_pub, fr_plain, ratio, tfr in rows:
            print(f"| {name} | {rate:,.1f} | {train_gflops:,.0f} ({100 * tfr:.0f} %) | "
                  f"{_hms(t_epoch)} | {t_scan_350:.2f} s | {inf_gflops:,.0f} | {_pct(fr_pub)} | {_pct(fr_plain)} | "
                  f"{ratio:.2f} | {tflop:.3f} | {speedup:,.2f} |")
        print()
    print("Training rates exclude patch cutting (workers × the loader rate must exceed the training rate). "
          "fang2018's sample is one whole slice of --train-slice² pixels; its epoch projection scales it to 352² by MACs. "
          "The paper epoch adds the validation of 20 scans at the inference time measured here.")


def _pct(fractions: list[float]) -> str:
    """'median % [smallest–largest]' of sorted fractions."""
    return f"**{100 * float(np.median(fractions)):.0f} %** [{100 * fractions[0]:.0f}–{100 * fractions[-1]:.0f}]"


def _hms(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
