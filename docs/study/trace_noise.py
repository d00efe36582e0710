"""How noisy the minibatch loss trace is (issue 20): per run of a comparison, the scatter of the
trace's ≈ 1 %-of-budget buckets (SD of the log-ratio of neighbouring buckets ÷ √2), and the
Theil–Sen trend of the log loss over the last 20 % of the steps as the change per 10 % of the
budget with its 90 % interval. Runs trained before the trace existed have none (per-evaluation
losses only) and are listed as such.

Run: ``.venv/bin/python docs/study/trace_noise.py <compare out>/runs/reference``
"""

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import theilslopes


def main(runs: str) -> None:
    print("| run | buckets | bucket scatter | change per 10 % of the budget (Theil–Sen, last 20 %) | 90 % interval |")
    print("|---|---|---|---|---|")
    for ck in sorted(Path(runs).glob("*/seed-*/checkpoint_last.pt")):
        name = f"{ck.parent.parent.name} {ck.parent.name}"
        t = np.array(torch.load(ck, map_location="cpu", weights_only=True)["training"].get("trace") or [])
        if len(t) < 10:
            print(f"| {name} | — | — | no trace (trained before it) | — |")
            continue
        end = t[-1, 0]
        sel = t[:, 0] > 0.8 * end
        x, y = t[sel, 0] / (0.1 * end), np.log(t[sel, 1])
        slope, _, lo, hi = theilslopes(y, x, alpha=0.90)
        scatter = np.std(np.diff(np.log(t[:, 1]))) / np.sqrt(2)
        print(f"| {name} | {len(t)} | {scatter:.0%} | {np.expm1(slope):+.1%} | [{np.expm1(lo):+.1%}, {np.expm1(hi):+.1%}] |")


if __name__ == "__main__":
    main(sys.argv[1])
