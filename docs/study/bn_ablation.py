"""Batch-norm ablation of the study's networks: test NRMSE with and without batch normalization.

Each argument ``family/variant=checkpoint.pt`` names a trained network; within a family the
first variant is the one every later variant is compared with, per map, by a paired two-sided
Wilcoxon signed-rank test over the test subjects (scipy.stats.wilcoxon, exact for n ≤ 50).
Prints the mean test NRMSE (against the dictionary-matching reference, and against the
simulation's truth) per map, the number of subjects where the variant is better, and p.

``--split=train`` (first argument) scores the training subjects instead: does a network fit
T1H2O where it was trained (underfitting vs overfitting)?

Run (the study cohort, the comparison's seed-0 runs and the ablation runs of docs/RESULTS.md):
``OMP_NUM_THREADS=1 .venv/bin/python docs/study/bn_ablation.py <cohort> balsiger2018/BN=<run>/checkpoint_best.pt
balsiger2018/no-BN=<run>/checkpoint_best.pt ... > docs/study/bn_ablation.md``. About 10 s per network
on one core.
"""

import sys

import numpy as np
import torch
from scipy.stats import wilcoxon

from mrfrecon.checkpoint import load_checkpoint
from mrfrecon.data import normalize_series
from mrfrecon.experiments.baselines import baseline_maps, constant_values
from mrfrecon.experiments.common import predict_normalized
from mrfrecon.io import CohortIndex, load_scan
from mrfrecon.metrics import masks_for, nrmse
from mrfrecon.shipped import resolve_checkpoint

MAPS = ("t1h2o", "ff", "b1")
AGAINST = ("reference", "truth")


def per_subject(index: CohortIndex, nets: dict[str, str], split: str = "test") -> dict[str, np.ndarray]:
    """name → (subjects, maps, 2) NRMSE on ``split`` against the reference and the truth; the
    constant baseline (training mean) is added as ``constant``."""
    cks = {n: load_checkpoint(resolve_checkpoint(p)) for n, p in nets.items()}
    models = {n: ck.build_model("cpu") for n, ck in cks.items()}
    const = constant_values(index.paths("train"), "reference")
    out: dict[str, list[list[list[float]]]] = {n: [] for n in [*nets, "constant"]}
    for p in index.paths(split):
        scan = load_scan(p)
        series, _ = normalize_series(scan.series)
        masks = masks_for(scan.reference["ff"], scan.foreground)
        preds = {}
        with torch.inference_mode():
            for n in nets:
                preds[n] = predict_normalized(cks[n], models[n], series, scan.foreground)
        preds["constant"] = baseline_maps("constant", scan, const)
        for n, pred in preds.items():
            out[n].append([[nrmse(pred[m], scan.reference[m], masks[m]), nrmse(pred[m], scan.maps[m], masks[m])]
                           for m in MAPS])
    return {n: np.asarray(v) for n, v in out.items()}


def main(root: str, nets: dict[str, str], split: str = "test") -> None:
    torch.set_num_threads(1)
    index = CohortIndex.load(root)
    res = per_subject(index, nets, split)
    n_sub = len(index.paths(split))
    print(f"# Batch-norm ablation ({n_sub} {split} subjects of {root})\n")
    print(f"Mean {split} NRMSE over the subjects, against the reference / against the truth:\n")
    print("| network | " + " | ".join(f"{m} (ref / truth)" for m in MAPS) + " |\n|---|---|---|---|")
    for n, r in res.items():
        cells = [f"{r[:, i, 0].mean():.4f} / {r[:, i, 1].mean():.4f}" for i in range(len(MAPS))]
        print(f"| {n} | " + " | ".join(cells) + " |")
    families: dict[str, list[str]] = {}
    for n in nets:
        families.setdefault(n.split("/", 1)[0], []).append(n)
    print("\nEach variant against its family's first, paired over the subjects: subjects where the variant "
          "has the lower NRMSE, and the two-sided Wilcoxon p (uncorrected):\n")
    print("| variant | against | " + " | ".join(f"{m} vs {a}" for m in MAPS for a in AGAINST) + " |")
    print("|---|---|" + "---|" * (len(MAPS) * len(AGAINST)))
    for members in families.values():
        first = members[0]
        for n in members[1:]:
            cells = []
            for i in range(len(MAPS)):
                for j in range(len(AGAINST)):
                    a, b = res[n][:, i, j], res[first][:, i, j]
                    cells.append(f"{int((a < b).sum())}/{n_sub}, p {wilcoxon(a, b).pvalue:.2g}")
            print(f"| {n} | {first} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    split = "test"
    if args[:1] and args[0].startswith("--split="):
        split = args.pop(0).split("=", 1)[1]
    if len(args) < 2:
        sys.exit("usage: bn_ablation.py [--split=train|val|test] <cohort> family/variant=checkpoint.pt ...")
    main(args[0], dict(a.split("=", 1) for a in args[1:]), split)
