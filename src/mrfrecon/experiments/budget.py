"""The budget-doubling test: has a network converged at a budget of S optimizer steps?

The per-run criterion (:func:`mrfrecon.training.stopping.assess_convergence`) reads the last
10 % of one run's loss; under a schedule that decays to the end (cosine) the loss keeps falling
there by construction, and at batch 8 its windows scatter by several per cent
(docs/RESULTS.md). What a comparison of designs needs is the answer to a different question:
*would more training change the test error?* This experiment answers it by measurement::

    mrfrecon experiment budget --preset study --cohort study/cohort --models proposed --steps 3000 --out budget

Each network and seed is trained twice with the same recipe, at S and at ``factor`` × S steps
(the schedule spans each budget), into ``OUT/runs/steps-<n>/<target>/<model>/seed-<s>``; with
``base`` the S-step runs are those of an ``experiment compare`` folder (same settings, finished:
reused, never retrained). Both are scored on the test split against the reference maps and, for
a simulated cohort, the ground truth. Per network, map and target: the mean over test subjects of
each subject's NRMSE (averaged over the seeds) at both budgets, the relative change, and a paired
two-sided Wilcoxon signed-rank test over the subjects, Bonferroni-corrected over the network's
maps × targets.

**Verdict** (:func:`doubling_verdict`): *converged at S* when no map, against any target, is
better at the longer budget by more than ``tolerance`` (relative mean NRMSE, default 2 %) with a
significant paired test; *not converged* when one is; *undecided* when the test subjects are too
few for any p-value to reach α after the correction (the exact test's floor 2 / 2ⁿ). A map that
is significantly *worse* at the longer budget does not count against S. Beside each change: the
SD over training seeds of the subjects' mean NRMSE at S (from the S-step runs when there are
several seeds, else from the ``base`` comparison's ``per_scan.csv``): a change within it cannot
reorder networks whose gaps exceed it.

**The networks at an equal budget** (:func:`equal_budget_rows`, :func:`order_kept`): with two or
more networks the report also ranks them at each budget, per map and target, as Table 1 does: the
best network (lowest median over the subjects) and each other network against it by the paired
Wilcoxon test, Bonferroni over the other networks, beside the trivial baselines (the training
split's constant; dictionary matching and its 5 × 5 median smoothing against the ground truth).
Whether the order of each pair of networks is the same at both budgets says whether more
training would change the comparison even where the networks have not converged.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import MrfreconError
from ..evaluation import DEFAULT_ROIS, evaluate
from .common import (MAP_LABELS, MAPS, METHOD_NAMES, MODEL_ORDER, Log, Report, Stopwatch, ensure_cohort, fmt, no_bar,
                     peak_rss_mb, write_csv)
from .compare import TableSpec, baseline_stage, predict_stage
from .runs import RunInfo, RunSpec, train_or_reuse, train_runs
from .stats import bonferroni, compare_to_best, min_wilcoxon_p, wilcoxon_paired

__all__ = ["BudgetResult", "DoublingCell", "doubling_cells", "doubling_verdict", "equal_budget_rows", "order_kept",
           "run_budget"]

VERDICTS = ("converged", "not converged", "undecided")


@dataclass(frozen=True)
class DoublingCell:
    """One network, target and map: mean test NRMSE at the short and the long budget (over
    subjects, each subject averaged over seeds), the relative change (long ÷ short − 1), the
    subjects better at the long budget, the paired test (``p`` and ``p_corrected``), the SD over
    seeds at the short budget (NaN when unknown), and whether the change is a significant gain
    larger than the tolerance (``material``)."""

    model: str
    against: str
    map: str
    short: float
    long: float
    change: float
    better: int
    n: int
    p: float
    p_corrected: float
    seed_sd: float
    material: bool
    note: str = ""


def doubling_cells(model: str, short: Mapping[tuple[str, str], Sequence[float]],
                   long: Mapping[tuple[str, str], Sequence[float]], *, tolerance: float = 0.02, alpha: float = 0.05,
                   seed_sd: Mapping[tuple[str, str], float] | None = None) -> list[DoublingCell]:
    """The cells of one network: ``short`` and ``long`` map (against, map) → per-subject NRMSE,
    paired by position (subjects in the same order at both budgets). Bonferroni over the cells."""
    keys = [k for k in short if k in long]
    if not keys:
        raise MrfreconError(f"{model}: no (target, map) scored at both budgets")
    tests = [wilcoxon_paired(short[k], long[k]) for k in keys]
    corrected = bonferroni([t[1] for t in tests], len(keys))
    cells = []
    for k, (_, p, n, note), pc in zip(keys, tests, corrected, strict=True):
        a = np.asarray(short[k], dtype=np.float64)
        b = np.asarray(long[k], dtype=np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        ma, mb = float(a[ok].mean()), float(b[ok].mean())
        change = mb / ma - 1.0 if ma > 0 else math.nan
        material = bool(math.isfinite(pc) and pc < alpha and change < -tolerance)
        cells.append(DoublingCell(model, k[0], k[1], ma, mb, change, int((b[ok] < a[ok]).sum()), n, float(p), float(pc),
                                  float((seed_sd or {}).get(k, math.nan)), material, note))
    return cells


def doubling_verdict(cells: Sequence[DoublingCell], *, factor: int = 2, tolerance: float = 0.02,
                     alpha: float = 0.05) -> tuple[str, str]:
    """``(verdict, reason)`` of one network (module docstring): one of :data:`VERDICTS`."""
    if not cells:
        return "undecided", "nothing was scored"
    gains = sorted((c for c in cells if c.material), key=lambda c: c.change)
    if gains:
        worst = gains[0]
        return "not converged", (f"{factor}× the budget lowers the mean test NRMSE of "
                                 + ", ".join(f"{MAP_LABELS.get(c.map, c.map)} against the {c.against} by "
                                             f"{-c.change:.1%} (p {c.p_corrected:.2g} corrected, {c.better}/{c.n} subjects)"
                                             for c in gains)
                                 + f"; the largest gain {-worst.change:.1%} exceeds the tolerance {tolerance:.1%}")
    n = min(c.n for c in cells)
    floor = min_wilcoxon_p(n) * len(cells) if n >= 1 else math.nan
    if not (floor < alpha):
        return "undecided", (f"{n} test subject(s): the smallest p-value the paired test can give, Bonferroni over "
                             f"{len(cells)} comparisons, is {floor:.2g} ≥ α {alpha:g}: no gain can be significant")
    big = max(cells, key=lambda c: -c.change)
    return "converged", (f"no map improves by more than {tolerance:.1%} with significance at {factor}× the budget "
                         f"(largest gain {max(0.0, -big.change):.1%}: {MAP_LABELS.get(big.map, big.map)} against the "
                         f"{big.against}, p {big.p_corrected:.2g} corrected)")


def equal_budget_rows(values: Mapping[str, Mapping[tuple[str, str], Sequence[float]]], *, alpha: float = 0.05
                      ) -> list[dict[str, Any]]:
    """The networks at one budget: ``values`` network → (against, map) → per-subject NRMSE (the
    same subjects in the same order for every network). One row per (against, map) that every
    network has: ``against``, ``map``, ``best`` (lowest median, :func:`~.stats.compare_to_best`)
    and per network ``mean``, ``median``, ``p_corrected`` against the best (Bonferroni over the
    other networks; NaN for the best) and ``tied`` (not significantly different from the best,
    the best included)."""
    nets = list(values)
    if len(nets) < 2:
        raise MrfreconError(f"equal_budget_rows: expected two or more networks, got {nets}")
    keys = [k for k in values[nets[0]] if all(k in values[n] for n in nets)]
    rows = []
    for k in keys:
        tests = {t.label: t for t in compare_to_best({n: values[n][k] for n in nets}, alpha=alpha)}
        row: dict[str, Any] = {"against": k[0], "map": k[1], "best": next(n for n in nets if tests[n].best)}
        for n in nets:
            a = np.asarray(values[n][k], dtype=np.float64)
            t = tests[n]
            row[n] = {"mean": float(np.nanmean(a)), "median": t.median, "p_corrected": t.p_corrected,
                      "tied": t.best or not t.significant}
        rows.append(row)
    return rows


def order_kept(short: Sequence[Mapping[str, Any]], long: Sequence[Mapping[str, Any]], nets: Sequence[str]
               ) -> list[dict[str, Any]]:
    """Per pair of networks (a, b): in how many of the (against, map) cells of both budgets'
    :func:`equal_budget_rows` the order of their mean NRMSE is the same at both budgets
    (``kept`` of ``cells``), and the cells where it flips."""
    at_long = {(r["against"], r["map"]): r for r in long}
    out = []
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            kept, flips = 0, []
            for r in short:
                q = at_long.get((r["against"], r["map"]))
                if q is None:
                    continue
                if (r[a]["mean"] < r[b]["mean"]) == (q[a]["mean"] < q[b]["mean"]):
                    kept += 1
                else:
                    flips.append(f"{MAP_LABELS.get(r['map'], r['map'])} against the {r['against']}")
            out.append({"a": a, "b": b, "kept": kept, "cells": kept + len(flips), "flips": flips})
    return out


@dataclass
class BudgetResult:
    """``cells``: model → its :class:`DoublingCell` list; ``verdicts``: model → (verdict, reason);
    ``runs``: the trained (or reused) runs at both budgets; ``ranking``: budget (steps) →
    :func:`equal_budget_rows` (empty with one network)."""

    out: Path
    steps: tuple[int, int]
    cells: dict[str, list[DoublingCell]]
    verdicts: dict[str, tuple[str, str]]
    runs: list[RunInfo]
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)
    ranking: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def _base_seed_sd(base: Path, model: str, target: str) -> dict[tuple[str, str], float]:
    """SD over the seeds of the subjects' mean NRMSE, per (against, map), from a comparison's
    ``per_scan.csv`` (population SD, as the comparison's tables); {} without one."""
    f = base / "per_scan.csv"
    if not f.is_file():
        return {}
    per: dict[tuple[str, str, str], list[float]] = {}
    with open(f, newline="") as fh:
        for r in csv.DictReader(fh):
            if r.get("method") == model and r.get("trained_on") == target and r.get("seed", "") != "":
                per.setdefault((r["against"], r["map"], r["seed"]), []).append(float(r["nrmse"]))
    out: dict[tuple[str, str], list[float]] = {}
    for (a, m, _s), v in per.items():
        out.setdefault((a, m), []).append(float(np.mean(v)))
    return {k: float(np.std(v)) for k, v in out.items() if len(v) >= 2}


def run_budget(
    out: str | os.PathLike[str],
    *,
    preset: str = "study",
    cohort: str | os.PathLike[str] | None = None,
    models: Sequence[str] = MODEL_ORDER,
    steps: int | None = None,
    factor: int = 2,
    seed: int = 0,
    seeds: int = 1,
    target: str = "reference",
    base: str | os.PathLike[str] | None = None,
    tolerance: float = 0.02,
    alpha: float = 0.05,
    subjects: int | None = None,
    workers: int = 1,
    jobs: int = 1,
    log: Log = print,
    progress: Callable[[int, str], Any] | None = None,
) -> BudgetResult:
    """Run the budget-doubling test into ``out`` (module docstring). ``steps``: the short budget S
    (default: the preset's, which must be in optimizer steps); ``factor``: the long budget is
    ``factor`` × S; ``seeds`` training seeds from ``seed``; ``base``: an ``experiment compare`` folder
    whose ``runs/<target>/<model>/seed-<s>`` are the S-step runs."""
    from ..presets import load_preset

    if target not in ("reference", "ground-truth"):
        raise MrfreconError(f"target: expected reference or ground-truth, got {target!r}")
    unknown = [m for m in models if m not in MODEL_ORDER]
    if unknown or not models:
        raise MrfreconError(f"--models: expected some of {', '.join(MODEL_ORDER)}, got {list(models)}")
    if int(factor) != factor or factor < 2:
        raise MrfreconError(f"--factor: expected an integer >= 2, got {factor!r}")
    if not 0 <= tolerance < 1:
        raise MrfreconError(f"--tolerance: expected a relative change in [0, 1), got {tolerance!r}")
    if seeds < 1:
        raise MrfreconError(f"--seeds: expected >= 1, got {seeds}")
    if jobs < 1:
        raise MrfreconError(f"--jobs: expected >= 1, got {jobs}")
    tr = load_preset(preset)["training"]
    if steps is None:
        if "steps" not in tr:
            raise MrfreconError(f"--steps: the {preset} preset's budget is in epochs; the budget test needs one in "
                                "optimizer steps (give --steps)")
        steps = int(tr["steps"])
    if steps < 1:
        raise MrfreconError(f"--steps: expected >= 1, got {steps}")
    long_steps = int(factor) * int(steps)
    base_dir = Path(base) if base is not None else None
    if base_dir is not None and not (base_dir / "runs").is_dir():
        raise MrfreconError(f"{base_dir}: --base: expected an `experiment compare` folder with runs/, found none")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sw = Stopwatch()
    bar = progress if progress is not None else no_bar
    with sw("cohort (simulate or load)"):
        index = ensure_cohort(cohort, out, preset=preset, seed=seed, subjects=subjects, workers=workers, log=log, bar=bar)
    test_paths = index.paths("test")
    seed_list = list(range(seed, seed + seeds))

    def spec(m: str, s: int, n: int, root: Path) -> RunSpec:  # root/steps-<n>/<target>/<model>/seed-<s>
        return RunSpec(f"{m} s{s} {n} steps", m, target, s, root / f"steps-{n}" / target / m / f"seed-{s}", steps=n)

    long_specs = [spec(m, s, long_steps, out / "runs") for m in models for s in seed_list]
    short_specs = [spec(m, s, steps, out / "runs") for m in models for s in seed_list]
    with sw("training"):
        if base_dir is not None:  # the base's runs are checked before anything is trained
            runs_short = [train_or_reuse(sp.name, sp.model, index, base_dir / "runs" / target / sp.model / f"seed-{sp.seed}",
                                         preset=preset, target=target, seed=sp.seed, steps=steps, reuse_only=True, log=log)
                          for sp in short_specs]
            runs_long = train_runs(long_specs, index, preset=preset, jobs=jobs, steps=long_steps, log=log,
                                   progress=progress)
        else:
            trained = train_runs(short_specs + long_specs, index, preset=preset, jobs=jobs, steps=steps, log=log,
                                 progress=progress)
            runs_short, runs_long = trained[: len(short_specs)], trained[len(short_specs):]
    bad = [r.name for r in runs_short + runs_long if not r.ok]
    if bad:
        raise MrfreconError(f"{out}: run(s) diverged, nothing to compare: {', '.join(bad)} (see their train.log)")
    with sw("prediction (test split)"):
        preds, fig = predict_stage(runs_short + runs_long, test_paths, bar)
    has_truth = all(m in fig["scan"].maps for m in MAPS)
    against_list = ["reference"] + (["ground-truth"] if has_truth else [])
    stems = [p.stem for p in test_paths]

    # per-subject NRMSE, each subject averaged over the seeds; per-seed means for the spread
    cells: dict[str, list[DoublingCell]] = {}
    verdicts: dict[str, tuple[str, str]] = {}
    per_rows: list[dict[str, Any]] = []
    at_budget: dict[int, dict[str, dict[tuple[str, str], np.ndarray]]] = {steps: {}, long_steps: {}}
    with sw("evaluation"):
        for m in models:
            vals: dict[str, dict[tuple[str, str], list[list[float]]]] = {"short": {}, "long": {}}
            for kind, runs in (("short", runs_short), ("long", runs_long)):
                for r in (r for r in runs if r.model == m):
                    for a in against_list:
                        ev = evaluate(preds[r.name], test_paths, against=a, maps=MAPS, rois=DEFAULT_ROIS)
                        for mp in MAPS:
                            v = [float(ev.per_scan[s][mp]["nrmse"]) for s in stems]
                            vals[kind].setdefault((a, mp), []).append(v)
                            per_rows += [{"model": m, "steps": steps if kind == "short" else long_steps, "seed": r.seed,
                                          "against": a, "map": mp, "scan": s, "nrmse": f"{x:.6g}"}
                                         for s, x in zip(stems, v, strict=True)]
            short = {k: np.mean(v, axis=0) for k, v in vals["short"].items()}
            long = {k: np.mean(v, axis=0) for k, v in vals["long"].items()}
            at_budget[steps][m], at_budget[long_steps][m] = short, long
            if seeds >= 2:
                sd = {k: float(np.std([np.mean(x) for x in v])) for k, v in vals["short"].items()}
            else:
                sd = _base_seed_sd(base_dir, m, target) if base_dir is not None else {}
            cells[m] = doubling_cells(m, short, long, tolerance=tolerance, alpha=alpha, seed_sd=sd)
            verdicts[m] = doubling_verdict(cells[m], factor=int(factor), tolerance=tolerance, alpha=alpha)
            log(f"{m}: {verdicts[m][0]} at {steps} steps — {verdicts[m][1]}")
        ranking: dict[int, list[dict[str, Any]]] = {}
        base_means: dict[tuple[str, str, str], float] = {}
        if len(models) >= 2:
            ranking = {n: equal_budget_rows(at_budget[n], alpha=alpha) for n in (steps, long_steps)}
            # Table 1's baselines that apply to each target (TableSpec), less the two box smoothers
            bmaps, _ = baseline_stage(index, [target], test_paths, from_reference=("matching", "matching-median5"))
            for a in against_list:
                for key in TableSpec(target, a).baselines():
                    if key in bmaps:
                        ev = evaluate(bmaps[key], test_paths, against=a, maps=MAPS, rois=DEFAULT_ROIS)
                        for mp in MAPS:
                            base_means[(key[1], a, mp)] = float(np.nanmean([ev.per_scan[x][mp]["nrmse"] for x in stems]))

    rep = Report(out, f"The budget-doubling test: {steps} against {long_steps} optimizer steps")
    rep.text(f"Each network trained with the {preset} preset's recipe at {steps} and {long_steps} steps (the schedule "
             f"spans each budget), seed(s) {', '.join(map(str, seed_list))}, on the {target} maps; scored on the "
             f"{len(stems)} test subjects of `{index.root}`. A cell: the mean over subjects of each subject's NRMSE "
             "(averaged over the seeds); *change* = long ÷ short − 1; paired two-sided Wilcoxon signed-rank test over "
             "the subjects, Bonferroni over each network's maps × targets; *seed SD*: SD over training seeds of the "
             f"mean NRMSE at {steps} steps. **Verdict**: converged at {steps} steps when no map improves by more than "
             f"{tolerance:.1%} with p < {alpha:g} (corrected) at {long_steps}; undecided when the test subjects are "
             "too few for any p-value to reach that (mrfrecon.experiments.budget).")
    rows, crows = [], []
    for m in models:
        for c in cells[m]:
            rows.append({"network": METHOD_NAMES[m], "against": c.against, "map": MAP_LABELS[c.map],
                         f"{steps} steps": fmt(c.short), f"{long_steps} steps": fmt(c.long),
                         "change": f"{c.change:+.1%}" if math.isfinite(c.change) else "nan",
                         "subjects better": f"{c.better} / {c.n}", "p (corrected)": fmt(c.p_corrected, 2),
                         "seed SD": fmt(c.seed_sd), "gain > tolerance, significant": "yes" if c.material else ""})
            crows.append({"model": m, "against": c.against, "map": c.map, "short_steps": steps, "long_steps": long_steps,
                          "short": f"{c.short:.6g}", "long": f"{c.long:.6g}", "change": f"{c.change:.6g}",
                          "better": c.better, "n": c.n, "p": f"{c.p:.6g}", "p_corrected": f"{c.p_corrected:.6g}",
                          "seed_sd": f"{c.seed_sd:.6g}", "material": c.material, "note": c.note})
    rep.text("## Test NRMSE at both budgets")
    rep.table("doubling", rows, list(rows[0]), csv_rows=crows, csv_columns=list(crows[0]))
    vrows = [{"network": METHOD_NAMES[m], f"at {steps} steps": v, "why": why} for m, (v, why) in verdicts.items()]
    rep.text("## Verdict per network")
    rep.table("verdict", vrows, list(vrows[0]))
    if ranking:
        _ranking_section(rep, ranking, base_means, list(models), alpha)
    atomic = out / "verdict.json"
    atomic_write_text(atomic, json.dumps({"steps": steps, "long_steps": long_steps, "tolerance": tolerance,
                                          "alpha": alpha, "verdicts": {m: {"verdict": v, "reason": why}
                                                                       for m, (v, why) in verdicts.items()}}, indent=1))
    rep.link(atomic, "the verdicts, machine-readable")
    fper = write_csv(out / "per_scan.csv", per_rows, ["model", "steps", "seed", "against", "map", "scan", "nrmse"])
    rep.link(fper, "every run's NRMSE per test subject")
    rep.text("")
    trows = [{"run": r.name, "status": r.status, "steps trained": r.steps_done, "best step": r.best_step,
              "per-run criterion": "converged" if r.converged else "NOT converged", "why": r.convergence,
              "val NRMSE": fmt(r.val_nrmse), "folder": rep.rel(r.path)} for r in runs_short + runs_long]
    rep.text("## Training runs\n\nThe per-run criterion (mrfrecon.training.stopping.assess_convergence) beside each; "
             "the doubling verdict above is the measured one.")
    rep.table("training", trows, list(trows[0]))
    for r in runs_short + runs_long:
        curves = r.path / "learning_curves.png"
        if curves.is_file():
            rep.figure(curves, f"{r.name}: learning curves")
    settings = {"preset": preset, "cohort": str(index.root), "models": list(models), "short budget (steps)": steps,
                "long budget (steps)": long_steps, "target": target, "seeds": seed_list, "tolerance": tolerance,
                "alpha": alpha, "base (short runs)": str(base_dir) if base_dir else "-", "training jobs": jobs,
                "test subjects": len(stems)}
    report = rep.write(settings=settings, seeds={"training (model init, patch order)": ", ".join(map(str, seed_list))},
                       stopwatch=sw)
    log(f"wrote {report} (peak memory {peak_rss_mb():.0f} MiB)")
    return BudgetResult(out, (steps, long_steps), cells, verdicts, runs_short + runs_long, report, dict(sw.stages),
                        ranking)


def _ranking_section(rep: Report, ranking: Mapping[int, Sequence[Mapping[str, Any]]],
                     base_means: Mapping[tuple[str, str, str], float], models: Sequence[str], alpha: float) -> None:
    """The report's tables of the networks at each budget and of the pairs' order across budgets."""
    names = {"constant": "constant", "matching": "matching", "matching-median5": "matching, median 5 × 5"}
    bases = [b for b in names if any(k[0] == b for k in base_means)]
    rows, crows = [], []
    for n, rs in ranking.items():
        for r in rs:
            row = {"steps": n, "against": r["against"], "map": MAP_LABELS[r["map"]]}
            for m in models:
                c = r[m]
                v = fmt(c["mean"])
                row[METHOD_NAMES[m]] = f"**{v}**" if m == r["best"] else (f"{v} ≈" if c["tied"] else v)
                crows.append({"steps": n, "against": r["against"], "map": r["map"], "method": m, "mean": f"{c['mean']:.6g}",
                              "median": f"{c['median']:.6g}", "best": m == r["best"],
                              "p_corrected_vs_best": f"{c['p_corrected']:.6g}", "tied_with_best": c["tied"]})
            for b in bases:
                v = base_means.get((b, r["against"], r["map"]))
                row[names[b]] = fmt(v) if v is not None else "-"
                if v is not None:
                    crows.append({"steps": n, "against": r["against"], "map": r["map"], "method": b, "mean": f"{v:.6g}",
                                  "median": "", "best": False, "p_corrected_vs_best": "", "tied_with_best": ""})
            rows.append(row)
    rep.text("## The networks at an equal budget\n\nMean test NRMSE per network (each subject averaged over the "
             "seeds) at each budget; **bold**: the best network (lowest median over the subjects); `≈`: not "
             f"significantly different from it (paired Wilcoxon, Bonferroni over the other {len(models) - 1} "
             f"network(s), α {alpha:g}); the baselines need no training (mrfrecon.experiments.baselines).")
    rep.table("ranking", rows, list(rows[0]), csv_rows=crows, csv_columns=list(crows[0]))
    steps = list(ranking)
    pairs = order_kept(ranking[steps[0]], ranking[steps[-1]], models)
    prow = [{"networks": f"{METHOD_NAMES[p['a']]} vs {METHOD_NAMES[p['b']]}",
             f"order at {steps[0]} kept at {steps[-1]} steps": f"{p['kept']} / {p['cells']}",
             "flips": ", ".join(p["flips"]) or "none"} for p in pairs]
    rep.text("Which of each pair of networks has the lower mean, at both budgets:")
    rep.table("order", prow, list(prow[0]))
