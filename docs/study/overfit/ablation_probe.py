"""The ablation behind docs/RESULTS.md "Why the proposed CNN did not learn T1H2O": one variant of a
network trained on a cohort's training split for a fixed number of steps, its NRMSE on those same
training scans (and the validation scans) every 100 steps, one JSON line each.

This is the research probe that found the causes (issue 20); the package's own tools then made
them options and tests (``mrfrecon train --head-init/--map-weights/--schedule``, ``mrfrecon
experiment overfit``). It is kept to reproduce the table in docs/study/overfit/ablation.md: the
probe's loop is the plain one (batch 8 patches, Adam, reshuffled passes, dropping a short last
batch), evaluation is :func:`mrfrecon.training.validation_nrmse`.

Run (the four-subject cohort of the table: the first 4 training, first validation and test subjects
of the study cohort, linked as ``mrfrecon experiment overfit`` links them)::

    OMP_NUM_THREADS=1 .venv/bin/python docs/study/overfit/ablation_probe.py COHORT NAME STEPS LR OUT.jsonl '{JSON}'

JSON keys: ``model`` (default proposed), model options (``head_batchnorm``, ``batchnorm``,
``receptive_field``, ...), ``init`` (``zero``: head weights 0 and bias/β at the target mean;
``scale``: head BN γ, β at the targets' SD and mean (or ×0.1 weights without one); ``calib`` /
``calib01``: :func:`mrfrecon.training.output_init.calibrate_output` with the targets' SD (×0.1)),
``schedule`` (``cos``: 50 warm-up steps then cosine to 0 over STEPS), ``maps`` (e.g. ["t1h2o"]),
``lossmask`` ("evaluation": T1H2O only where the target FF < 0.65), ``weighted`` (inverse-variance
map weights).
"""
import json
import math
import sys
import time

import numpy as np
import torch

from mrfrecon.data import PatchDataset, PatchGrid, masked_mse
from mrfrecon.data.loss import masked_mse_per_map
from mrfrecon.metrics import masks_for
from mrfrecon.models import build
from mrfrecon.training.data import load_training_data
from mrfrecon.training.loop import validation_nrmse
from mrfrecon.training.output_init import calibrate_output


def main() -> None:
    cohort, _name, steps, lr, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    opts = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    torch.set_num_threads(1)
    torch.manual_seed(0)
    maps = tuple(opts.pop("maps", ("t1h2o", "ff", "b1")))
    model, sched, batch = opts.pop("model", "proposed"), opts.pop("schedule", "const"), opts.pop("batch", 8)
    lossmask, weighted, init = opts.pop("lossmask", None), opts.pop("weighted", False), opts.pop("init", None)
    data = load_training_data(cohort, "reference", maps=maps)
    net = build(model, frames=data.frames, maps=len(maps), width=0.25, **opts)
    grid = PatchGrid((32, 32), int(net.margin))
    targets = [data.map_norm.normalize(s.target, s.foreground) for s in data.train]
    mm = None
    if lossmask:
        mm = [np.stack([masks_for(s.ff, s.foreground)[k] for k in maps], axis=1) for s in data.train]
    ds = PatchDataset([s.series for s in data.train], targets, [s.foreground for s in data.train], grid=grid,
                      map_masks=mm)
    if init:  # target mean / SD of each normalized map over the training foreground
        tm = np.array([np.mean([t[:, i][s.foreground].mean() for t, s in zip(targets, data.train)]) for i in range(len(maps))])
        ts = np.array([np.mean([t[:, i][s.foreground].std() for t, s in zip(targets, data.train)]) for i in range(len(maps))])
        conv = net.head[0]
        with torch.no_grad():
            if init in ("calib", "calib01"):
                idx = np.linspace(0, len(ds) - 1, 32).astype(int)
                xs, _, ms = zip(*(ds[int(i)] for i in idx))
                calibrate_output(net, torch.stack(xs), torch.stack(ms), torch.tensor(tm, dtype=torch.float32),
                                 torch.tensor(ts * (0.1 if init == "calib01" else 1.0), dtype=torch.float32))
            elif len(net.head) > 1:  # "zero" / "scale" with the head's batch norm
                if init == "zero":
                    conv.weight.zero_()
                net.head[1].weight.copy_(torch.tensor(ts, dtype=torch.float32))
                net.head[1].bias.copy_(torch.tensor(tm, dtype=torch.float32))
            else:
                conv.weight.mul_(0.0 if init == "zero" else 0.1)
                conv.bias.copy_(torch.tensor(tm, dtype=torch.float32))
    wts = None
    if weighted:
        if mm is not None:
            vs = [np.concatenate([t[:, i][k[:, i]] for t, k in zip(targets, mm)]).var() for i in range(len(maps))]
        else:
            vs = [np.concatenate([t[:, i][s.foreground] for t, s in zip(targets, data.train)]).var() for i in range(len(maps))]
        w = 1 / np.array(vs)
        wts = torch.tensor(w / w.mean(), dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    log = open(out, "w")
    t0 = time.time()

    def evaluate(step: int, loss: float | None) -> None:
        net.eval()
        tr = validation_nrmse(net, data.train, data.map_norm, torch.device("cpu"))
        va = validation_nrmse(net, data.val, data.map_norm, torch.device("cpu"))
        net.train()
        line = dict(step=step, loss=loss, **{f"tr_{k}": round(x, 4) for k, x in tr.items()},
                    **{f"va_{k}": round(x, 4) for k, x in va.items()}, t=round(time.time() - t0))
        print(json.dumps(line), file=log, flush=True)

    evaluate(0, None)
    step, losses = 0, []
    while step < steps:
        order = torch.randperm(len(ds), generator=gen).tolist()
        for i in range(0, len(order) - batch + 1, batch):
            xs, ys, ms = zip(*(ds[j] for j in order[i : i + batch]))
            x, y, m = torch.stack(xs), torch.stack(ys), torch.stack(ms)
            if sched == "cos":
                for g in opt.param_groups:
                    g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) if step > 50 else lr * step / 50
            pred = net(x)
            loss = masked_mse(pred, y, m) if wts is None else (masked_mse_per_map(pred, y, m) * wts).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 100 == 0:
                evaluate(step, float(np.mean(losses[-100:])))
            if step >= steps:
                break


if __name__ == "__main__":
    main()
