"""Evaluation of predicted maps against a cohort's reference or ground-truth maps (paper, 2.3).

::

    from mrfrecon.evaluation import evaluate, write_report

    result = evaluate(Path("pred"), cohort_index.paths("test"), against="reference")
    write_report(result, Path("eval"))      # eval/per_scan.csv, eval/summary.csv, eval/summary.md

Per scan, over its 3-D volume: NRMSE, PSNR (masked: T1H2O foreground ∧ reference FF < 0.65, the
other maps the foreground) and SSIM (:func:`mrfrecon.metrics.evaluate_scan`); then mean ± SD
over scans. R² of ROI means pooled over all scans, two variants named apart (the paper's
coefficient of determination, and the group's later r² of a linear regression); ROI means
use each map's evaluation mask. Predictions are taken as stored (the ``*_maps.h5`` files of
:func:`mrfrecon.inference.predict_folder` are already de-normalized, clipped and background 0).
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MrfreconError
from .inference import MAPS_SUFFIX, load_maps
from .atomic import atomic_write_text
from .io.scan import load_scan
from .metrics import MAPS, METRICS, MeanSD, evaluate_scan, masks_for, paired_roi_means, r2_determination, r2_regression, roi_means, summarize

__all__ = ["AGAINST", "DEFAULT_ROIS", "ROI_SETS", "EvaluationResult", "evaluate", "is_major_muscle", "roi_filter_for",
           "write_report"]

AGAINST = ("reference", "ground-truth")


def is_major_muscle(name: str) -> bool:
    """The paper's R² ROIs, "region of interests within the major muscles" (Balsiger et al., MIDL
    2019, sec. 2.3): the labelled muscles, named ``left_<muscle>`` / ``right_<muscle>`` by the
    phantoms; subcutaneous fat, skin, fascia, bone, marrow and vessels are left out."""
    return name.startswith(("left_", "right_"))


#: Named ROI sets for R²: name → (predicate on the label name, or None for every label; description).
ROI_SETS: dict[str, tuple[Callable[[str], bool] | None, str]] = {
    "major-muscles": (is_major_muscle, "the labelled muscles of both limbs (the paper's ROIs)"),
    "all-labels": (None, "every labelled region: muscles, fat, skin, fascia, bone, marrow, vessels"),
}
#: The ROI set of `mrfrecon evaluate` and the experiments unless another is chosen.
DEFAULT_ROIS = "major-muscles"


def roi_filter_for(rois: str) -> Callable[[str], bool] | None:
    """The label predicate of a named ROI set (:data:`ROI_SETS`)."""
    if rois not in ROI_SETS:
        raise MrfreconError(f"rois: expected one of {', '.join(ROI_SETS)}, got {rois!r}")
    return ROI_SETS[rois][0]


@dataclass
class EvaluationResult:
    """``per_scan``: scan name → {map: {metric: value}}; ``summary``: {map: {metric: MeanSD}};
    ``r2``: {map: {"r2_determination": …, "r2_regression": …, "n_rois": …}} (NaN where fewer
    than two ROI means); ``against``: what the predictions were compared with; ``rois``: the
    ROI set of R² (a key of :data:`ROI_SETS`, or ``"custom"`` for a caller's predicate)."""

    per_scan: dict[str, dict[str, dict[str, float]]]
    summary: dict[str, dict[str, MeanSD]]
    r2: dict[str, dict[str, float]]
    against: str
    maps: tuple[str, ...]
    rois: str = DEFAULT_ROIS


def _predictions(predictions: Any, names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Predictions for the scans ``names`` from a folder of ``<stem>_maps.h5``, a list of such
    files, or a dict name → maps."""
    if isinstance(predictions, Mapping):
        found = {str(k): v for k, v in predictions.items()}
    else:
        if isinstance(predictions, str | os.PathLike):
            folder = Path(predictions)
            if not folder.is_dir():
                raise MrfreconError(f"{folder}: no such predictions folder")
            files = sorted(folder.glob(f"*{MAPS_SUFFIX}"))
        else:
            files = [Path(p) for p in predictions]
        found = {}
        for f in files:
            stem = f.name[: -len(MAPS_SUFFIX)] if f.name.endswith(MAPS_SUFFIX) else None
            if stem in names:  # files of other scans in the folder are ignored
                found[stem] = load_maps(f)[0]
    missing = [n for n in names if n not in found]
    if missing:
        raise MrfreconError(f"no predicted maps for {len(missing)} scan(s): {', '.join(missing[:5])}"
                            f"{' …' if len(missing) > 5 else ''} (expected <scan>{MAPS_SUFFIX}; run `mrfrecon predict`)")
    return {n: found[n] for n in names}


def evaluate(
    predictions: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Mapping[str, np.ndarray]],
    scans: Sequence[str | os.PathLike[str]],
    against: str = "reference",
    maps: Sequence[str] = MAPS,
    roi_filter: Callable[[str], bool] | None = None,
    rois: str = DEFAULT_ROIS,
) -> EvaluationResult:
    """Evaluate predicted maps of the scan files ``scans`` against their ``reference``
    (dictionary matching, as the paper) or ``ground-truth`` maps (simulation).

    ``predictions``: a folder of ``<scan stem>_maps.h5`` files, a list of them, or a dict scan
    stem → {map: (slices, y, x)}. ``rois``: the named ROI set of R² (:data:`ROI_SETS`; default
    the major muscles, as the paper); ``roi_filter``: a predicate on the label name instead
    (the result then names its set ``"custom"``). The T1H2O mask uses the FF of the maps
    compared against.
    """
    if roi_filter is None:
        roi_filter = roi_filter_for(rois)
    else:
        rois = next((k for k, (f, _) in ROI_SETS.items() if f is roi_filter), "custom")
    if against not in AGAINST:
        raise MrfreconError(f"against: expected one of {', '.join(AGAINST)}, got {against!r}")
    paths = [Path(s) for s in scans]
    if not paths:
        raise MrfreconError("no scans to evaluate")
    names = [p.stem for p in paths]
    preds = _predictions(predictions, names)
    per_scan: dict[str, dict[str, dict[str, float]]] = {}
    rois_pred: dict[str, list[dict]] = {m: [] for m in maps}
    rois_ref: dict[str, list[dict]] = {m: [] for m in maps}
    for p, name in zip(paths, names, strict=True):
        scan = load_scan(p, series=False)
        ref = scan.reference if against == "reference" else scan.maps
        missing = [m for m in maps if m not in ref]
        if missing:
            real = against == "ground-truth" and not scan.maps and (scan.attrs.get("cohort_kind") == "scans"
                                                                     or "import" in scan.attrs)
            why = " (an imported real scan: only a simulation has a ground truth; use --against reference)" if real else ""
            raise MrfreconError(f"{p}: no {against} map(s) {', '.join(missing)} to evaluate against{why}")
        pred = preds[name]
        for m in maps:
            if m not in pred:
                raise MrfreconError(f"{name}: the prediction has no {m!r} map")
            if np.shape(pred[m]) != scan.shape:
                raise MrfreconError(f"{name}: predicted {m} {np.shape(pred[m])} vs scan {scan.shape}")
        ff_ref = ref.get("ff")
        per_scan[name] = evaluate_scan(pred, ref, scan.foreground, ff_ref=ff_ref, maps=maps)
        if scan.labels is not None:
            masks = masks_for(ff_ref, scan.foreground, maps=maps) if ff_ref is not None or "t1h2o" not in maps else {}
            for m in maps:
                mask = masks.get(m, scan.foreground)
                rois_pred[m].append(roi_means(pred[m], scan.labels, scan.label_names, roi_filter, mask))
                rois_ref[m].append(roi_means(ref[m], scan.labels, scan.label_names, roi_filter, mask))
    r2: dict[str, dict[str, float]] = {}
    for m in maps:
        pm, rm = paired_roi_means(rois_pred[m], rois_ref[m])
        ok = pm.size >= 2
        r2[m] = {"r2_determination": r2_determination(pm, rm) if ok else math.nan,
                 "r2_regression": r2_regression(pm, rm) if ok else math.nan, "n_rois": float(pm.size)}
    with np.errstate(invalid="ignore"):  # a perfect scan has PSNR inf: its SD is NaN, not an error
        summary = summarize(list(per_scan.values()))
    return EvaluationResult(per_scan, summary, r2, against, tuple(maps), rois)


def _csv(rows: list[dict[str, Any]], cols: list[str]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_report(result: EvaluationResult, out_dir: str | os.PathLike[str], title: str = "") -> list[Path]:
    """Write ``per_scan.csv`` (scan, map, nrmse, psnr, ssim), ``summary.csv`` (map, metric, mean,
    sd, n) and ``summary.md`` (a table of mean ± SD and R²) into ``out_dir``, atomically."""
    out = Path(out_dir)
    rows = [{"scan": s, "map": m, **{k: f"{v[m][k]:.6g}" for k in METRICS}} for s, v in result.per_scan.items() for m in result.maps]
    p1 = atomic_write_text(out / "per_scan.csv", _csv(rows, ["scan", "map", *METRICS]))
    srows = [{"map": m, "metric": k, "mean": f"{result.summary[m][k].mean:.6g}", "sd": f"{result.summary[m][k].sd:.6g}",
              "n": result.summary[m][k].n} for m in result.maps for k in METRICS]
    srows += [{"map": m, "metric": k, "mean": f"{result.r2[m][k]:.6g}", "sd": "", "n": int(result.r2[m]["n_rois"]),
               "rois": result.rois} for m in result.maps for k in ("r2_determination", "r2_regression")]
    p2 = atomic_write_text(out / "summary.csv", _csv(srows, ["map", "metric", "mean", "sd", "n", "rois"]))
    n = len(result.per_scan)
    lines = [f"# {title or 'Evaluation'}", "",
             f"{n} scan(s), against the {result.against} maps; mean ± SD over scans (population SD). "
             "NRMSE and PSNR masked (T1H2O: foreground ∧ FF < 0.65); R² of ROI means pooled over scans, "
             f"ROI set {result.rois!r}"
             f"{' (' + ROI_SETS[result.rois][1] + ')' if result.rois in ROI_SETS else ''}.", "",
             "| map | NRMSE | PSNR (dB) | SSIM | R² (determination) | r² (regression) | ROIs |",
             "|---|---|---|---|---|---|---|"]
    for m in result.maps:
        s, r = result.summary[m], result.r2[m]
        lines.append(f"| {m} | {s['nrmse'].mean:.4f} ± {s['nrmse'].sd:.4f} | {s['psnr'].mean:.2f} ± {s['psnr'].sd:.2f} | "
                     f"{s['ssim'].mean:.4f} ± {s['ssim'].sd:.4f} | {r['r2_determination']:.4f} | {r['r2_regression']:.4f} | "
                     f"{int(r['n_rois'])} |")
    p3 = atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return [p1, p2, p3]
