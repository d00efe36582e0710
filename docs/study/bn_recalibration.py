"""Are the study networks' batch-norm running statistics what holds their T1H2O at the constant?

The networks normalize with TensorFlow's running-average decay 0.99 (PyTorch momentum 0.01, as the
authors' code, ``mrfrecon.models.layers``): at evaluation each BN uses an exponential average of
the batch statistics of the last ~100 optimizer steps, taken while the weights before it were
still moving. This script measures what that costs: for each checkpoint, the test NRMSE per map
(mean over the test subjects, against the reference and against the truth) with the stored
running statistics, and again after *recalibrating* them — the exact mean and variance of every
BN's input over all training patches at the final weights (momentum None: a cumulative average
over the same batches of 8 that training used, weights unchanged), a standard remedy (Ioffe &
Szegedy 2015, section 3.1: inference uses population statistics; Izmailov et al. 2018, SWA,
recompute them after changing the weights). If recalibration closes the gap to Cohen et al.'s
fingerprint network (which has no BN), the running statistics are the cause; if not, the batch
statistics seen *during* training are the remaining suspect, and the script measures how much
they jitter from batch to batch.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python docs/study/bn_recalibration.py <study cohort>
[name=checkpoint.pt ...] > docs/study/bn_recalibration.md`` (default checkpoints: the shipped
``study-proposed`` and ``study-balsiger2018``). About 2 min per checkpoint on one core, ≈ 5 GB
(the 40 training scans in memory).
"""

import sys
import time

import numpy as np
import torch
from torch import nn

from mrfrecon.checkpoint import load_checkpoint
from mrfrecon.data import PatchDataset, normalize_series
from mrfrecon.data.patches import PatchGrid
from mrfrecon.experiments.baselines import baseline_maps, constant_values
from mrfrecon.experiments.common import predict_normalized
from mrfrecon.io import CohortIndex, load_scan
from mrfrecon.metrics import masks_for, nrmse
from mrfrecon.shipped import resolve_checkpoint
from mrfrecon.training.data import load_training_data

MAPS = ("t1h2o", "ff", "b1")
BATCH = 8  # the study preset's batch size: the batch statistics recalibration averages


def test_nrmse(index: CohortIndex, predict) -> dict[tuple[str, str], float]:
    """Mean NRMSE over the test subjects per (map, against) of the maps ``predict(scan, series)``."""
    out: dict[tuple[str, str], list[float]] = {}
    for p in index.paths("test"):
        scan = load_scan(p)
        series, _ = normalize_series(scan.series)
        pred = predict(scan, series)
        masks = masks_for(scan.reference["ff"], scan.foreground)
        for m in MAPS:
            out.setdefault((m, "reference"), []).append(nrmse(pred[m], scan.reference[m], masks[m]))
            out.setdefault((m, "truth"), []).append(nrmse(pred[m], scan.maps[m], masks[m]))
    return {k: float(np.mean(v)) for k, v in out.items()}


@torch.no_grad()
def recalibrate(net: nn.Module, dataset: PatchDataset) -> tuple[int, list[float], tuple[list[float], list[float]]]:
    """Replace every BN's running mean and variance by its input's mean and (unbiased) variance
    averaged over all training batches, the weights unchanged. Returns the number of batches and,
    per BN layer (in order), the *jitter* of its batch statistics: the median over channels of
    the SD over batches of the batch mean, in units of the channel's pooled SD — how far a
    voxel's normalized feature moves with the other patches that share its batch; and per map the
    SD over batches of the batch mean of the training-mode output and of the (normalized) target."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    means: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(bns))}
    sq: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(bns))}

    def hook(i: int):
        def f(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            x = inp[0].double()
            means[i].append(x.mean(dim=(0, 2, 3)))
            sq[i].append((x * x).mean(dim=(0, 2, 3)))
        return f

    handles = [bn.register_forward_pre_hook(hook(i)) for i, bn in enumerate(bns)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    net.train()
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=False)
    n = 0
    out_means, tgt_means = [], []
    for x, y, _ in loader:
        out_means.append(net(x).double().mean(dim=(0, 2, 3)))
        tgt_means.append(y.double().mean(dim=(0, 2, 3)))
        n += 1
    net.eval()
    for h in handles:
        h.remove()
    # a linear head after a BN gives a batch mean fixed by the BN's shift whatever the batch holds:
    # SD over batches of each map's batch mean, the network's (training mode) against the target's
    pinned = (torch.stack(out_means).std(0).tolist(), torch.stack(tgt_means).std(0).tolist())
    jitter = []
    for i in range(len(bns)):
        m, q = torch.stack(means[i]), torch.stack(sq[i])  # (batches, channels)
        pooled_sd = (q.mean(0) - m.mean(0) ** 2).clamp_min(1e-12).sqrt()
        live = pooled_sd > 1e-6  # dead ReLU channels carry nothing
        jitter.append(float((m.std(0)[live] / pooled_sd[live]).median()) if live.any() else float("nan"))
    return n, jitter, pinned


def main(root: str, extra: dict[str, str]) -> None:
    torch.set_num_threads(1)
    index = CohortIndex.load(root)
    cks = {f"shipped {n}": f"shipped:study-{n}" for n in ("proposed", "balsiger2018")} if not extra else extra
    data = load_training_data(root, "reference")
    rows = []
    jitters: dict[str, list[float]] = {}
    pins: dict[str, tuple[list[float], list[float]]] = {}
    const = constant_values(index.paths("train"), "reference")
    base = test_nrmse(index, lambda scan, _s: baseline_maps("constant", scan, const))
    rows.append(("constant (training mean)", "—", base))
    for name, path in cks.items():
        ck = load_checkpoint(resolve_checkpoint(path))
        net = ck.build_model("cpu")
        grid = PatchGrid((net.output_size or 32,) * 2, int(net.margin))
        targets = [ck.map_norm.normalize(s.target, s.foreground) for s in data.train]
        dataset = PatchDataset([s.series for s in data.train], targets, [s.foreground for s in data.train], grid=grid)

        def predict(scan, series, ck=ck, net=net):
            with torch.inference_mode():
                return predict_normalized(ck, net, series, scan.foreground)

        t0 = time.perf_counter()
        rows.append((f"{name}: stored running statistics", "—", test_nrmse(index, predict)))
        batches, jit, pin = recalibrate(net, dataset)
        pins[name] = pin
        rows.append((f"{name}: recalibrated", f"{batches} batches, {time.perf_counter() - t0:.0f} s",
                     test_nrmse(index, predict)))
        jitters[name] = jit
    print(f"# Batch-norm running statistics: stored vs recalibrated ({len(index.paths('test'))} test subjects of {root})\n")
    print("Mean test NRMSE over the subjects, against the reference / against the truth:\n")
    print("| checkpoint | note | " + " | ".join(f"{m} (ref / truth)" for m in MAPS) + " |\n|---|---|---|---|---|")
    for label, note, r in rows:
        cells = [f"{r[(m, 'reference')]:.4f} / {r[(m, 'truth')]:.4f}" for m in MAPS]
        print(f"| {label} | {note} | " + " | ".join(cells) + " |")
    print("\nJitter of the batch statistics during training (batches of 8 training patches, final weights): per BN "
          "layer, the median over its channels of SD(batch mean) / pooled SD — the shift a voxel's normalized "
          "feature gets from the other patches in its batch:\n")
    print("| checkpoint | BN layers | first | median | last | max |\n|---|---|---|---|---|---|")
    for name, jit in jitters.items():
        j = np.asarray(jit)
        print(f"| {name} | {j.size} | {j[0]:.3f} | {np.nanmedian(j):.3f} | {j[-1]:.3f} | {np.nanmax(j):.3f} |")
    print("\nThe output's batch mean in training mode: SD over the training batches of each map's mean over the "
          "batch (all voxels, normalized units), the network's against the target's — a linear head after a batch "
          "norm pins it:\n")
    print("| checkpoint | " + " | ".join(f"{m}: network / target" for m in MAPS) + " |\n|---|---|---|---|")
    for name, (o, t) in pins.items():
        print(f"| {name} | " + " | ".join(f"{a:.2e} / {b:.2e}" for a, b in zip(o, t, strict=True)) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "/work/study/cohort", dict(a.split("=", 1) for a in args[1:]))
