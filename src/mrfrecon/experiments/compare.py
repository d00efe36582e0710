"""Experiment 1 (Balsiger et al., MIDL 2019, section 3.1, Table 1 and Figure 2): the proposed
CNN against Cohen et al. 2018, Fang et al. 2018 and Balsiger et al. 2018.

::

    from mrfrecon.experiments.compare import run_compare

    result = run_compare("results/compare", preset="demo", target="reference")
    # results/compare/report.md, table1_against_reference.{csv,md}, figure2_trained_on_reference.png, ...

Every network is trained on the training split with the paper's scheme
(:func:`mrfrecon.training.train`: Adam 1e-3, masked MSE, the model with the lowest validation
NRMSE kept) on the dictionary-matching ``reference`` maps (as the paper) or the simulation's
``ground-truth`` maps (``target``; ``"both"`` trains both ways). On the test split, each
network's maps are evaluated (:func:`mrfrecon.evaluation.evaluate`: NRMSE, PSNR, SSIM per scan
over its 3-D volume, mean ± SD over scans; R² of ROI means in the major muscles pooled over
scans) twice: against the reference maps (what the paper could do) and against the ground
truth (what only simulation has). Dictionary matching itself (the reference maps) is evaluated
against the ground truth as a fifth method.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..figures import save_figure
from ..errors import MrfreconError
from ..evaluation import EvaluationResult, evaluate
from ..io.cohort import CohortIndex
from ..io.scan import load_scan
from ..metrics import METRICS
from .common import (MAPS, METHOD_NAMES, MODEL_ORDER, Log, Report, RunInfo, Stopwatch, ensure_cohort, fmt, is_muscle,
                     map_label, no_bar, peak_rss_mb, predict_normalized, train_or_reuse, write_csv)

__all__ = ["CompareResult", "TARGET_CHOICES", "plot_figure2", "run_compare"]

TARGET_CHOICES = ("reference", "ground-truth", "both")
_METRIC_NAMES = {"nrmse": "NRMSE", "psnr": "PSNR (dB)", "ssim": "SSIM", "r2_determination": "R²",
                 "r2_regression": "r² (regression)"}
_HIGHER_BETTER = {"nrmse": False, "psnr": True, "ssim": True, "r2_determination": True, "r2_regression": True}


@dataclass
class CompareResult:
    """``runs``: the trained networks; ``evaluations``: (trained_on, method, against) →
    :class:`~mrfrecon.evaluation.EvaluationResult` (method ``"matching"`` has trained_on
    ``"-"``); ``tables``: against → the Markdown of Table 1; ``report``: path of report.md."""

    out: Path
    cohort: CohortIndex
    runs: list[RunInfo]
    evaluations: dict[tuple[str, str, str], EvaluationResult]
    tables: dict[str, str]
    report: Path
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _targets(target: str) -> list[str]:
    if target not in TARGET_CHOICES:
        raise MrfreconError(f"target: expected one of {', '.join(TARGET_CHOICES)}, got {target!r}")
    return ["reference", "ground-truth"] if target == "both" else [target]


def _column(trained_on: str, method: str, both: bool) -> str:
    name = METHOD_NAMES.get(method, method)
    if method == "matching" or not both:
        return name
    return f"{name} [{'ref' if trained_on == 'reference' else 'GT'}]"


def _value(ev: EvaluationResult, m: str, metric: str) -> tuple[float, float]:
    if metric in METRICS:
        s = ev.summary[m][metric]
        return s.mean, s.sd
    return ev.r2[m][metric], float("nan")


def _table1(evaluations: dict[tuple[str, str, str], EvaluationResult], against: str, both: bool
            ) -> tuple[list[dict[str, str]], list[str], list[dict[str, Any]], list[str]]:
    """Table 1 for one ``against``: rows metric × map, a column per method; the best network of
    each row in bold (matching is not ranked). Returns (md rows, md columns, csv rows, csv columns)."""
    keys = [k for k in evaluations if k[2] == against]
    cols = [_column(t, m, both) for t, m, _ in keys]
    rows, crows = [], []
    for metric in (*METRICS, "r2_determination", "r2_regression"):
        for m in MAPS:
            vals = {c: _value(evaluations[k], m, metric) for c, k in zip(cols, keys, strict=True)}
            nets = [c for c, k in zip(cols, keys, strict=True) if k[1] != "matching" and np.isfinite(vals[c][0])]
            best = None
            if nets:
                best = (max if _HIGHER_BETTER[metric] else min)(nets, key=lambda c: vals[c][0])
            row = {"metric": _METRIC_NAMES[metric], "map": map_label(m, unit=False)}
            crow: dict[str, Any] = {"metric": metric, "map": m}
            for c in cols:
                mean, sd = vals[c]
                cell = fmt(mean) + (f" ± {fmt(sd, 2)}" if metric in METRICS else "")
                row[c] = f"**{cell}**" if c == best else cell
                crow[f"{c} mean"] = f"{mean:.6g}"
                crow[f"{c} sd"] = f"{sd:.6g}" if metric in METRICS else ""
            rows.append(row)
            crows.append(crow)
    ccols = ["metric", "map"] + [f"{c} {s}" for c in cols for s in ("mean", "sd")]
    return rows, ["metric", "map", *cols], crows, ccols


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


def run_compare(
    out: str | os.PathLike[str],
    *,
    preset: str = "demo",
    cohort: str | os.PathLike[str] | None = None,
    target: str = "reference",
    seed: int = 0,
    epochs: int | None = None,
    subjects: int | None = None,
    width: float | None = None,
    patch: int | None = None,
    models: Sequence[str] = MODEL_ORDER,
    workers: int = 1,
    log: Log = print,
    show_progress: bool | None = None,
    progress: Callable[[int, str], Any] | None = None,
    title: str = "Experiment 1: comparison of reconstruction methods (paper section 3.1, Table 1, Figure 2)",
    extra_sections: Sequence[str] = (),
) -> CompareResult:
    """Run the comparison into the result folder ``out`` (see the module docstring).

    ``cohort``: a cohort folder, else the preset's cohort is simulated into ``out/cohort``
    (``subjects``, ``seed``, ``workers`` apply to the simulation). ``epochs``, ``width``,
    ``patch`` override the preset's training settings. ``progress(total, description)``: a
    context manager yielding ``update(done)`` (e.g. :func:`mrfrecon.cli.progress`), for the
    simulation and the prediction loop. ``extra_sections``: Markdown appended to the report.
    """
    import torch

    from ..checkpoint import load_checkpoint
    from ..data import normalize_series
    from ..inference import check_compatible
    from ..runtime import default_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    targets = _targets(target)
    unknown = [m for m in models if m not in MODEL_ORDER]
    if unknown or not models:
        raise MrfreconError(f"models: expected some of {', '.join(MODEL_ORDER)}, got {list(models)}")
    sw = Stopwatch()
    bar = progress if progress is not None else no_bar

    with sw("cohort (simulate or load)"):
        index = ensure_cohort(cohort, out, preset=preset, seed=seed, subjects=subjects, workers=workers, log=log,
                              bar=bar)
    test_paths = index.paths("test")
    log(f"cohort {index.root}: train/val/test {len(index.split['train'])}/{len(index.split['val'])}/{len(test_paths)} scans")

    runs: list[RunInfo] = []
    for t in targets:
        with sw(f"training (target {t})"):
            for m in models:
                runs.append(train_or_reuse(f"{m} [{t}]", m, index, out / "runs" / t / m, preset=preset, target=t, seed=seed,
                                           epochs=epochs, width=width, patch=patch, log=log, show_progress=show_progress))

    # ---- predictions: each test scan loaded and normalized once, then every network
    dev = default_device()
    cks = {(r.target, r.model): load_checkpoint(r.checkpoint) for r in runs}
    nets = {k: ck.build_model(dev) for k, ck in cks.items()}
    preds: dict[tuple[str, str], dict[str, dict[str, np.ndarray]]] = {k: {} for k in cks}
    matching: dict[str, dict[str, np.ndarray]] = {}
    has_truth = True
    fig_scan: dict[str, Any] = {}
    with sw("prediction (test split)"), bar(len(test_paths), "predicting the test scans") as cb, torch.inference_mode():
        for i, p in enumerate(test_paths):
            scan = load_scan(p)
            for ck in cks.values():
                check_compatible(ck, scan, str(p))
            series, _ = normalize_series(scan.series)
            scan.series = series[:0]  # drop the raw series (memory at paper scale)
            for k, ck in cks.items():
                preds[k][p.stem] = predict_normalized(ck, nets[k], series, scan.foreground, dev)
            del series
            missing_ref = [m for m in MAPS if m not in scan.reference]
            if missing_ref:
                raise MrfreconError(f"{p}: no reference map(s) {', '.join(missing_ref)} (simulate with references)")
            matching[p.stem] = {m: np.asarray(scan.reference[m], np.float32) for m in MAPS}
            has_truth = has_truth and all(m in scan.maps for m in MAPS)
            if i == 0:  # Figure 2: the middle slice of the first test scan
                z = scan.foreground.shape[0] // 2
                fig_scan = {"name": p.stem, "z": z, "fg": scan.foreground[z].copy(), "attrs": scan.attrs,
                            "reference": {m: scan.reference[m][z].copy() for m in MAPS},
                            "ground-truth": {m: scan.maps[m][z].copy() for m in MAPS if m in scan.maps},
                            "pred": {k: {m: v[p.stem][m][z].copy() for m in MAPS} for k, v in preds.items()}}
            cb(i + 1)
    del nets

    # ---- evaluation
    against_list = ["reference"] + (["ground-truth"] if has_truth else [])
    evaluations: dict[tuple[str, str, str], EvaluationResult] = {}
    with sw("evaluation"):
        for a in against_list:
            for (t, m), pr in preds.items():
                evaluations[(t, m, a)] = evaluate(pr, test_paths, against=a, maps=MAPS, roi_filter=is_muscle)
            if a == "ground-truth":
                evaluations[("-", "matching", a)] = evaluate(matching, test_paths, against=a, maps=MAPS, roi_filter=is_muscle)

    # ---- tables, figures, report
    both = len(targets) > 1
    rep = Report(out, title)
    n_tr, n_va, n_te = (len(index.split[s]) for s in ("train", "val", "test"))
    rep.text(f"## Data\n\nCohort `{index.root}` ({index.attrs.get('preset', 'user')} preset"
             f"{', seed ' + str(index.attrs['seed']) if 'seed' in index.attrs else ''}): {n_tr}/{n_va}/{n_te} "
             f"training/validation/test scans (paper: 55/20/20). Test scans: {', '.join(p.stem for p in test_paths)}. "
             "Metrics per scan over its 3-D volume (NRMSE and PSNR masked: T1H2O foreground ∧ FF < 0.65, FF and B1 "
             "the foreground; SSIM on whole background-zeroed slices), mean ± SD (population) over test scans; R² of "
             "ROI means in the major muscles (labels `left_*`/`right_*`) pooled over test scans — R² the coefficient "
             "of determination (as the paper), r² that of a linear regression. Best network per row in **bold**."
             + (" Networks trained on reference maps are marked [ref], on ground truth [GT]." if both else ""))
    tables: dict[str, str] = {}
    for a in against_list:
        rows, cols, crows, ccols = _table1(evaluations, a, both)
        what = ("the dictionary-matching reference maps (as the paper)" if a == "reference" else
                "the simulation's ground truth (dictionary matching included as a method)")
        rep.text(f"## Table 1 — against {what}")
        c, mpath = rep.table(f"table1_against_{a}", rows, cols, csv_rows=crows, csv_columns=ccols)
        tables[a] = mpath.read_text()
    # long-form summary and per-scan metrics
    srows, prows = [], []
    for (t, m, a), ev in evaluations.items():
        for mp in MAPS:
            for metric in (*METRICS, "r2_determination", "r2_regression"):
                mean, sd = _value(ev, mp, metric)
                srows.append({"trained_on": t, "method": m, "against": a, "map": mp, "metric": metric, "mean": f"{mean:.6g}",
                              "sd": f"{sd:.6g}" if metric in METRICS else "",
                              "n": ev.summary[mp][metric].n if metric in METRICS else int(ev.r2[mp]["n_rois"])})
            for scan_name, per in ev.per_scan.items():
                prows.append({"trained_on": t, "method": m, "against": a, "scan": scan_name, "map": mp,
                              **{k: f"{per[mp][k]:.6g}" for k in METRICS}})
    fsum = write_csv(out / "summary.csv", srows, ["trained_on", "method", "against", "map", "metric", "mean", "sd", "n"])
    fper = write_csv(out / "per_scan.csv", prows, ["trained_on", "method", "against", "scan", "map", *METRICS])
    rep.text("All numbers, long form:")
    rep.link(fsum, "mean ± SD and R² of every method, target and map")
    rep.link(fper, "per-scan NRMSE, PSNR, SSIM")
    rep.text("")

    figures: list[Path] = []
    with sw("figures"):
        for t in targets:
            tgt_name = "Reference" if t == "reference" else "Ground truth"
            tgt = fig_scan["reference"] if t == "reference" else fig_scan["ground-truth"]
            if len(tgt) < len(MAPS):
                continue
            methods = {m: fig_scan["pred"][(t, m)] for m in models}
            if t == "ground-truth":
                methods["matching"] = fig_scan["reference"]
            ff = tgt["ff"]
            a = fig_scan["attrs"]
            f = plot_figure2(out / f"figure2_trained_on_{t}.png", tgt, tgt_name, methods, fig_scan["fg"],
                             fig_scan["fg"] & (ff < 0.65),
                             title=f"test scan {fig_scan['name']} ({a.get('region', '')}, {a.get('condition', '')}), "
                                   f"slice {fig_scan['z']}; networks trained on the {t} maps")
            figures.append(f)
            rep.text(f"## Figure 2 — networks trained on the {t} maps")
            rep.figure(f, f"T1H2O, FF and B1 of test scan {fig_scan['name']}, slice {fig_scan['z']}: {tgt_name.lower()} "
                          f"(first column), each method's reconstruction, and the error ({tgt_name.lower()} − "
                          "reconstruction); T1H2O errors shown where FF < 0.65.")

    trows = [{"run": r.name, "method": METHOD_NAMES[r.model], "trained on": r.target, "parameters": f"{r.parameters:,}",
              "status": r.status, "training s": f"{r.seconds:.0f}", "best epoch": r.best_epoch,
              "val NRMSE": fmt(r.val_nrmse), "checkpoint": rep.rel(r.checkpoint)} for r in runs]
    rep.text("## Training runs\n\nEach network kept at its best validation NRMSE (mean over maps and validation "
             "scans); `reused` runs were found in this folder with the same settings and not trained again.")
    rep.table("training", trows, list(trows[0]))
    for s in extra_sections:
        rep.text(s)
    settings = {"preset": preset, "target": target, "models": list(models), "cohort": str(index.root),
                **{k: v for k, v in runs[0].settings.items() if k not in ("model", "target", "model_options")},
                "test scans": len(test_paths), "ROIs for R²": "major muscles (left_*/right_*)"}
    seeds = {"training (model init, patch order)": seed,
             "cohort": index.attrs.get("seed", "given cohort"), "per-subject simulation": "cohort seed → sub-<i> (cohort.json)"}
    report = rep.write(settings=settings, seeds=seeds, stopwatch=sw)
    log(f"wrote {report} (peak memory {peak_rss_mb():.0f} MiB)")
    return CompareResult(out, index, runs, evaluations, tables, report, figures, dict(sw.stages, total=sw.total))

