"""Experiment 1 (Balsiger et al., MIDL 2019, section 3.1, Table 1 and Figure 2): the proposed
CNN against Cohen et al. 2018, Fang et al. 2018 and Balsiger et al. 2018.

::

    from mrfrecon.experiments.compare import run_compare

    result = run_compare("results/compare", preset="study", target="both", jobs=2)
    # results/compare/report.md, table1_against_reference.{csv,md}, wilcoxon.{csv,md}, figure2_*.png, ...

In stages that can be run and resumed alone: the cohort (:func:`ensure_cohort`), the trainings
(:func:`train_stage`: every network × target × seed, reused by settings, ``jobs`` at once),
the predictions (:func:`predict_stage`), the baselines (:func:`baseline_stage`), then
evaluation, tables, tests and figures. Every network is trained on the training split with the
paper's scheme (:func:`mrfrecon.training.train`: Adam 1e-3, masked MSE, the model with the
lowest validation NRMSE kept; early stopping where the preset sets a patience) on the
dictionary-matching ``reference`` maps (as the paper) or the simulation's ``ground-truth`` maps
(``target``; ``"both"`` trains both ways), with several seeds. On the test split, each
network's maps are evaluated (:func:`mrfrecon.evaluation.evaluate`: NRMSE, PSNR, SSIM per scan
over its 3-D volume; R² of ROI means in the major muscles pooled over scans) against the
reference maps (what the paper could do) and the ground truth (what only simulation has),
beside the trivial baselines of :mod:`mrfrecon.experiments.baselines` (the constant, matching,
matching smoothed inside the foreground). Each Table 1 is one training target against one
kind of map: reference against reference (the paper's), ground truth against ground truth,
and reference-trained networks against the ground truth (what a clinic can train, judged by
the truth).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..assemble import COHORT_KIND
from ..figures import save_figure
from ..errors import MrfreconError
from ..evaluation import DEFAULT_ROIS, ROI_SETS, EvaluationResult, evaluate
from ..io.cohort import CohortIndex
from ..io.scan import load_scan
from ..metrics import METRICS
from .common import (MAPS, METHOD_NAMES, MODEL_ORDER, Log, Report, Stopwatch, ensure_cohort, fmt, map_label, no_bar, peak_rss_mb, predict_normalized, write_csv)
from .baselines import SMOOTHERS, baseline_maps, constant_values
from .runs import RunInfo, RunSpec, batchnorm_options, train_runs
from .stats import PairedTest, compare_to_best, min_wilcoxon_p

__all__ = ["CompareResult", "TARGET_CHOICES", "plot_figure2", "run_compare"]

TARGET_CHOICES = ("reference", "ground-truth", "both")
BATCHNORM_NOTE = {True: "as published (after every hidden ReLU of the patch and slice networks)",
                  False: "off in every network (a deviation from the papers, docs/RESULTS.md)"}
BASELINE_NAMES = {"constant": "Constant", "matching": "Dictionary matching", "matching-box3": "Matching, box 3×3",
                  "matching-box5": "Matching, box 5×5", "matching-median5": "Matching, median 5×5"}
_METRIC_NAMES = {"nrmse": "NRMSE", "psnr": "PSNR (dB)", "ssim": "SSIM", "r2_determination": f"R² ({DEFAULT_ROIS})",
                 "r2_regression": f"r² (regression, {DEFAULT_ROIS})"}
_HIGHER_BETTER = {"nrmse": False, "psnr": True, "ssim": True, "r2_determination": True, "r2_regression": True}


@dataclass
class CompareResult:
    """``runs``: the trained networks; ``evaluations``: (trained_on, method, seed, against) →
    :class:`~mrfrecon.evaluation.EvaluationResult` (baselines have seed −1; those made from the
    reference maps have trained_on ``"-"``); ``tables``: table stem → its Markdown;
    ``report``: path of report.md."""

    out: Path
    cohort: CohortIndex
    runs: list[RunInfo]
    evaluations: dict[tuple[str, str, int, str], EvaluationResult]
    tables: dict[str, str]
    report: Path
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)  # table stem → what it shows


@dataclass(frozen=True)
class CompareSettings:
    """What the comparison trains: the preset (cohort and training scheme), the target maps,
    the networks, the training seeds, overrides of the preset's epoch cap, width, patch and
    patience, and ``jobs`` training processes at once."""

    preset: str = "demo"
    targets: tuple[str, ...] = ("reference",)
    models: tuple[str, ...] = MODEL_ORDER
    seeds: tuple[int, ...] = (0,)
    epochs: int | None = None
    width: float | None = None
    patch: int | None = None
    patience: int | None = None
    jobs: int = 1
    batchnorm: bool = True  # False: every network without batch norm (runs.batchnorm_options)
    steps: int | None = None  # the budget in optimizer steps, the same for every network (presets with a step budget)
    augment: bool | None = None  # flips and quarter turns of the training samples (None: the preset's)


def run_specs(settings: CompareSettings, out: str | os.PathLike[str]) -> list[RunSpec]:
    """One run per target × network × seed, in ``out/runs/<target>/<model>/seed-<s>``."""
    return [RunSpec(f"{m} [{t}] s{s}", m, t, s, Path(out) / "runs" / t / m / f"seed-{s}",
                    batchnorm_options(m, settings.batchnorm))
            for t in settings.targets for m in settings.models for s in settings.seeds]


def train_stage(settings: CompareSettings, index: CohortIndex, out: str | os.PathLike[str], *, log: Log = print,
                progress: Callable[[int, str], Any] | None = None) -> list[RunInfo]:
    """Train (or reuse or resume) every run of the comparison (:func:`run_specs`)."""
    return train_runs(run_specs(settings, out), index, preset=settings.preset, jobs=settings.jobs, epochs=settings.epochs,
                      steps=settings.steps, width=settings.width, patch=settings.patch, patience=settings.patience,
                      augment=settings.augment, log=log, progress=progress)


def _targets(target: str) -> list[str]:
    if target not in TARGET_CHOICES:
        raise MrfreconError(f"target: expected one of {', '.join(TARGET_CHOICES)}, got {target!r}")
    return ["reference", "ground-truth"] if target == "both" else [target]


@dataclass(frozen=True)
class TableSpec:
    """One Table 1: networks trained on ``trained_on`` evaluated ``against`` the reference or the
    ground truth, with the baselines that apply."""

    trained_on: str
    against: str

    @property
    def stem(self) -> str:
        if self.trained_on == self.against:
            return f"table1_against_{self.against}"
        return f"table1_trained_on_{self.trained_on}_against_{self.against}"

    @property
    def title(self) -> str:
        what = {"reference": "the dictionary-matching reference maps", "ground-truth": "the simulation's ground truth"}
        return f"networks trained on the {self.trained_on} maps, evaluated against {what[self.against]}"

    def baselines(self) -> list[tuple[str, str]]:
        """(trained_on, method) of the baselines in this table: the constant of the training
        target, matching (not against the reference: it is the reference), smoothed matching."""
        out = [(self.trained_on, "constant")]
        if self.against != "reference":
            out.append(("-", "matching"))
        return out + [("-", m) for m in SMOOTHERS]


def _per_subject(evals: Sequence[EvaluationResult], m: str, metric: str) -> np.ndarray:
    """(seeds, subjects) values of a metric; subjects in the order of the first evaluation."""
    names = list(evals[0].per_scan)
    return np.array([[ev.per_scan[n][m][metric] for n in names] for ev in evals], dtype=np.float64)


def _cell_stats(evals: Sequence[EvaluationResult], m: str, metric: str) -> dict[str, float]:
    """Mean over test subjects per seed, then mean and SD (population, ddof 0) over seeds; the SD
    over subjects of the seed-averaged values. R² metrics: pooled ROI means per seed."""
    if metric in METRICS:
        v = _per_subject(evals, m, metric)
        with np.errstate(invalid="ignore"):
            per_seed = np.nanmean(np.where(np.isinf(v), np.nan, v), axis=1) if metric == "psnr" else np.nanmean(v, axis=1)
            subj = np.nanmean(v, axis=0)
        return {"mean": float(np.mean(per_seed)), "sd_seeds": float(np.std(per_seed)) if len(per_seed) > 1 else math.nan,
                "sd_subjects": float(np.nanstd(subj)), "n_seeds": len(evals), "n_subjects": v.shape[1]}
    r = np.array([ev.r2[m][metric] for ev in evals], dtype=np.float64)
    return {"mean": float(np.mean(r)), "sd_seeds": float(np.std(r)) if len(r) > 1 else math.nan, "sd_subjects": math.nan,
            "n_seeds": len(evals), "n_subjects": len(evals[0].per_scan)}


def _table1(groups: Mapping[str, Sequence[EvaluationResult]], tests: Mapping[str, dict[str, PairedTest]]
            ) -> tuple[list[dict[str, str]], list[str], list[dict[str, Any]], list[str]]:
    """Table 1: rows metric × map, a column per method (networks, then baselines). Cells: mean
    over test subjects (and over seeds) ± SD over seeds (networks with several seeds); the best
    of each row in bold; in NRMSE rows, ``≈`` marks a method whose per-subject NRMSE is not
    significantly different from the best's (Wilcoxon, Bonferroni, ``tests``)."""
    cols = list(groups)
    rows, crows = [], []
    for metric in (*METRICS, "r2_determination", "r2_regression"):
        for m in MAPS:
            st = {c: _cell_stats(groups[c], m, metric) for c in cols}
            fin = [c for c in cols if np.isfinite(st[c]["mean"])]
            best = (max if _HIGHER_BETTER[metric] else min)(fin, key=lambda c: st[c]["mean"]) if fin else None
            row = {"metric": _METRIC_NAMES[metric], "map": map_label(m, unit=False)}
            crow: dict[str, Any] = {"metric": metric, "map": m}
            for c in cols:
                x = st[c]
                cell = fmt(x["mean"]) + (f" ± {fmt(x['sd_seeds'], 2)}" if np.isfinite(x["sd_seeds"]) else "")
                t = tests.get(m, {}).get(c) if metric == "nrmse" else None
                if c == best:
                    cell = f"**{cell}**"
                elif t is not None and not t.significant and np.isfinite(t.p_corrected):
                    cell = f"≈ {cell}"
                row[c] = cell
                crow.update({f"{c} mean": f"{x['mean']:.6g}", f"{c} sd over seeds": f"{x['sd_seeds']:.6g}",
                             f"{c} sd over subjects": f"{x['sd_subjects']:.6g}", f"{c} seeds": x["n_seeds"]})
            rows.append(row)
            crows.append(crow)
    ccols = ["metric", "map"] + [f"{c} {s}" for c in cols for s in ("mean", "sd over seeds", "sd over subjects", "seeds")]
    return rows, ["metric", "map", *cols], crows, ccols


def _wilcoxon(groups: Mapping[str, Sequence[EvaluationResult]]) -> dict[str, dict[str, PairedTest]]:
    """Per map: every method's per-subject NRMSE (networks: averaged over seeds) against the best
    method's (lowest median), two-sided paired Wilcoxon signed-rank, Bonferroni over the
    comparisons (:func:`mrfrecon.experiments.stats.compare_to_best`)."""
    out: dict[str, dict[str, PairedTest]] = {}
    for m in MAPS:
        samples = {c: np.nanmean(_per_subject(evs, m, "nrmse"), axis=0) for c, evs in groups.items()}
        out[m] = {t.label: t for t in compare_to_best(samples, lower_is_better=True)}
    return out


def plot_figure2(path: str | os.PathLike[str], target_maps: dict[str, np.ndarray], target_name: str,
                 methods: dict[str, dict[str, np.ndarray]], foreground: np.ndarray, t1_mask: np.ndarray,
                 title: str = "") -> Path:
    """Figure 2 of the paper for one slice: the target maps (first column) and every method's
    maps (columns), each map's row followed by the error row (target − reconstruction, as the
    paper). ``target_maps``/``methods[name]``: map → (y, x) in physical units; ``foreground``,
    ``t1_mask`` (foreground ∧ FF < 0.65): bool (y, x). One colour scale per map row (1st–99th
    percentile of the target in its evaluation mask) and per error row (symmetric: the median over
    methods of their 99th percentile of |error|); T1H2O errors are shown inside its evaluation
    mask only. Cropped to the foreground's bounding box. Colour bars carry the units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if foreground.any():  # crop to the foreground's bounding box (+2 pixels): the anatomy, larger
        rows, cols = np.flatnonzero(foreground.any(1)), np.flatnonzero(foreground.any(0))
        box = (slice(max(rows[0] - 2, 0), rows[-1] + 3), slice(max(cols[0] - 2, 0), cols[-1] + 3))
        foreground, t1_mask = foreground[box], t1_mask[box]
        target_maps = {m: v[box] for m, v in target_maps.items()}
        methods = {n: {m: v[box] for m, v in mp.items()} for n, mp in methods.items()}
    names = list(methods)
    ncols = 1 + len(names)
    aspect = foreground.shape[0] / max(foreground.shape[1], 1)
    fig, axes = plt.subplots(2 * len(MAPS), ncols, figsize=(1.7 * ncols + 1.0, max(1.05, 1.7 * aspect) * 2 * len(MAPS) + 0.6),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("black")
        for s in ax.spines.values():
            s.set_visible(False)
    for i in range(len(MAPS)):  # no error map for the target itself
        axes[2 * i + 1, 0].set_facecolor("white")
    for i, m in enumerate(MAPS):
        mask = t1_mask if m == "t1h2o" else foreground
        ref = target_maps[m]
        vals = ref[mask] if mask.any() else ref[foreground]
        lo, hi = (np.percentile(vals, [1, 99]) if vals.size else (0.0, 1.0))
        hi = hi if hi > lo else lo + 1e-6
        errs = {n: np.where(mask, ref - methods[n][m], np.nan) for n in names}
        # one scale for the row: the median over methods of each one's 99th percentile of |error|,
        # so that one failed method does not wash out the others (larger errors saturate)
        spans = [float(np.percentile(np.abs(e[mask]), 99)) for e in errs.values()] if names and mask.any() else [1.0]
        span = float(np.median(spans)) or 1e-6
        r_val, r_err = axes[2 * i], axes[2 * i + 1]
        im = None
        for c, (label, maps) in enumerate([(target_name, target_maps), *[(METHOD_NAMES.get(n, n), methods[n]) for n in names]]):
            im = r_val[c].imshow(np.where(foreground, maps[m], np.nan), cmap="viridis", vmin=lo, vmax=hi,
                                 interpolation="nearest")
            if i == 0:
                r_val[c].set_title(label, fontsize=8)
        cb = fig.colorbar(im, ax=list(r_val), fraction=0.02, pad=0.01, aspect=12)
        cb.set_label(map_label(m), fontsize=7)
        cb.ax.tick_params(labelsize=6)
        r_val[0].set_ylabel(map_label(m, unit=False), fontsize=8)
        r_err[0].set_ylabel(f"{map_label(m, unit=False)} error\n({target_name.lower()}\n− method)", fontsize=6.5)
        ime = None
        for c, n in enumerate(names, start=1):
            ime = r_err[c].imshow(errs[n], cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest")
        if ime is not None:
            unit = {"t1h2o": " (ms)", "b1": " (a.u.)"}.get(m, "")
            cbe = fig.colorbar(ime, ax=list(r_err), fraction=0.02, pad=0.01, aspect=12)
            cbe.set_label(f"error{unit}", fontsize=7)
            cbe.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=80)


def predict_stage(runs: Sequence[RunInfo], test_paths: Sequence[Path], bar: Callable[[int, str], Any] = no_bar
                  ) -> tuple[dict[str, dict[str, dict[str, np.ndarray]]], dict[str, Any]]:
    """Every run's maps of every test scan: run name → scan stem → map → (slices, y, x) in
    physical units; each scan is loaded and normalized once for all networks. Also returns the
    data of Figure 2 (the middle slice of the first test scan)."""
    import torch

    from ..checkpoint import load_checkpoint
    from ..data import normalize_series
    from ..inference import check_compatible
    from ..runtime import default_device

    dev = default_device()
    cks = {r.name: load_checkpoint(r.checkpoint) for r in runs if r.ok}
    nets = {k: ck.build_model(dev) for k, ck in cks.items()}
    preds: dict[str, dict[str, dict[str, np.ndarray]]] = {k: {} for k in cks}
    fig: dict[str, Any] = {}
    with bar(len(test_paths), "predicting the test scans") as cb, torch.inference_mode():
        for i, p in enumerate(test_paths):
            scan = load_scan(p)
            for ck in cks.values():
                check_compatible(ck, scan, str(p))
            missing_ref = [m for m in MAPS if m not in scan.reference]
            if missing_ref:
                raise MrfreconError(f"{p}: no reference map(s) {', '.join(missing_ref)} (simulate with references)")
            series, _ = normalize_series(scan.series)
            scan.series = series[:0]  # drop the raw series (memory at paper scale)
            for k, ck in cks.items():
                preds[k][p.stem] = predict_normalized(ck, nets[k], series, scan.foreground, dev)
            del series
            if i == 0:
                z = scan.foreground.shape[0] // 2
                fig = {"name": p.stem, "z": z, "fg": scan.foreground[z].copy(), "attrs": scan.attrs,
                       "reference": {m: scan.reference[m][z].copy() for m in MAPS},
                       "ground-truth": {m: scan.maps[m][z].copy() for m in MAPS if m in scan.maps},
                       "pred": {k: {m: v[p.stem][m][z].copy() for m in MAPS} for k, v in preds.items()},
                       "scan": scan}
            cb(i + 1)
    return preds, fig


def baseline_stage(index: CohortIndex, targets: Sequence[str], test_paths: Sequence[Path],
                   from_reference: Sequence[str] = ("matching", *SMOOTHERS)
                   ) -> tuple[dict[tuple[str, str], dict[str, dict[str, np.ndarray]]], dict[str, dict[str, float]]]:
    """The baselines' maps of every test scan: (trained_on, baseline) → scan stem → maps; the
    constant per training target (its values returned too), and the baselines
    ``from_reference`` (trained_on ``"-"``) made from the reference maps."""
    consts = {t: constant_values(index.paths("train"), against=t) for t in targets}
    out: dict[tuple[str, str], dict[str, dict[str, np.ndarray]]] = {}
    for p in test_paths:
        scan = load_scan(p, series=False)
        for t in targets:
            out.setdefault((t, "constant"), {})[p.stem] = baseline_maps("constant", scan, consts[t])
        for b in from_reference:
            out.setdefault(("-", b), {})[p.stem] = baseline_maps(b, scan)
    return out, consts


def run_compare(
    out: str | os.PathLike[str],
    *,
    preset: str = "demo",
    cohort: str | os.PathLike[str] | None = None,
    target: str = "reference",
    seed: int = 0,
    seeds: int | None = None,
    epochs: int | None = None,
    subjects: int | None = None,
    width: float | None = None,
    patch: int | None = None,
    patience: int | None = None,
    models: Sequence[str] = MODEL_ORDER,
    steps: int | None = None,
    workers: int = 1,
    jobs: int = 1,
    batchnorm: bool = True,
    augment: bool | None = None,
    log: Log = print,
    progress: Callable[[int, str], Any] | None = None,
    title: str = "Experiment 1: comparison of reconstruction methods (paper section 3.1, Table 1, Figure 2)",
    extra_sections: Sequence[str] = (),
) -> CompareResult:
    """Run the comparison into the result folder ``out`` (see the module docstring).

    ``cohort``: a cohort folder, else the preset's cohort is simulated into ``out/cohort``
    (``subjects``, ``seed``, ``workers`` apply to the simulation); a cohort of real scans
    (``mrfrecon cohort create``) has no ground truth: ``target`` ``"ground-truth"`` or ``"both"``
    is refused before anything is trained or written. ``seeds``: training seeds per
    network (``seed``, ``seed + 1``, …; default the preset's ``seeds``, else 1). ``epochs``
    (the cap), ``steps`` (the budget in optimizer steps, the same for every network), ``width``,
    ``patch``, ``patience`` override the preset's training settings;
    ``jobs`` trainings run at once (processes of one torch thread each). ``batchnorm``: False
    trains every network without batch normalization (a deviation from the papers); ``augment``: flips
    and quarter turns of the training samples (None: the preset's). ``progress(total,
    description)``: a context manager yielding ``update(done)`` (e.g. the CLI's progress bar),
    for the simulation, the trainings and the prediction loop. ``extra_sections``: Markdown
    appended to the report.
    """
    from ..presets import load_preset

    targets = _targets(target)
    if "ground-truth" in targets and cohort is not None:  # before any training (train refuses it only when its turn comes)
        attrs = CohortIndex.load(cohort).attrs
        if attrs.get("kind") == COHORT_KIND and not attrs.get("ground_truth"):
            raise MrfreconError(f"{cohort}: target {target!r}: a cohort of real scans (made by `mrfrecon cohort create`) "
                                "has no ground truth to train on or evaluate against, only the reference maps of "
                                "dictionary matching; compare with --target reference")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in models if m not in MODEL_ORDER]
    if unknown or not models:
        raise MrfreconError(f"models: expected some of {', '.join(MODEL_ORDER)}, got {list(models)}")
    n_seeds = int(seeds if seeds is not None else load_preset(preset)["training"].get("seeds", 1))
    if n_seeds < 1:
        raise MrfreconError(f"seeds: expected >= 1, got {n_seeds}")
    if jobs < 1:
        raise MrfreconError(f"jobs: expected >= 1, got {jobs}")
    settings = CompareSettings(preset, tuple(targets), tuple(models), tuple(range(seed, seed + n_seeds)), epochs, width,
                               patch, patience, jobs, bool(batchnorm), steps, augment)
    sw = Stopwatch()
    bar = progress if progress is not None else no_bar

    with sw("cohort (simulate or load)"):
        index = ensure_cohort(cohort, out, preset=preset, seed=seed, subjects=subjects, workers=workers, log=log,
                              bar=bar)
    test_paths = index.paths("test")
    log(f"cohort {index.root}: train/val/test {len(index.split['train'])}/{len(index.split['val'])}/{len(test_paths)} scans")

    with sw("training"):
        runs = train_stage(settings, index, out, log=log, progress=progress)
    failed = [r for r in runs if not r.ok]
    if len(failed) == len(runs):
        raise MrfreconError(f"{out}: every training run diverged; see the runs' train.log")
    with sw("prediction (test split)"):
        preds, fig_scan = predict_stage(runs, test_paths, bar)
    with sw("baselines"):
        base, consts = baseline_stage(index, targets, test_paths)
    has_truth = all(m in fig_scan["scan"].maps for m in MAPS)

    # ---- evaluation: (trained_on, method, seed, against); baselines have seed -1
    against_list = ["reference"] + (["ground-truth"] if has_truth else [])
    evaluations: dict[tuple[str, str, int, str], EvaluationResult] = {}
    with sw("evaluation"):
        for a in against_list:
            for r in runs:
                if r.ok:
                    evaluations[(r.target, r.model, r.seed, a)] = evaluate(preds[r.name], test_paths, against=a, maps=MAPS,
                                                                           rois=DEFAULT_ROIS)
            for (t, b), pr in base.items():
                if not (b == "matching" and a == "reference"):
                    evaluations[(t, b, -1, a)] = evaluate(pr, test_paths, against=a, maps=MAPS, rois=DEFAULT_ROIS)

    # ---- tables: per (trained_on, against): networks (over seeds), then the baselines
    specs = [TableSpec(t, t) for t in targets if t in against_list]
    if "reference" in targets and has_truth:
        specs.append(TableSpec("reference", "ground-truth"))
    rep = Report(out, title)
    n_tr, n_va, n_te = (len(index.split[s]) for s in ("train", "val", "test"))
    rep.text(f"## Data\n\nCohort `{index.root}` ({index.attrs.get('preset', 'user')} preset"
             f"{', seed ' + str(index.attrs['seed']) if 'seed' in index.attrs else ''}): {n_tr}/{n_va}/{n_te} "
             f"training/validation/test subjects (paper: 55/20/20). Test scans: {', '.join(p.stem for p in test_paths)}. "
             "Metrics per scan over its 3-D volume (NRMSE and PSNR masked: T1H2O foreground ∧ FF < 0.65, FF and B1 "
             "the foreground; SSIM on whole background-zeroed slices); a cell is the mean over the test subjects, "
             f"averaged over the {n_seeds} training seed(s) of a network ± the SD over seeds (population). R² of "
             f"ROI means (ROI set `{DEFAULT_ROIS}`: {ROI_SETS[DEFAULT_ROIS][1]}) pooled over the test subjects — R² the "
             "coefficient of determination (as the paper), r² that of a linear regression. Best of each row in "
             "**bold** (networks and baselines alike); in NRMSE rows `≈` marks a method not significantly different "
             "from the best (paired two-sided Wilcoxon signed-rank over the test subjects, per-subject NRMSE averaged "
             "over seeds, Bonferroni over the row's comparisons, α = 0.05).\n\n"
             "Baselines: *constant* = the training split's mean of each target map everywhere in the foreground; "
             "*matching* = the dictionary-matching reference maps; *box 3×3*, *box 5×5* = the reference maps averaged "
             "inside the foreground; *median 5×5* = their median inside the foreground (edge-aware). Training-split "
             "means of the constant: " + "; ".join(f"{t}: " + ", ".join(f"{map_label(m)} {v:.4g}" for m, v in c.items())
                                                    for t, c in consts.items()) + ".")
    if failed:
        rep.text("**Diverged runs (left out of every table):** " + "; ".join(f"{r.name}: {r.message}" for r in failed))
    tables: dict[str, str] = {}
    wil_rows = []
    n_methods = 1
    # a network whose runs did not all meet the convergence criterion is marked in every table
    unconverged = {(r.target, r.model) for r in runs if r.ok and not r.converged}
    if unconverged:
        rep.text("**† not converged:** at least one training run of the network marked † did not meet the stated "
                 "criterion (the loss of a fixed set of training samples within 1 % over the last 10 % of its steps, "
                 "and the learning rate decayed or "
                 "early stopping on the smoothed validation ended it; `convergence.json` of each run): its numbers "
                 "are those of an unfinished training, not of its design.")
    for spec in specs:
        groups: dict[str, list[EvaluationResult]] = {}
        for m in models:
            evs = [evaluations[k] for k in sorted(evaluations) if k[0] == spec.trained_on and k[1] == m and k[3] == spec.against]
            if evs:
                groups[METHOD_NAMES[m] + (" †" if (spec.trained_on, m) in unconverged else "")] = evs
        for t, b in spec.baselines():
            if (t, b, -1, spec.against) in evaluations:
                groups[BASELINE_NAMES[b]] = [evaluations[(t, b, -1, spec.against)]]
        tests = _wilcoxon(groups)
        n_methods = max(n_methods, len(groups))
        rows, cols, crows, ccols = _table1(groups, tests)
        rep.text(f"## Table 1 — {spec.title}")
        _, mpath = rep.table(spec.stem, rows, cols, csv_rows=crows, csv_columns=ccols)
        tables[spec.stem] = mpath.read_text()
        for m, tt in tests.items():
            for t in tt.values():
                wil_rows.append({"table": spec.stem, "map": m, "method": t.label, "median NRMSE": fmt(t.median),
                                 "n": t.n, "best": "yes" if t.best else "", "W": fmt(t.statistic), "p": fmt(t.p, 3),
                                 "p (Bonferroni)": fmt(t.p_corrected, 3), "significant": "yes" if t.significant else "no",
                                 "note": t.note})
    n_cmp = max(1, n_methods - 1)  # Bonferroni: every method against the best of its row
    if not min_wilcoxon_p(n_te) * n_cmp < 0.05:
        rep.text(f"**This comparison cannot rank the methods:** with {n_te} test subject(s) the smallest p-value a paired "
                 f"signed-rank test can give is {min_wilcoxon_p(n_te):.2g} before the Bonferroni correction over "
                 f"{n_cmp} comparisons, so no difference in these tables can be significant. The study preset "
                 "(`mrfrecon experiment compare --preset study`, docs/RESULTS.md) is the scale that can.")
    rep.text(f"## Paired tests (NRMSE per test subject against the best method; the smallest p the exact test can give "
             f"with {n_te} subjects is {min_wilcoxon_p(n_te):.2g})")
    rep.table("wilcoxon", wil_rows, list(wil_rows[0]) if wil_rows else ["table"])

    # long-form summary and per-scan metrics
    srows, prows = [], []
    for (t, m, sd, a), ev in evaluations.items():
        for mp in MAPS:
            for metric in (*METRICS, "r2_determination", "r2_regression"):
                if metric in METRICS:
                    x = ev.summary[mp][metric]
                    mean, sdv, n = x.mean, x.sd, x.n
                else:
                    mean, sdv, n = ev.r2[mp][metric], math.nan, int(ev.r2[mp]["n_rois"])
                srows.append({"trained_on": t, "method": m, "seed": "" if sd < 0 else sd, "against": a, "map": mp,
                              "metric": metric, "mean": f"{mean:.6g}", "sd_subjects": f"{sdv:.6g}", "n": n,
                              "rois": ev.rois if metric.startswith("r2") else ""})
            for scan_name, per in ev.per_scan.items():
                prows.append({"trained_on": t, "method": m, "seed": "" if sd < 0 else sd, "against": a, "scan": scan_name,
                              "map": mp, **{k: f"{per[mp][k]:.6g}" for k in METRICS}})
    fsum = write_csv(out / "summary.csv", srows, ["trained_on", "method", "seed", "against", "map", "metric", "mean",
                                                  "sd_subjects", "n", "rois"])
    fper = write_csv(out / "per_scan.csv", prows, ["trained_on", "method", "seed", "against", "scan", "map", *METRICS])
    rep.text("All numbers, long form:")
    rep.link(fsum, "every method, seed, target and map: mean and SD over test subjects, R²")
    rep.link(fper, "per-scan NRMSE, PSNR, SSIM")
    rep.text("")

    figures: list[Path] = []
    first = {(r.target, r.model): r.name for r in reversed(runs) if r.ok}  # the lowest seed of each network
    with sw("figures"):
        for t in targets:
            tgt_name = "Reference" if t == "reference" else "Ground truth"
            tgt = fig_scan["reference"] if t == "reference" else fig_scan["ground-truth"]
            if len(tgt) < len(MAPS):
                continue
            methods = {m: fig_scan["pred"][first[(t, m)]] for m in models if (t, m) in first}
            if t == "ground-truth":
                methods["matching"] = fig_scan["reference"]
            a = fig_scan["attrs"]
            f = plot_figure2(out / f"figure2_trained_on_{t}.png", tgt, tgt_name, methods, fig_scan["fg"],
                             fig_scan["fg"] & (tgt["ff"] < 0.65),
                             title=f"test scan {fig_scan['name']} ({a.get('region', '')}, {a.get('condition', '')}), "
                                   f"slice {fig_scan['z']}; networks trained on the {t} maps (seed {seed})")
            figures.append(f)
            rep.text(f"## Figure 2 — networks trained on the {t} maps")
            rep.figure(f, f"T1H2O, FF and B1 of test scan {fig_scan['name']}, slice {fig_scan['z']}: {tgt_name.lower()} "
                          f"(first column), each method's reconstruction (training seed {seed}), and the error "
                          f"({tgt_name.lower()} − reconstruction); T1H2O errors shown where FF < 0.65.")

    trows = [{"run": r.name, "method": METHOD_NAMES[r.model], "trained on": r.target, "seed": r.seed,
              "parameters": f"{r.parameters:,}", "status": r.status, "steps trained": r.steps_done,
              "best step": r.best_step, "converged": ("yes" if r.converged else "NO") if r.ok else "-",
              "why": r.convergence if r.ok else r.message, "training s (all sessions)": f"{r.seconds_total:.0f}",
              "val NRMSE": fmt(r.val_nrmse), "checkpoint": rep.rel(r.checkpoint) if r.ok else "-"} for r in runs]
    rep.text("## Training runs\n\nEach network kept at its best validation NRMSE (mean over maps and validation "
             "scans); every network gets the same budget of optimizer steps and schedule, and stops early when the "
             "running median of its validation score has not improved for the preset's patience; `reused` "
             "runs were found in this folder with the same settings and not trained again. *converged*: the stated "
             "criterion (mrfrecon.training.stopping.assess_convergence).")
    rep.table("training", trows, list(trows[0]))
    rep.text("### Learning curves\n\nPer run: each map's NRMSE on up to four training scans and on the validation "
             "scans against optimizer steps, the training loss per map, and the learning rate.")
    for r in runs:
        curves = r.path / "learning_curves.png"
        if r.ok and curves.is_file():
            rep.figure(curves, f"{r.name}: learning curves ({'converged' if r.converged else 'NOT converged'}: "
                               f"{r.convergence})")
    for s_ in extra_sections:
        rep.text(s_)
    rs = next(r for r in runs if r.ok).settings
    settings_d = {"preset": preset, "target": target, "models": list(models), "cohort": str(index.root),
                  "seeds per network": n_seeds, "training jobs": jobs,
                  "batch normalization": BATCHNORM_NOTE[settings.batchnorm],
                  **{k: v for k, v in rs.items() if k not in ("model", "target", "model_options", "seed")},
                  "test subjects": len(test_paths), "ROIs for R²": f"{DEFAULT_ROIS}: {ROI_SETS[DEFAULT_ROIS][1]}"}
    seeds_d = {"training (model init, patch order)": ", ".join(str(x) for x in settings.seeds),
               "cohort": index.attrs.get("seed", "given cohort"),
               "per-subject simulation": "cohort seed → sub-<i> (cohort.json)"}
    report = rep.write(settings=settings_d, seeds=seeds_d, stopwatch=sw)
    log(f"wrote {report} (peak memory {peak_rss_mb():.0f} MiB)")
    return CompareResult(out, index, runs, evaluations, tables, report, figures, dict(sw.stages, total=sw.total),
                         {sp.stem: sp.title for sp in specs})
