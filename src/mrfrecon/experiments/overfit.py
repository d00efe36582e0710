"""The overfit test: can a network fit the scans it is trained on?

A network that cannot bring its own training scans' error well below the constant predictor's
has a defect in how it trains (architecture, initialization, normalization, optimizer), not a
generalization problem; comparing it with other networks on test scans says nothing about its
design. The test (issue 20 of this project): train on a few subjects long enough, then score
the same subjects; pass when the T1H2O NRMSE against the training target is ≤ ``ratio`` × the
constant predictor's (the training mean), as the MLP and the 5 × 5 CNN without batch norm do.

Each network is trained by :func:`mrfrecon.training.train` on a cohort index made of the first
``subjects`` training subjects of the given cohort (its scans linked, not copied; the validation
split is the cohort's first validation subject), with the preset's schedule over ``steps``
optimizer steps and no early stopping; the scores are NRMSE per map over each training scan's
volume with the paper's masks, averaged over the subjects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from ..io.cohort import CohortIndex
from .common import MAPS, METHOD_NAMES, Log, Report, fmt, map_label

__all__ = ["OverfitResult", "overfit_cohort", "overfit_scores", "run_overfit"]

#: The pass mark: the training scans' T1H2O NRMSE at most this fraction of the constant's.
PASS_RATIO = 0.5


def overfit_cohort(index: CohortIndex, out: str | os.PathLike[str], subjects: int) -> CohortIndex:
    """A cohort index in ``out`` with the first ``subjects`` training subjects of ``index`` and its
    first validation and test subject; the scans stay where they are (symbolic links)."""
    train = list(index.split["train"])[:subjects]
    if len(train) < subjects:
        raise MrfreconError(f"{index.root}: --subjects {subjects}: the cohort has only {len(train)} training subjects")
    if not index.split["val"]:
        raise MrfreconError(f"{index.root}: the validation split is empty")
    val, test = list(index.split["val"])[:1], list(index.split["test"])[:1]
    return index.linked_subset(out, {"train": train, "val": val, "test": test}, {"overfit_of": str(index.root.resolve())})


def overfit_scores(checkpoint: str | os.PathLike[str], index: CohortIndex, target: str = "reference",
                   split: str = "train") -> dict[str, float]:
    """Mean NRMSE per map of ``checkpoint`` over the ``split`` scans of ``index`` against their
    ``target`` maps (``"reference"`` or ``"ground-truth"``), the paper's masks."""
    from ..checkpoint import load_checkpoint
    from ..data import normalize_series
    from ..io.scan import load_scan
    from ..metrics import masks_for, nrmse
    from .common import predict_normalized

    from ..shipped import resolve_checkpoint

    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    net = ck.build_model("cpu")
    out: dict[str, list[float]] = {m: [] for m in ck.maps}
    for p in index.paths(split):
        scan = load_scan(p)
        maps = scan.reference if target == "reference" else scan.maps
        series, _ = normalize_series(scan.series)
        pred = predict_normalized(ck, net, series, scan.foreground)
        masks = masks_for(maps["ff"], scan.foreground)
        for m in ck.maps:
            out[m].append(nrmse(pred[m], maps[m], masks[m]))
    return {m: float(np.mean(v)) for m, v in out.items()}


def _constant_scores(index: CohortIndex, target: str) -> dict[str, float]:
    from ..io.scan import load_scan
    from ..metrics import masks_for, nrmse
    from .baselines import baseline_maps, constant_values

    const = constant_values(index.paths("train"), target)
    out: dict[str, list[float]] = {m: [] for m in MAPS}
    for p in index.paths("train"):
        scan = load_scan(p, series=False)
        maps = scan.reference if target == "reference" else scan.maps
        pred = baseline_maps("constant", scan, const)
        masks = masks_for(maps["ff"], scan.foreground)
        for m in MAPS:
            out[m].append(nrmse(pred[m], maps[m], masks[m]))
    return {m: float(np.mean(v)) for m, v in out.items()}


@dataclass
class OverfitResult:
    """Per network: the training scans' NRMSE per map, the constant's, the verdict, the run folder."""

    out: Path
    scores: dict[str, dict[str, float]]
    constant: dict[str, float]
    passed: dict[str, bool]
    runs: dict[str, Path]
    report: Path


def run_overfit(out: str | os.PathLike[str], *, cohort: str | os.PathLike[str], models: Sequence[str],
                subjects: int = 4, steps: int | None = None, preset: str = "study", seed: int = 0,
                target: str = "reference", schedule: str | None = None, lr: float | None = None,
                head_init: str | None = None, map_weights: str | None = None, t1h2o_loss_mask: str | None = None,
                model_options: Mapping[str, Mapping[str, Any]] | None = None, log: Log = print) -> OverfitResult:
    """Train each of ``models`` on the first ``subjects`` training subjects of ``cohort`` for
    ``steps`` optimizer steps (default: the preset's budget) with the preset's scheme (or
    ``schedule``, ``lr``, ``head_init``, ``map_weights``, ``t1h2o_loss_mask``), patience off; score the same subjects; write ``report.md`` in ``out``.
    ``model_options``: per model name, options for :func:`mrfrecon.models.build` (a name may
    carry a suffix ``name:variant`` to train the same network twice with different options)."""
    from ..presets import load_preset
    from ..training import train

    out = Path(out)
    index = CohortIndex.load(cohort)
    sub = overfit_cohort(index, out / "cohort", subjects)
    const = _constant_scores(sub, target)
    tgt = "reference" if target == "reference" else "ground-truth"
    scores: dict[str, dict[str, float]] = {}
    runs: dict[str, Path] = {}
    for name in models:
        model = name.split(":", 1)[0]
        run_dir = out / "runs" / name.replace(":", "-")
        opts = dict((model_options or {}).get(name, {}))
        if (run_dir / "checkpoint_last.pt").is_file() and not (run_dir / "convergence.json").is_file():
            resume = True  # an interrupted run
        elif (run_dir / "convergence.json").is_file():
            import json

            done = json.loads((run_dir / "convergence.json").read_text())
            resume = done.get("steps", 0) < done.get("budget", 0)
        else:
            resume = False
        if not resume and (run_dir / "checkpoint_best.pt").is_file():
            log(f"{name}: reusing {run_dir}")
        else:
            # ten evaluations per run where the preset sets none (an epoch of a few subjects is a few steps)
            every = None if "eval_every" in load_preset(preset)["training"] or steps is None else max(1, steps // 10)
            train(model, sub.root, run_dir, preset=preset, target=tgt, seed=seed, steps=steps, schedule=schedule, lr=lr,
                  eval_every=every,
                  head_init=head_init, map_weights=map_weights, t1h2o_loss_mask=t1h2o_loss_mask, patience=0,
                  model_options=opts, resume=resume, log=lambda m, n=name: log(f"{n}: {m}"))
        runs[name] = run_dir
        scores[name] = overfit_scores(run_dir / "checkpoint_last.pt", sub, target)
        log(f"{name}: training-scan NRMSE " + ", ".join(f"{m} {v:.4f}" for m, v in scores[name].items())
            + f" (constant: T1H2O {const['t1h2o']:.4f})")
    passed = {n: s["t1h2o"] <= PASS_RATIO * const["t1h2o"] for n, s in scores.items()}
    rep = Report(out, "The overfit test")
    rep.text(f"Each network trained on {subjects} training subjects of `{index.root}` "
             f"({', '.join(sub.split['train'])}), then scored on the same subjects against their {target} maps "
             f"(the last checkpoint; NRMSE per map with the paper's masks, mean over the subjects). Pass: T1H2O NRMSE "
             f"≤ {PASS_RATIO} × the constant predictor's (the training mean).")
    rows = [{"network": n, **{f"{map_label(m, False)} NRMSE": fmt(s[m]) for m in MAPS},
             "T1H2O ÷ constant": f"{s['t1h2o'] / const['t1h2o']:.2f}", "pass": "yes" if passed[n] else "NO"}
            for n, s in scores.items()]
    rows.append({"network": "constant (training mean)", **{f"{map_label(m, False)} NRMSE": fmt(const[m]) for m in MAPS},
                 "T1H2O ÷ constant": "1.00", "pass": ""})
    rep.table("overfit", rows, list(rows[0]))
    for n, d in runs.items():
        if (d / "learning_curves.png").is_file():
            rep.figure(d / "learning_curves.png", f"{METHOD_NAMES.get(n.split(':')[0], n)} ({n}): learning curves")
    report = rep.write(settings={"preset": preset, "cohort": str(index.root), "subjects": subjects,
                                 "steps": steps if steps is not None else "the preset's", "schedule": schedule or "the preset's",
                                 "lr": lr if lr is not None else "the preset's", "seed": seed, "target": target,
                                 "head init": head_init or "the preset's", "map weights": map_weights or "the preset's",
                                 "T1H2O loss mask": t1h2o_loss_mask or "the preset's",
                                 "model options": {k: dict(v) for k, v in (model_options or {}).items()}},
                       seeds={"training (model init, patch order)": seed})
    log(f"wrote {report}")
    return OverfitResult(out, scores, const, passed, runs, report)
