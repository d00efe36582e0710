"""Where the T1H2O error of the study's networks lies: per ground-truth fat-fraction stratum of the
T1H2O evaluation mask (foreground ∧ reference FF < 0.65, paper section 2.3), the RMSE (ms) of each
method against the reference (dictionary matching: the training target) and against the truth,
the spread of both maps, and how far the reference itself is from the truth (the label noise the
networks were trained on). Pooled over the voxels of the test subjects. Then what the training
loss sees (training subjects, the shipped checkpoints' min–max map normalization): per map the
variance of the normalized target over the foreground — the loss a constant leaves — and the share
of T1H2O's that comes from voxels with reference FF ≥ 0.65, where the loss includes T1H2O but the
evaluation does not.

Run: ``.venv/bin/python docs/study/t1h2o_strata.py /work/study/cohort [name=checkpoint.pt ...]
> docs/study/t1h2o_strata.md`` (the study cohort: ``mrfrecon simulate --preset study --workers 2
--out <dir>``; the shipped checkpoints ``study-proposed`` and ``study-cohen2018``, and any further
checkpoint given as ``name=path``, e.g. one trained with ``--t1h2o-loss-mask evaluation``).
About 30 s on one core.
"""

import sys

import numpy as np
import torch

from mrfrecon.checkpoint import load_checkpoint
from mrfrecon.data import normalize_series
from mrfrecon.experiments.baselines import baseline_maps, constant_values
from mrfrecon.experiments.common import predict_normalized
from mrfrecon.io import CohortIndex, load_scan
from mrfrecon.metrics import masks_for, nrmse
from mrfrecon.shipped import resolve_checkpoint

EDGES = (0.0, 0.1, 0.3, 0.5, 1.01)  # ground-truth FF strata
SHIPPED = ("proposed", "cohen2018")
BASELINES = ("matching", "matching-box3", "constant")


def main(root: str, extra: dict[str, str]) -> None:
    torch.set_num_threads(1)
    index = CohortIndex.load(root)
    const = constant_values(index.paths("train"), "reference")
    cks = {n: load_checkpoint(resolve_checkpoint(f"shipped:study-{n}")) for n in SHIPPED}
    cks.update({n: load_checkpoint(path) for n, path in extra.items()})
    names = tuple(cks)
    methods = names + BASELINES
    nets = {n: ck.build_model("cpu") for n, ck in cks.items()}
    pooled: dict[tuple[str, str, int], list[np.ndarray]] = {}
    spread: dict[tuple[str, int], list[np.ndarray]] = {}
    whole: dict[tuple[str, str], list[float]] = {}
    ranges = []
    for p in index.paths("test"):
        scan = load_scan(p)
        series, _ = normalize_series(scan.series)
        with torch.inference_mode():
            pred = {n: predict_normalized(cks[n], nets[n], series, scan.foreground)["t1h2o"] for n in names}
        del series
        for b in ("matching", "matching-box3", "constant"):
            pred[b] = baseline_maps(b, scan, const)["t1h2o"]
        ref, gt, gt_ff = scan.reference["t1h2o"], scan.maps["t1h2o"], scan.maps["ff"]
        mask = masks_for(scan.reference["ff"], scan.foreground)["t1h2o"]
        ranges.append((float(np.ptp(ref[mask])), float(np.ptp(gt[mask]))))
        for m in methods:
            whole.setdefault((m, "reference"), []).append(nrmse(pred[m], ref, mask))
            whole.setdefault((m, "truth"), []).append(nrmse(pred[m], gt, mask))
        for k in range(len(EDGES) - 1):
            sel = mask & (gt_ff >= EDGES[k]) & (gt_ff < EDGES[k + 1])
            spread.setdefault(("reference", k), []).append(ref[sel])
            spread.setdefault(("truth", k), []).append(gt[sel])
            for m in methods:
                pooled.setdefault((m, "reference", k), []).append(pred[m][sel] - ref[sel])
                pooled.setdefault((m, "truth", k), []).append(pred[m][sel] - gt[sel])

    n_test = len(ranges)
    rr = np.array(ranges)
    print(f"# T1H2O error per fat-fraction stratum ({n_test} test subjects of {root})\n")
    print(f"Range (max − min) of T1H2O in the evaluation mask, the NRMSE's denominator (median over subjects): "
          f"reference {np.median(rr[:, 0]):.0f} ms, truth {np.median(rr[:, 1]):.0f} ms.\n")
    print("Whole mask, mean NRMSE over the test subjects:\n")
    print("| method | against the reference | against the truth |\n|---|---|---|")
    for m in methods:
        print(f"| {m} | {np.mean(whole[(m, 'reference')]):.4f} | {np.mean(whole[(m, 'truth')]):.4f} |")
    print("\nPer stratum of the true FF: voxels, SD of the maps, the reference's RMSE against the truth "
          "(label noise), and each method's RMSE (ms) against the reference / the truth:\n")
    head = ["true FF", "voxels", "SD truth", "SD reference", "reference vs truth"] + [f"{m} (ref / truth)" for m in methods]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for k in range(len(EDGES) - 1):
        t = np.concatenate(spread[("truth", k)])
        r = np.concatenate(spread[("reference", k)])
        if t.size == 0:
            continue
        cells = [f"{EDGES[k]:.1f}–{min(EDGES[k + 1], 1.0):.1f}", f"{t.size:,}", f"{t.std():.0f}", f"{r.std():.0f}",
                 f"{np.sqrt(np.mean((r - t) ** 2)):.0f}"]
        for m in methods:
            er = np.concatenate(pooled[(m, "reference", k)])
            et = np.concatenate(pooled[(m, "truth", k)])
            cells.append(f"{np.sqrt(np.mean(er ** 2)):.0f} / {np.sqrt(np.mean(et ** 2)):.0f}")
        print("| " + " | ".join(cells) + " |")
    loss_share(index, cks["proposed"].map_norm)


def loss_share(index: CohortIndex, norm) -> None:
    """Per map: normalization range, foreground variance of the normalized training target, and
    for T1H2O the part of its sum of squares in voxels with reference FF ≥ 0.65."""
    vals: dict[str, list[np.ndarray]] = {n: [] for n in norm.names}
    fat: list[np.ndarray] = []
    for p in index.paths("train"):
        scan = load_scan(p, series=False)
        fg = scan.foreground
        a = norm.normalize(scan.reference, fg)  # (slices, M, y, x)
        for i, n in enumerate(norm.names):
            vals[n].append(a[:, i][fg])
        fat.append(scan.reference["ff"][fg] >= 0.65)
    f = np.concatenate(fat)
    print(f"\nWhat the loss sees ({len(index.paths('train'))} training subjects, reference maps normalized by the "
          "shipped checkpoints' training range):\n")
    print("| map | normalization range | foreground variance (normalized) | share of the sum of squares in voxels with "
          "reference FF ≥ 0.65 | variance inside the T1H2O mask (FF < 0.65) |\n|---|---|---|---|---|")
    for n, lo, hi in zip(norm.names, norm.minimum, norm.maximum, strict=True):
        v = np.concatenate(vals[n]).astype(np.float64)
        ss = (v - v.mean()) ** 2
        print(f"| {n} | {lo:.4g}–{hi:.4g} | {v.var():.2e} | {ss[f].sum() / ss.sum():.0%} | {v[~f].var():.2e} |")
    print(f"\nVoxels with reference FF ≥ 0.65: {f.mean():.1%} of the training foreground.")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "/work/study/cohort", dict(a.split("=", 1) for a in args[1:]))
