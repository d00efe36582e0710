"""Fang et al.'s overfit failure (issue 20): is it the batch norms' running statistics?

Fang et al.'s U-Net trains on one whole slice per step (the study's ``slice_batch_size`` 1), so in
training every batch norm normalizes with the statistics of that one slice; a checkpoint predicts
with the running averages of those statistics over the slices seen. Where slices differ (thighs
and legs, fat and muscle fractions), the two differ, and a network that fits its training slices
with their own statistics need not fit them with the running ones.

This script scores a checkpoint on the scans of one split both ways — the running statistics (what
``mrfrecon predict`` does) and each slice's own statistics (the training-time normalization: every
batch norm's running buffers removed, so it normalizes with the batch, here the one slice) — as
NRMSE per map against the reference maps with the paper's masks, mean over the scans.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python docs/study/fang_bn_probe.py CHECKPOINT COHORT [SPLIT]``
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from mrfrecon.checkpoint import load_checkpoint
from mrfrecon.data import normalize_series
from mrfrecon.experiments.common import predict_normalized
from mrfrecon.io import CohortIndex
from mrfrecon.io.scan import load_scan
from mrfrecon.metrics import masks_for, nrmse


def slice_statistics(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose batch norms normalize with the statistics of their input batch in
    evaluation mode too (PyTorch's ``_BatchNorm`` does so when it holds no running buffers)."""
    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean = None
            m.running_var = None
    return out


def main() -> None:
    ck_path, cohort = sys.argv[1], sys.argv[2]
    split = sys.argv[3] if len(sys.argv) > 3 else "train"
    torch.set_num_threads(1)
    ck = load_checkpoint(ck_path)
    nets = {"running statistics": ck.build_model("cpu")}
    nets["each slice's statistics"] = slice_statistics(nets["running statistics"])
    index = CohortIndex.load(cohort)
    scores: dict[str, dict[str, list[float]]] = {k: {m: [] for m in ck.maps} for k in nets}
    for p in index.paths(split):
        scan = load_scan(p)
        series, _ = normalize_series(scan.series)
        masks = masks_for(scan.reference["ff"], scan.foreground)
        for k, net in nets.items():
            pred = predict_normalized(ck, net, series, scan.foreground)
            for m in ck.maps:
                scores[k][m].append(nrmse(pred[m], scan.reference[m], masks[m]))
    print(f"{ck_path}: {len(index.paths(split))} {split} scans, NRMSE against the reference (mean over scans)")
    print("| batch-norm statistics | " + " | ".join(ck.maps) + " |")
    print("|---|" + "---|" * len(ck.maps))
    for k, by_map in scores.items():
        print(f"| {k} | " + " | ".join(f"{np.mean(v):.4f}" for v in by_map.values()) + " |")


if __name__ == "__main__":
    main()
