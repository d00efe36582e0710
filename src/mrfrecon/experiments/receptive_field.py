"""Experiment 2 (Balsiger et al., MIDL 2019, section 3.2, Figure 3 and Appendix A): the proposed
CNN with receptive fields 1 × 1 … 21 × 21.

::

    from mrfrecon.experiments.receptive_field import run_receptive_field

    result = run_receptive_field("results/rf", preset="demo", fields=(1, 5, 11, 21))
    # results/rf/report.md, nrmse_per_scan.csv, wilcoxon.csv, figure3_receptive_field.png, ...

For each receptive field the proposed CNN (model option ``receptive_field``: 1 × 1 spatial
kernels below 11, extra 3 × 3 convolutions with 64 channels above it) is trained with the same
scheme as in the comparison; on the test split the NRMSE of every scan (over its 3-D volume,
paper masks) is computed per map against the training target (the reference maps, as the
paper) and, where the cohort has it, the ground truth. Figure 3: boxplots of the per-scan NRMSE
per receptive field for each map; every receptive field is compared with the best one (lowest
median NRMSE) by a paired two-sided Wilcoxon signed-rank test, Bonferroni-corrected for the
number of comparisons (:mod:`mrfrecon.experiments.stats`). With few test scans the test has
little power (the smallest attainable p-value is 2 / 2ⁿ before correction): the report says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..figures import save_figure
from ..errors import MrfreconError
from ..io.cohort import CohortIndex
from ..io.scan import load_scan
from ..metrics import masks_for, nrmse
from .baselines import baseline_maps, constant_values
from .common import (MAPS, Log, Report, Stopwatch, ensure_cohort, fmt, map_label, no_bar, peak_rss_mb,
                     predict_normalized, write_csv)
from .runs import RunInfo, RunSpec, batchnorm_options, train_runs
from .stats import PairedTest, compare_to_best, min_wilcoxon_p

__all__ = ["DEFAULT_FIELDS", "RFResult", "parse_fields", "plot_figure3", "run_receptive_field", "seed_rows"]

#: The paper's receptive fields (section 3.2, Figure 3).
DEFAULT_FIELDS = (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21)
ALPHA = 0.05
#: The trivial baselines of the seeds table (mrfrecon.experiments.baselines): what needs no learning, and the
#: reference maps smoothed (a smoothed simple method); against the ground truth the matching maps themselves too.
RF_BASELINES = ("constant", "matching-box3")


@dataclass
class RFResult:
    """``nrmse``: against → map → field → per-scan NRMSE (test scans in index order);
    ``tests``: against → map → the paired tests against the best field; ``report``: report.md;
    ``per_seed``: against → map → (field, seed) → per-scan NRMSE of that one network;
    ``baselines``: against → baseline → map → per-scan NRMSE."""

    out: Path
    cohort: CohortIndex
    fields: tuple[int, ...]
    runs: list[RunInfo]
    nrmse: dict[str, dict[str, dict[int, list[float]]]]
    tests: dict[str, dict[str, list[PairedTest]]]
    report: Path
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    per_seed: dict[str, dict[str, dict[tuple[int, int], list[float]]]] = field(default_factory=dict)
    baselines: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)


def parse_fields(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,3,5"`` (or a sequence) → (1, 3, 5): odd sizes 1…21, distinct, sorted."""
    try:
        vals = [int(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except ValueError:
        raise MrfreconError(f"fields: expected comma-separated odd integers such as 1,3,11, got {text!r}") from None
    bad = [v for v in vals if v < 1 or v > 21 or v % 2 == 0]
    if bad or not vals:
        raise MrfreconError(f"fields: receptive fields are odd sizes 1…21 (paper 3.2), got {text!r}")
    return tuple(sorted(set(vals)))


def plot_figure3(path: str | os.PathLike[str], nrmse_by_map: dict[str, dict[int, list[float]]],
                 tests: dict[str, list[PairedTest]], title: str = "") -> Path:
    """Figure 3 (and Appendix A): one panel per map, a box of per-scan NRMSE per receptive field,
    the Bonferroni-corrected p-value of the paired Wilcoxon test against the best field above
    each box (``best`` above the best; ``n/a`` where no test was possible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = list(nrmse_by_map)
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 3.6), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], maps, strict=True):
        fields = list(nrmse_by_map[m])
        data = [np.asarray(nrmse_by_map[m][f], float) for f in fields]
        ax.boxplot([d[np.isfinite(d)] for d in data], tick_labels=[f"{f}×{f}" for f in fields], widths=0.6,
                   medianprops={"color": "tab:red"})
        for i, d in enumerate(data, start=1):  # the scans themselves, few as they may be
            ax.plot(np.full(d.size, i) + np.linspace(-0.12, 0.12, d.size), d, ".", color="0.3", ms=3)
        top = np.nanmax([np.nanmax(d) for d in data if np.isfinite(d).any()] or [1.0])
        bottom = np.nanmin([np.nanmin(d) for d in data if np.isfinite(d).any()] or [0.0])
        span = max(top - bottom, 1e-6)
        by_label = {r.label: r for r in tests[m]}
        for i, f in enumerate(fields, start=1):
            r = by_label[str(f)]
            txt = "best" if r.best else ("n/a" if math.isnan(r.p_corrected) else f"{r.p_corrected:.3f}")
            ax.text(i, top + 0.06 * span, txt, ha="center", va="bottom", fontsize=6.5, rotation=90,
                    color="tab:red" if r.significant else "black")
        ax.set_ylim(bottom - 0.05 * span, top + 0.35 * span)
        ax.set_xlabel("receptive field", fontsize=8)
        ax.set_ylabel("NRMSE per test scan", fontsize=8)
        ax.set_title(f"{map_label(m, unit=False)} map reconstruction", fontsize=9)
        ax.tick_params(labelsize=6.5)
        ax.tick_params(axis="x", rotation=60)
    fig.suptitle(title or "Paired Wilcoxon signed-rank test vs the best field, Bonferroni-corrected p (red: < 0.05)",
                 fontsize=8)
    return save_figure(fig, path, dpi=90)


def seed_rows(fields: Sequence[int], seeds: Sequence[int], per_seed: dict[str, dict[tuple[int, int], list[float]]],
              baselines: dict[str, dict[str, list[float]]], converged: dict[int, bool]) -> list[dict[str, str]]:
    """The seeds table's rows: per field, each map's NRMSE as the mean over the test scans of each
    seed's network, then the mean ± SD (``ddof=1``) over the seeds (the mean alone for one seed),
    † on a field with a run that did not converge; then one row per baseline (mean over the scans).

    ``per_seed``: map → (field, seed) → per-scan NRMSE; ``baselines``: name → map → per-scan NRMSE."""
    rows = []
    for f in fields:
        row = {"method": f"proposed {f}×{f}" + ("" if converged.get(f, True) else " †")}
        for m in MAPS:
            means = np.array([np.mean(per_seed[m][(f, s_)]) for s_ in seeds])
            row[map_label(m, unit=False)] = (f"{fmt(means.mean())} ± {fmt(means.std(ddof=1), 2)}" if means.size > 1
                                             else fmt(means.mean()))
        rows.append(row)
    for b, by_map in baselines.items():
        rows.append({"method": b, **{map_label(m, unit=False): fmt(float(np.mean(by_map[m]))) for m in MAPS}})
    return rows


def run_receptive_field(
    out: str | os.PathLike[str],
    *,
    preset: str = "demo",
    cohort: str | os.PathLike[str] | None = None,
    fields: Sequence[int] = DEFAULT_FIELDS,
    target: str = "reference",
    seed: int = 0,
    seeds: int = 1,
    epochs: int | None = None,
    steps: int | None = None,
    subjects: int | None = None,
    width: float | None = None,
    patch: int | None = None,
    patience: int | None = None,
    workers: int = 1,
    jobs: int = 1,
    batchnorm: bool = True,
    log: Log = print,
    progress: Callable[[int, str], Any] | None = None,
) -> RFResult:
    """Run the receptive-field sweep into the result folder ``out`` (module docstring).
    Arguments as :func:`mrfrecon.experiments.compare.run_compare` (``steps``: the budget in optimizer
    steps of every field's runs); ``seeds`` training seeds per
    field (``seed``, ``seed + 1``, …; a scan's NRMSE is the mean over a field's seeds, so the tests
    compare fields rather than single networks); ``target`` is ``"reference"`` or ``"ground-truth"`` (the training
    target and the NRMSE's reference); ``jobs`` trainings at once; ``batchnorm`` False: the
    proposed CNN without batch normalization (a deviation from the paper)."""
    import torch

    from ..checkpoint import load_checkpoint
    from ..data import normalize_series
    from ..inference import check_compatible
    from ..runtime import default_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fields = parse_fields(fields)
    if target not in ("reference", "ground-truth"):
        raise MrfreconError(f"target: expected reference or ground-truth, got {target!r}")
    sw = Stopwatch()
    bar = progress if progress is not None else no_bar
    with sw("cohort (simulate or load)"):
        index = ensure_cohort(cohort, out, preset=preset, seed=seed, subjects=subjects, workers=workers, log=log,
                              bar=bar)
    test_paths = index.paths("test")

    if jobs < 1:
        raise MrfreconError(f"jobs: expected >= 1, got {jobs}")
    if seeds < 1:
        raise MrfreconError(f"seeds: expected >= 1, got {seeds}")
    bn = batchnorm_options("proposed", batchnorm)
    seed_list = list(range(seed, seed + seeds))
    # one seed: the first design's folders (rf<f>); several: rf<f>/seed-<s>
    specs = [RunSpec(f"proposed {f}×{f}" + (f" s{s_}" if seeds > 1 else ""), "proposed", target, s_,
                     out / "runs" / target / f"rf{f:02d}" / (f"seed-{s_}" if seeds > 1 else ""),
                     {"receptive_field": f, **bn}) for f in fields for s_ in seed_list]
    with sw("training"):
        runs: list[RunInfo] = train_runs(specs, index, preset=preset, jobs=jobs, epochs=epochs, steps=steps, width=width, patch=patch,
                                         patience=patience, log=log, progress=progress)
    failed = [r for r in runs if not r.ok]
    if failed:  # a field without a network has no NRMSE: the sweep cannot rank it
        raise MrfreconError("receptive-field sweep: " + "; ".join(f"{r.name} diverged ({r.message})" for r in failed))

    dev = default_device()
    keys = [(f, s_) for f in fields for s_ in seed_list]  # the order of specs and runs
    converged = {f: all(r.converged for k, r in zip(keys, runs, strict=True) if k[0] == f) for f in fields}
    cks = {k: load_checkpoint(r.checkpoint) for k, r in zip(keys, runs, strict=True)}
    nets = {k: ck.build_model(dev) for k, ck in cks.items()}
    against_list = [target]
    seed_vals: dict[str, dict[str, dict[tuple[int, int], list[float]]]] = {}
    base_vals: dict[str, dict[str, dict[str, list[float]]]] = {}
    with sw("baselines (training means)"):
        const = constant_values(index.paths("train"), against=target)
    with sw("prediction and NRMSE (test split)"), bar(len(test_paths), "predicting the test scans") as cb, \
            torch.inference_mode():
        for i, p in enumerate(test_paths):
            scan = load_scan(p)
            for ck in cks.values():
                check_compatible(ck, scan, str(p))
            series, _ = normalize_series(scan.series)
            scan.series = series[:0]
            sources = {"reference": scan.reference, "ground-truth": scan.maps}
            if i == 0 and target == "reference" and all(m in scan.maps for m in MAPS):
                against_list.append("ground-truth")
            for a in against_list:
                if not all(m in sources[a] for m in MAPS):
                    raise MrfreconError(f"{p}: no {a} maps to compute the NRMSE against")
            masks = {a: masks_for(sources[a]["ff"], scan.foreground, maps=MAPS) for a in against_list}
            for k in keys:
                pred = predict_normalized(cks[k], nets[k], series, scan.foreground, dev)
                for a in against_list:
                    for m in MAPS:
                        seed_vals.setdefault(a, {}).setdefault(m, {}).setdefault(k, []).append(
                            float(nrmse(pred[m], sources[a][m], masks[a][m])))
            # the matching maps are the reference: a baseline only against the ground truth
            for b in RF_BASELINES + (("matching",) if "ground-truth" in against_list else ()):
                bm = baseline_maps(b, scan, const)
                for a in against_list:
                    if b == "matching" and a == "reference":
                        continue
                    for m in MAPS:
                        base_vals.setdefault(a, {}).setdefault(b, {}).setdefault(m, []).append(
                            float(nrmse(bm[m], sources[a][m], masks[a][m])))
            del series
            cb(i + 1)
    del nets
    # a scan's NRMSE per field: the mean over the field's seeds
    values = {a: {m: {f: np.mean([by_key[(f, s_)] for s_ in seed_list], axis=0).tolist() for f in fields}
                  for m, by_key in by_map.items()} for a, by_map in seed_vals.items()}

    tests = {a: {m: compare_to_best({str(f): v for f, v in values[a][m].items()}, alpha=ALPHA) for m in MAPS}
             for a in against_list}

    # ---- files
    rep = Report(out, "Experiment 2: influence of the receptive field (paper section 3.2, Figure 3, Appendix A)")
    n_scans = len(test_paths)
    n_cmp = max(1, len(fields) - 1)
    pmin = min_wilcoxon_p(n_scans)
    power = (f"**Power.** {n_scans} test scan(s) (the paper had 20): the smallest two-sided p-value the exact "
             f"signed-rank test can give is {fmt(pmin, 3)}, {fmt(min(1.0, pmin * n_cmp), 3)} after the Bonferroni "
             f"correction for {n_cmp} comparison(s)")
    power += (" — so no difference can be significant at 0.05 here, whatever the data; the boxplots and medians are "
              "the result to read." if (math.isnan(pmin) or pmin * n_cmp >= ALPHA) else ".")
    if n_scans < 2:
        power += " With fewer than 2 scans no test is possible (p = nan)."
    rep.text(f"## Data\n\nCohort `{index.root}`: {len(index.split['train'])}/{len(index.split['val'])}/{n_scans} "
             f"training/validation/test scans. The proposed CNN trained on the {target} maps with each receptive field; "
             "NRMSE per test scan over its 3-D volume (T1H2O: foreground ∧ FF < 0.65; FF, B1: foreground). Each field "
             f"is compared with the best (lowest median) by a paired two-sided Wilcoxon signed-rank test "
             f"(scipy.stats.wilcoxon), p-values Bonferroni-corrected for {n_cmp} comparisons, significance level {ALPHA}.\n\n"
             + power)
    figures = []
    with sw("figures"):
        for a in against_list:
            f3 = plot_figure3(out / f"figure3_receptive_field_against_{a}.png", values[a], tests[a],
                              title=f"NRMSE against the {a} maps; Bonferroni-corrected p of the paired Wilcoxon test vs "
                                    "the best field (red: < 0.05)")
            figures.append(f3)
            rep.text(f"## Figure 3 — NRMSE against the {a} maps")
            rep.figure(f3, f"Per-scan NRMSE (dots: scans) per receptive field for T1H2O, FF and B1 against the {a} maps; "
                           "numbers: Bonferroni-corrected p vs the best field.")
            rows = []
            for f in fields:
                row: dict[str, Any] = {"receptive field": f"{f}×{f}" + ("" if converged[f] else " †")}
                for m in MAPS:
                    r = {t.label: t for t in tests[a][m]}[str(f)]
                    v = np.asarray(values[a][m][f])
                    q1, q3 = np.percentile(v, [25, 75])
                    ptxt = "best" if r.best else (f"p = {fmt(r.p_corrected, 3)}" if not math.isnan(r.p_corrected) else "n/a")
                    row[map_label(m, unit=False)] = f"{fmt(r.median)} [{fmt(q1, 3)}, {fmt(q3, 3)}] ({ptxt})"
                rows.append(row)
            rep.text(f"Median NRMSE [quartiles] against the {a} maps, and the corrected p vs the best field († a field "
                     "with a run that did not converge):")
            rep.table(f"nrmse_by_field_against_{a}", rows, list(rows[0]))
            srows = seed_rows(fields, seed_list, seed_vals[a], base_vals[a], converged)
            rep.text(f"Mean NRMSE over the test scans against the {a} maps, "
                     + (f"mean ± SD over the {len(seed_list)} training seeds (the spread a field's network has from "
                        "its seed alone; a difference between fields within it is noise)" if len(seed_list) > 1
                        else "one training seed (no spread over seeds: run with --seeds 2 or more)")
                     + ", beside the trivial baselines (constant: the training split's mean of each map; "
                       "matching-box3: the reference maps averaged over 3 × 3 in the foreground"
                     + ("; matching: the reference maps themselves" if a == "ground-truth" else "")
                     + "). † a field with a training run that did not meet the convergence criterion "
                       "(`convergence.json`).")
            rep.table(f"nrmse_seeds_against_{a}", srows, list(srows[0]))
    trow = []
    for a in against_list:
        for m in MAPS:
            for t in tests[a][m]:
                trow.append({"against": a, "map": m, "receptive_field": t.label, "median_nrmse": f"{t.median:.6g}", "n": t.n,
                             "best": t.best, "statistic": f"{t.statistic:.6g}", "p": f"{t.p:.6g}",
                             "p_bonferroni": f"{t.p_corrected:.6g}", "significant": t.significant, "note": t.note})
    fw = write_csv(out / "wilcoxon.csv", trow, list(trow[0]))
    prow = [{"against": a, "map": m, "receptive_field": f, "scan": p.stem, "nrmse": f"{v:.6g}"}
            for a in against_list for m in MAPS for f in fields for p, v in zip(test_paths, values[a][m][f], strict=True)]
    fp = write_csv(out / "nrmse_per_scan.csv", prow, ["against", "map", "receptive_field", "scan", "nrmse"])
    qrow = [{"against": a, "map": m, "method": f"proposed {f}×{f}", "receptive_field": f, "seed": s_, "scan": p.stem,
             "nrmse": f"{v:.6g}"}
            for a in against_list for m in MAPS for (f, s_) in keys
            for p, v in zip(test_paths, seed_vals[a][m][(f, s_)], strict=True)]
    qrow += [{"against": a, "map": m, "method": b, "receptive_field": "", "seed": "", "scan": p.stem, "nrmse": f"{v:.6g}"}
             for a in against_list for b, by_map in base_vals[a].items() for m in MAPS
             for p, v in zip(test_paths, by_map[m], strict=True)]
    fq = write_csv(out / "nrmse_per_scan_by_seed.csv", qrow,
                   ["against", "map", "method", "receptive_field", "seed", "scan", "nrmse"])
    rep.text("## Files")
    rep.link(fw, "every test (statistic, raw and corrected p, note where no test was possible)")
    rep.link(fp, "per-scan NRMSE (the mean over a field's seeds)")
    rep.link(fq, "per-scan NRMSE of every network (field, seed) and of the baselines")
    rep.text("")
    runrows = [{"receptive field": f"{f}×{f}", "seed": s_, "parameters": f"{r.parameters:,}", "status": r.status,
                "training s": f"{r.seconds:.0f}", "best step": r.best_step, "converged": "yes" if r.converged else "NO", "val NRMSE": fmt(r.val_nrmse),
                "checkpoint": rep.rel(r.checkpoint)} for (f, s_), r in zip(keys, runs, strict=True)]
    rep.text("## Training runs\n\nParameter counts differ between fields (the paper's footnote 3: not compensated).")
    rep.table("training", runrows, list(runrows[0]))
    settings = {"preset": preset, "target": target, "fields": list(fields), "cohort": str(index.root),
                "batch normalization": "as published" if batchnorm else "off (a deviation, docs/RESULTS.md)",
                **{k: v for k, v in runs[0].settings.items() if k not in ("model", "target", "model_options")},
                "test scans": n_scans, "alpha": ALPHA, "correction": f"Bonferroni × {n_cmp}"}
    seeds_d = {"training (model init, patch order)": ", ".join(str(x) for x in seed_list)
               + (" (a scan's NRMSE per field: the mean over these seeds)" if seeds > 1 else ""),
               "cohort": index.attrs.get("seed", "given cohort")}
    report = rep.write(settings=settings, seeds=seeds_d, stopwatch=sw)
    log(f"wrote {report} (peak memory {peak_rss_mb():.0f} MiB)")
    return RFResult(out, index, fields, runs, values, tests, report, figures, dict(sw.stages, total=sw.total),
                    seed_vals, base_vals)
