"""Why and by how much the folded CPU inference of the proposed CNN (``mrfrecon.models.folded``)
is faster than the dense-block path (``fold_inference = False``), one torch thread:

1. per stage of the dense-block path at paper width on a 128² slice: seconds and the fraction of
   the matmul peak (measured just before and after), dense blocks against the 3 × 3 convolutions;
2. the first dense block's four matrix products alone, and the block's time with a fresh scratch
   buffer on every pass against the kept one (the page faults of a new 85 MB buffer);
3. folded against the dense-block path, direct forward passes interleaved ``--rounds`` times (the
   order alternating), per-round ratios and their median, at widths 1 (128²) and 0.25 (256²).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_folded.py [--rounds 8]`` (about 2 min).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, machine, matmul_peak_gflops  # noqa: E402

from mrfrecon.models import build, count_macs  # noqa: E402
from mrfrecon.models.folded import _dense, plan_for  # noqa: E402


@torch.no_grad()
def stages() -> None:
    net = build("proposed", frames=175, maps=3, width=1.0).eval()
    net.fold_inference = False
    x = torch.randn(1, 350, 138, 138)
    items, h = [], x
    for st in [*net.features, net.head]:
        macs = count_macs(st, tuple(h.shape))
        items.append((st, h, macs))
        h = st(h)
    p0 = matmul_peak_gflops()
    times = [best_of(lambda st=st, h=h: st(h)) for st, h, _ in items]
    peak = max(p0, matmul_peak_gflops())
    print(f"### 1. Dense-block path per stage (width 1, 128² slice; peak {peak:.0f} GFLOP/s)\n")
    print("| stage | seconds | GFLOP | % of peak |\n|---|---|---|---|")
    for (st, _, macs), t in zip(items, times, strict=True):
        print(f"| {type(st).__name__} | {t:.3f} | {2 * macs / 1e9:.1f} | {100 * 2 * macs / t / 1e9 / peak:.0f} % |")


@torch.no_grad()
def first_block() -> None:
    net = build("proposed", frames=175, maps=3, width=1.0).eval()
    x = torch.randn(1, 350, 138, 138)
    plan = plan_for(net, x.device, x.dtype)
    op = plan.ops[0]
    shape = (1, 138, 138, op.out_channels)
    buf = plan.buffer(shape, x)
    rows = buf.view(-1, op.out_channels)
    p0 = matmul_peak_gflops()
    c, cells = 350, []
    for weight, _ in op.layers:
        t = best_of(lambda c=c, weight=weight: torch.mm(rows[:, :c], weight))
        cells.append(f"K = {c}: {100 * 2 * rows.shape[0] * c * weight.shape[1] / t / 1e9 / p0:.0f} %")
        c += weight.shape[1]
    kept = best_of(lambda: _dense(op, x, plan.buffer(shape, x)))
    fresh = best_of(lambda: _dense(op, x, x.new_empty(shape)))
    print(f"\n### 2. First dense block (width 1, 128²; peak {p0:.0f} GFLOP/s)\n")
    print(f"- its four matrix products alone (rows @ weights): {', '.join(cells)} of the peak")
    print(f"- the folded block with the kept scratch buffer {1e3 * kept:.0f} ms, with a fresh "
          f"{buf.numel() * 4 / 2**20:.0f} MiB buffer per pass {1e3 * fresh:.0f} ms (fresh ÷ kept {fresh / kept:.2f})")


@torch.no_grad()
def interleaved(rounds: int) -> None:
    print(f"\n### 3. Dense-block path ÷ folded, direct forward passes, {rounds} interleaved rounds\n")
    print("| width, slice | per round | median |\n|---|---|---|")
    for width, size in ((1.0, 128), (0.25, 256)):
        net = build("proposed", frames=175, maps=3, width=width).eval()
        x = torch.randn(1, 350, size + 10, size + 10)

        def once(fold: bool) -> float:
            net.fold_inference = fold
            t0 = time.perf_counter()
            net(x)
            return time.perf_counter() - t0

        once(True), once(False)
        ratios = []
        for i in range(rounds):
            if i % 2:
                dense, folded = once(False), once(True)
            else:
                folded, dense = once(True), once(False)
            ratios.append(dense / folded)
        print(f"| {width:g}, {size}² | {' '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}** |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# Folded inference of the proposed CNN\n\nMachine: {machine()}; one torch thread.\n")
    stages()
    first_block()
    interleaved(args.rounds)


if __name__ == "__main__":
    main()
