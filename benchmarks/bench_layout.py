"""CPU inference layout of the four networks: NCHW against channels-last (both with the dense
blocks' concatenation-free eval path), and the dense-block path against concatenation, one
thread, interleaved, the fastest of three; for the proposed CNN also the folded path
(:mod:`mrfrecon.models.folded`, the default); then the torch profiler's top operators of the
paper-width proposed CNN on the concatenating, the dense-block and the folded path. The figures
behind each network's ``cpu_channels_last``, ``TemporalDenseBlock._forward_inference`` and
``ProposedCNN.fold_inference``.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_layout.py`` (about 1–2 min).
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from mrfrecon.models import build  # noqa: E402
from mrfrecon.models.layers import TemporalDenseBlock  # noqa: E402

MODELS = ("proposed", "cohen2018", "fang2018", "balsiger2018")


def _dense(net, fast: bool, fold: bool = False) -> None:
    """The dense blocks' eval path on or off; the folded path of the proposed CNN ``fold``."""
    if hasattr(net, "fold_inference"):
        net.fold_inference = fold
    for m in net.modules():
        if isinstance(m, TemporalDenseBlock):
            m.fast_inference = fast


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def layouts(width: float, size: int) -> None:
    print(f"\n### width {width}, {size}² slice\n")
    print("| network | NCHW, concatenating | NCHW | channels-last | NCHW ÷ channels-last | concatenating ÷ NCHW | "
          "folded (NCHW input) | NCHW ÷ folded |")
    print("|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        net = build(name, frames=175, maps=3, width=width).eval()
        m = net.margin
        x = torch.randn(1, net.in_channels, size + 2 * m, size + 2 * m)
        xc = x.contiguous(memory_format=torch.channels_last)
        t = {"cat": float("inf"), "nchw": float("inf"), "cl": float("inf"), "fold": float("inf")}
        folds = hasattr(net, "fold_inference")
        for _ in range(3):  # interleaved: a drift of the machine's speed hits all three alike
            _dense(net, False)
            net.to(memory_format=torch.contiguous_format)
            t["cat"] = min(t["cat"], _best(lambda: net(x), 1))
            _dense(net, True)
            t["nchw"] = min(t["nchw"], _best(lambda: net(x), 1))
            net.to(memory_format=torch.channels_last)
            t["cl"] = min(t["cl"], _best(lambda: net(xc), 1))
            if folds:
                net.to(memory_format=torch.contiguous_format)
                _dense(net, True, fold=True)
                net(x)  # folds the weights once (cached)
                t["fold"] = min(t["fold"], _best(lambda: net(x), 1))
        fold = (f"{t['fold']:.3f} s | **{t['nchw'] / t['fold']:.2f}**" if folds else "– | –")
        print(f"| {name} | {t['cat']:.3f} s | {t['nchw']:.3f} s | {t['cl']:.3f} s | {t['nchw'] / t['cl']:.2f} | "
              f"{t['cat'] / t['nchw']:.2f} | {fold} |")


@torch.no_grad()
def profile() -> None:
    net = build("proposed", frames=175, maps=3, width=1.0).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 350, 138, 138).contiguous(memory_format=torch.channels_last)
    for fast, fold in ((False, False), (True, False), (True, True)):
        _dense(net, fast, fold)
        net(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            net(x)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        top = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f} %" for e in events[:5])
        path = "folded" if fold else "dense-block path" if fast else "concatenating"
        print(f"- proposed, width 1, 128², channels-last input, {path}: {top}")


def main() -> None:
    torch.set_num_threads(1)
    print("# CPU inference layout\n")
    print(f"Machine: {machine()}; one torch thread; fastest of three interleaved passes per variant.")
    layouts(1.0, 128)
    layouts(0.25, 256)
    print("\n### Where the time goes (torch profiler, self CPU time)\n")
    profile()


if __name__ == "__main__":
    main()
