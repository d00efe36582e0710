"""Calibration of the SD maps against ground truth on simulated scans, and the fitted scales.

For every scan: matching (fast, two-component) with its Cramér–Rao SD
(:func:`mrfrecon.uncertainty.matched.scan_match_uncertainty`); with checkpoints, the ensemble's
mean map and spread, the data-consistency check and the combined SD
(:mod:`mrfrecon.uncertainty.ensemble`). Errors against the ground truth inside the scoring masks
give, per map and method, the coverage of ±1.96 SD, Spearman's ρ between SD and |error| and a
reliability diagram; scales fitted on the ``fit`` scans are applied to the ``test`` scans and
reported before and after (:class:`~mrfrecon.uncertainty.calibration.Calibration`).

``mrfrecon uncertainty calibrate`` runs :func:`run_calibration`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_write_text
from ..checkpoint import Checkpoint, git_hash, load_checkpoint
from ..dictionary import Dictionary
from ..errors import MrfreconError
from ..io.scan import Scan, load_scan
from ..uncertainty.calibration import SCORED_MAPS, Calibration, fit_scale, reliability, scoring_masks, summarize
from ..uncertainty.ensemble import check_ensemble, combined_sd, data_consistency, ensemble_stats
from ..uncertainty.fisher import CONTRADICTED
from ..uncertainty.matched import scan_match_uncertainty

__all__ = ["collect_scan", "run_calibration"]

NET_MAPS = ("t1h2o", "ff", "b1")
#: SD variants of the networks measured (see :mod:`mrfrecon.uncertainty.ensemble`)
NET_VARIANTS = ("spread", "combined", "combined-gated")


def collect_scan(scan: Scan, dictionary: Dictionary, *, members: Sequence[tuple[Checkpoint, Any]] = (),
                 sigma: str | float = "residual") -> dict[str, Any]:
    """Per-voxel errors and SDs of one scan with ground truth, inside the scoring masks.

    Returns
    -------
    dict
        ``matching``: map → ``{"err", "sd"}`` (|error| and the uncalibrated SD); with
        ``members`` (loaded checkpoints and their built networks), ``ensemble``: map →
        ``{"err", "spread", "net_minus_match", "match_sd", "flag"}``, and ``dc``: fractions of
        voxels flagged for the networks' maps and for the ground truth's.
    """
    from ..cohort import reference_maps
    from ..inference import predict_scan
    from ..matching import MAP_KEYS

    if not all(k in scan.maps for k in SCORED_MAPS):
        raise MrfreconError(f"{scan.attrs.get('subject', 'scan')}: no ground-truth maps to calibrate against")
    fg = scan.foreground
    t0 = time.perf_counter()
    m = reference_maps(scan.series, fg, dictionary, keys=(*MAP_KEYS, "valid"))
    t_match = time.perf_counter() - t0
    t0 = time.perf_counter()
    u = scan_match_uncertainty(scan.series, fg, dictionary, m, sigma=sigma)
    t_sd = time.perf_counter() - t0
    masks = scoring_masks(scan.maps["ff"], fg)
    out: dict[str, Any] = {"matching": {k: {"err": np.abs(m[k] - scan.maps[k])[mk], "sd": u[f"sd_{k}"][mk]}
                                        for k, mk in masks.items()},
                           "seconds": {"match": t_match, "match_sd": t_sd}}
    if not members:
        return out
    t0 = time.perf_counter()
    preds = [predict_scan(ck, scan, net=net) for ck, net in members]
    t_pred = time.perf_counter() - t0
    ens = ensemble_stats(preds)
    fp = np.moveaxis(scan.series, 1, -1)[fg]
    t0 = time.perf_counter()
    dc = data_consistency(fp, dictionary, {k: ens[k][fg] for k in NET_MAPS}, {k: m[k][fg] for k in NET_MAPS},
                          u["sigma"][fg])
    truth_dc = data_consistency(fp, dictionary, {k: scan.maps[k][fg] for k in NET_MAPS},
                                {k: m[k][fg] for k in NET_MAPS}, u["sigma"][fg])
    t_dc = time.perf_counter() - t0
    flag = np.zeros(fg.shape, np.uint8)
    flag[fg] = dc["flag"]
    out["ensemble"] = {k: {"err": np.abs(ens[k] - scan.maps[k])[masks[k]], "spread": ens[f"sd_{k}"][masks[k]],
                           "net_minus_match": (ens[k] - m[k])[masks[k]], "match_sd": u[f"sd_{k}"][masks[k]],
                           "flag": (flag[masks[k]] & CONTRADICTED) > 0} for k in NET_MAPS}
    q = (0.5, 0.9, 0.95, 0.99, 0.999)
    out["dc"] = {"voxels": int(fg.sum()), "truth_statistic": truth_dc["statistic"], "network_statistic": dc["statistic"],
                 "truth_statistic_quantiles": dict(zip(map(str, q), np.quantile(truth_dc["statistic"], q).tolist())),
                 "network_statistic_quantiles": dict(zip(map(str, q), np.quantile(dc["statistic"], q).tolist()))}
    out["seconds"].update(predict=t_pred, data_consistency=t_dc / 2)
    return out


def _cat(items: Sequence[dict[str, Any]], method: str, name: str, key: str) -> np.ndarray:
    return np.concatenate([it[method][name][key] for it in items]) if items else np.zeros(0)


def _net_sd(items: Sequence[dict[str, Any]], name: str, variant: str, match_scale: float) -> np.ndarray:
    spread = _cat(items, "ensemble", name, "spread")
    if variant == "spread":
        return spread
    d = _cat(items, "ensemble", name, "net_minus_match")
    msd = match_scale * _cat(items, "ensemble", name, "match_sd")
    gate = _cat(items, "ensemble", name, "flag") if variant == "combined-gated" else None
    return combined_sd(spread, d, np.zeros_like(d), msd, gate)


def _reliability_figure(rows: dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]], path: Path, title: str) -> Path:
    """One panel per map: observed RMS error against predicted RMS SD in 10 equal-count bins,
    before (grey) and after (colour) calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..figures import save_figure

    names = list(rows)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.0), squeeze=False)
    for ax, k in zip(axes[0], names, strict=True):
        err, sd, scale = rows[k]
        for sds, style, label in ((sd, dict(color="0.6", marker="o", ls="--"), "as computed"),
                                  (sd * scale, dict(color="C0", marker="o"), f"× {scale:.2f}")):
            pred, obs, _ = reliability(err, sds)
            ax.plot(pred, obs, label=label, ms=3, **style)
        hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([0, hi], [0, hi], color="k", lw=0.7)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("predicted SD (bin RMS)", fontsize=8)
        ax.set_ylabel("observed RMS error", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def run_calibration(
    fit_scans: Sequence[str | os.PathLike[str]],
    test_scans: Sequence[str | os.PathLike[str]],
    dictionary: Dictionary | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    sigma: str | float = "residual",
    log: Callable[[str], None] = print,
) -> Calibration:
    """Measure the SDs' calibration, fit a scale per map and method on ``fit_scans``, and report
    before and after on ``test_scans``.

    Writes ``out_dir/calibration.json`` (:class:`~mrfrecon.uncertainty.calibration.Calibration`),
    ``report.md`` and ``metrics.json`` (coverage, Spearman's ρ, RMS error and SD per split, map,
    method and variant), and ``reliability_<method>.png``. Returns the calibration.
    """
    if not fit_scans or not test_scans:
        raise MrfreconError("calibration: needs scans to fit on and scans to test on (got "
                            f"{len(fit_scans)} and {len(test_scans)})")
    out = Path(out_dir)
    d = dictionary if isinstance(dictionary, Dictionary) else Dictionary.load(dictionary)
    cks = [load_checkpoint(c) for c in checkpoints]
    if cks:
        check_ensemble(cks)
    members = [(ck, ck.build_model()) for ck in cks]
    items: dict[str, list[dict[str, Any]]] = {"fit": [], "test": []}
    for split, paths in (("fit", fit_scans), ("test", test_scans)):
        for p in paths:
            scan = load_scan(p)
            if scan.sequence.digest() != d.sequence.digest():
                raise MrfreconError(f"{p}: acquired with another sequence than the dictionary's")
            items[split].append(collect_scan(scan, d, members=members, sigma=sigma))
            log(f"{split}: {p} done")
    scales: dict[str, dict[str, float]] = {"matching": {}}
    metrics: dict[str, Any] = {}
    for k in SCORED_MAPS:
        scales["matching"][k] = fit_scale(_cat(items["fit"], "matching", k, "err"), _cat(items["fit"], "matching", k, "sd"))
    for split in ("fit", "test"):
        for k in SCORED_MAPS:
            e, s = _cat(items[split], "matching", k, "err"), _cat(items[split], "matching", k, "sd")
            metrics.setdefault(split, {}).setdefault("matching", {})[k] = {
                "before": summarize(e, s), "after": summarize(e, s * scales["matching"][k])}
    variant_scales: dict[str, dict[str, float]] = {}
    if members:
        for v in NET_VARIANTS:
            variant_scales[v] = {k: fit_scale(_cat(items["fit"], "ensemble", k, "err"),
                                              _net_sd(items["fit"], k, v, scales["matching"][k])) for k in NET_MAPS}
            for split in ("fit", "test"):
                for k in NET_MAPS:
                    e, s = _cat(items[split], "ensemble", k, "err"), _net_sd(items[split], k, v, scales["matching"][k])
                    metrics[split].setdefault(f"ensemble:{v}", {})[k] = {
                        "before": summarize(e, s), "after": summarize(e, s * variant_scales[v][k])}
        scales["ensemble"] = variant_scales["combined"]
        scales["ensemble-spread"] = variant_scales["spread"]
    seconds = {split: {key: float(sum(it["seconds"].get(key, 0.0) for it in items[split]))
                       for key in ("match", "match_sd", "predict", "data_consistency")} for split in items}
    level = None
    if members:
        # the flag's threshold: the ground truth's maps exceed it in 1 % of the fit scans' voxels
        level = float(np.quantile(np.concatenate([it["dc"]["truth_statistic"] for it in items["fit"]]), 0.99))
    dc = {split: [{"voxels": it["dc"]["voxels"],
                   "truth_flagged": float(np.mean(it["dc"]["truth_statistic"] > level)),
                   "network_flagged": float(np.mean(it["dc"]["network_statistic"] > level)),
                   "truth_statistic_quantiles": it["dc"]["truth_statistic_quantiles"],
                   "network_statistic_quantiles": it["dc"]["network_statistic_quantiles"]}
                  for it in items[split] if "dc" in it] for split in items}
    info = {"fitted_on": [str(p) for p in fit_scans], "tested_on": [str(p) for p in test_scans],
            "sigma": sigma if isinstance(sigma, str) else float(sigma), "checkpoints": [str(c) for c in checkpoints],
            "ensemble_sd": "combined" if members else None, "target_coverage": 0.95, "git_hash": git_hash(),
            "test_coverage_after": {m: {k: v["after"]["coverage"] for k, v in t.items()} for m, t in metrics["test"].items()}}
    if level is not None:
        info["contradiction_level"] = level
    cal = Calibration(scales, info)
    out.mkdir(parents=True, exist_ok=True)
    cal.save(out / "calibration.json")
    atomic_write_text(out / "metrics.json", json.dumps({"metrics": metrics, "variant_scales": variant_scales,
                                                        "seconds": seconds, "data_consistency": dc,
                                                        "mrfrecon_version": __version__}, indent=1) + "\n")
    test = items["test"]
    _reliability_figure({k: (_cat(test, "matching", k, "err"), _cat(test, "matching", k, "sd"), scales["matching"][k])
                         for k in SCORED_MAPS}, out / "reliability_matching.png",
                        "matching (Cramér–Rao SD): test scans")
    if members:
        _reliability_figure({k: (_cat(test, "ensemble", k, "err"), _net_sd(test, k, "combined", scales["matching"][k]),
                                 variant_scales["combined"][k]) for k in NET_MAPS}, out / "reliability_ensemble.png",
                            f"ensemble of {len(members)} (combined SD): test scans")
    atomic_write_text(out / "report.md", _report(metrics, scales, variant_scales, seconds, dc, info))
    return cal


def _report(metrics: dict[str, Any], scales: dict[str, dict[str, float]], variant_scales: dict[str, dict[str, float]],
            seconds: dict[str, dict[str, float]], dc: dict[str, list[dict[str, Any]]], info: dict[str, Any]) -> str:
    lines = [f"# SD calibration (mrfrecon {__version__}, git {info['git_hash'][:10]})", "",
             f"fitted on {len(info['fitted_on'])} scan(s), tested on {len(info['tested_on'])}; noise level: {info['sigma']}; "
             f"checkpoints: {', '.join(info['checkpoints']) or 'none'}", "",
             "| split | method | map | scale | coverage before | after | Spearman ρ | RMS error | RMS SD before | after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for split in ("fit", "test"):
        for method, table in metrics[split].items():
            sc = scales["matching"] if method == "matching" else variant_scales[method.split(":", 1)[1]]
            for k, v in table.items():
                b, a = v["before"], v["after"]
                lines.append(f"| {split} | {method} | {k} | {sc[k]:.3f} | {b['coverage']:.3f} | {a['coverage']:.3f} | "
                             f"{b['spearman']:.2f} | {b['rmse']:.4g} | {b['rms_sd']:.4g} | {a['rms_sd']:.4g} |")
    lines += ["", "| split | matching s | matching SD s | prediction s | data consistency s |", "|---|---|---|---|---|"]
    for split, s in seconds.items():
        lines.append(f"| {split} | {s['match']:.2f} | {s['match_sd']:.2f} | {s['predict']:.2f} | {s['data_consistency']:.2f} |")
    if any(dc.values()):
        lines += ["", f"Data consistency: fraction of foreground voxels flagged at the level {info.get('contradiction_level', 0):.4g} "
                  "(network maps; ground-truth maps)", ""]
        for split, rows in dc.items():
            for r in rows:
                tq = ", ".join(f"{k}: {v:.3g}" for k, v in r["truth_statistic_quantiles"].items())
                nq = ", ".join(f"{k}: {v:.3g}" for k, v in r["network_statistic_quantiles"].items())
                lines.append(f"- {split}: {r['network_flagged']:.3f}; {r['truth_flagged']:.3f} of {r['voxels']:,} voxels "
                             f"(statistic quantiles, truth {tq}; network {nq})")
    return "\n".join(lines) + "\n"
