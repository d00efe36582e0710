"""Cost of larger output patches (issue 20, "cheaper steps"): one training step of the proposed CNN
at the study's width 0.25 and batch 8 for output patches of 32² (the paper's, from 42² inputs: the
11 × 11 field's margin of 5 on each side), 48² and 64², on random inputs already on the CPU.

What a larger patch buys is output voxels per second: the margin (the voxels a patch reads but does
not predict) is 1 − 32²/42² = 42 % of a 42² input and 1 − 64²/74² = 25 % of a 74² one. Reported per
patch size: seconds per step, output voxels per second, the ratio of that to the 32² step in the
same round (the sizes interleaved, best of ``--rounds``), and GFLOP/s against the one-thread
matmul peak measured in the same run.

``--profile``: then, for the first size, the forward multiply-adds of each convolution and the
torch profiler's share of a step's time by operator (where a step goes).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_patch.py [--sizes 32,48,64] [--rounds 3] [--profile]``
"""

from __future__ import annotations

import argparse

import torch

from mrfrecon.data.loss import masked_mse_per_map
from mrfrecon.models import build
from mrfrecon.models.macs import count_macs

from common import best_of, machine, matmul_peak_gflops, uptime

MARGIN = 5  # the 11 × 11 receptive field: 5 voxels on each side


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="32,48,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    torch.set_num_threads(1)
    print(f"machine: {machine()}; load {uptime()}")
    torch.manual_seed(0)
    net = build("proposed", frames=175, maps=3, width=0.25)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    data = {}
    for s in sizes:
        side = s + 2 * MARGIN
        data[s] = (torch.randn(a.batch, 350, side, side), torch.rand(a.batch, 3, s, s), torch.ones(a.batch, 1, s, s))

    def step(s: int) -> None:
        x, y, m = data[s]
        loss = masked_mse_per_map(net(x), y, m).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for s in sizes:  # warm-up: oneDNN primitives per shape
        step(s)
    best = {s: float("inf") for s in sizes}
    peak = 0.0
    for _ in range(a.rounds):
        peak = max(peak, matmul_peak_gflops())
        for s in sizes:
            best[s] = min(best[s], best_of(lambda s=s: [step(s) for _ in range(3)], repeat=1) / 3)
        peak = max(peak, matmul_peak_gflops())
    print(f"one-thread matmul peak (best around the timings): {peak:.0f} GFLOP/s")
    print("| output patch (input) | s per step | output voxels / s | ÷ 32² | training GFLOP/s (% of peak) |")
    print("|---|---|---|---|---|")
    base = a.batch * 32 * 32 / best[32] if 32 in best else None
    for s in sizes:
        side = s + 2 * MARGIN
        vox = a.batch * s * s / best[s]
        # training ≈ 3 × the forward multiply-adds (forward, input and weight gradients), 2 FLOP each
        gflop = 3 * 2 * count_macs(net, (a.batch, 350, side, side)) / 1e9
        rate = gflop / best[s]
        ratio = f"{vox / base:.2f}" if base else "–"
        print(f"| {s}² ({side}²) | {best[s]:.3f} | {vox:,.0f} | {ratio} | {rate:.0f} ({rate / peak:.0%}) |")
    if a.profile:
        profile(net, step, sizes[0], a.batch)


def profile(net: torch.nn.Module, step, size: int, batch: int) -> None:
    """Forward GFLOP per convolution (2 × multiply-adds) and the profiler's share of 3 steps by operator."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x = torch.randn(batch, 350, size + 2 * MARGIN, size + 2 * MARGIN)
    rows: list[tuple[str, float]] = []

    def hook(m: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, torch.nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            rows.append((f"{k ** 0.5:.0f}×{k ** 0.5:.0f} {m.in_channels}→{m.out_channels}",
                         2 * out.numel() * m.in_channels * k / m.groups / 1e9))

    hs = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(x)
    for h in hs:
        h.remove()
    total = sum(g for _, g in rows)
    print(f"\nforward GFLOP at {size}² (batch {batch}): {total:.1f}; the largest convolutions:")
    for name, g in sorted(rows, key=lambda r: -r[1])[:5]:
        print(f"- {name}: {g:.2f} ({g / total:.0%})")
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step(size)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
