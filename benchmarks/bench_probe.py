"""Cost of the convergence probe (issue 20): one evaluation-mode pass over the probe set
(:data:`mrfrecon.training.loop.PROBE_BATCHES` × batch samples) against the training steps between
two probes (≈ 1 % of the budget: 30 steps at the study's 3,000), per network at the study preset's
width, batch and sample size, on random inputs already on the CPU (the network's cost alone).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probe.py [--steps-between 30]``
"""

from __future__ import annotations

import argparse

import torch

from mrfrecon.data.loss import masked_mse_per_map
from mrfrecon.models import build
from mrfrecon.training.loop import PROBE_BATCHES

from common import best_of, machine, uptime

#: network → (batch, input side, output side) at the study preset (Fang et al.: one 256² slice per step)
STUDY = {"proposed": (8, 42, 32), "cohen2018": (8, 32, 32), "fang2018": (1, 256, 256), "balsiger2018": (8, 36, 32)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps-between", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {machine()}; load {uptime()}")
    print("| network | s per training step | s per probe pass | probe ÷ training between probes |")
    print("|---|---|---|---|")
    for name, (batch, side, out) in STUDY.items():
        torch.manual_seed(0)
        net = build(name, frames=175, maps=3, width=0.25)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        x = torch.randn(batch, 350, side, side)
        y, m = torch.rand(batch, 3, out, out), torch.ones(batch, 1, out, out)
        xp = torch.randn(PROBE_BATCHES * batch, 350, side, side)
        yp, mp = torch.rand(len(xp), 3, out, out), torch.ones(len(xp), 1, out, out)

        def step() -> None:
            net.train()
            loss = masked_mse_per_map(net(x), y, m).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        @torch.no_grad()
        def probe() -> None:
            net.eval()
            for i in range(0, len(xp), batch):
                masked_mse_per_map(net(xp[i : i + batch]), yp[i : i + batch], mp[i : i + batch])

        step()
        t_step = best_of(lambda: [step() for _ in range(5)]) / 5
        t_probe = best_of(probe)
        print(f"| {name} | {t_step:.3f} | {t_probe:.3f} | {t_probe / (a.steps_between * t_step):.1%} |")


if __name__ == "__main__":
    main()
