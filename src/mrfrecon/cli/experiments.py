"""The ``mrfrecon experiment`` commands: the paper's three experiments, one command each.

Registered on the main group (:data:`mrfrecon.cli.common.cli`) when this module is imported::

    mrfrecon experiment compare --preset demo --out results/compare [--cohort C] [--target both]
    mrfrecon experiment receptive-field --preset demo --out results/rf [--fields 1,3,5,...,21]
    mrfrecon experiment occlusion --out results/occlusion [--checkpoint C] [--preset demo]

Without ``--cohort`` the preset's cohort is simulated into ``OUT/cohort`` (or reused). Each
command writes a self-contained result folder with ``report.md`` (see
:mod:`mrfrecon.experiments`).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MrfreconError
from ..presets import PRESETS
from .common import PROCESSES, SEED, Num, check_out, cli, parse_model_options, progress, set_threads

_PRESETS = list(PRESETS)


def _common(f):
    """Options shared by the three experiments."""
    opts = [
        click.option("--cohort", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Cohort folder (cohort.json); default: simulate the preset's cohort into OUT/cohort (or reuse it)."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
                     help="Result folder: report.md, tables (CSV, Markdown), figures (PNG), runs/ (checkpoints)."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of training and of a simulated cohort."),
        click.option("--epochs", type=Num(1, 100_000, integer=True), default=None,
                     help="Override the preset's number of training epochs (presets with an epoch budget: paper)."),
        click.option("--steps", type=Num(1, 10_000_000, integer=True), default=None,
                     help="Override the preset's budget in optimizer steps, the same for every network (tiny, demo, "
                          "study); the schedule spans it."),
        click.option("--subjects", type=Num(3, 100_000, integer=True), default=None, help="Subjects of a simulated cohort (default: the preset's)."),
        click.option("--workers", type=PROCESSES, default=1, show_default=True, help="Processes simulating the cohort."),
        click.option("--threads", type=Num(1, 1024, integer=True), default=None, help="Torch CPU threads (default: the free cores)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@cli.group()
def experiment() -> None:
    """The paper's experiments (Balsiger et al., MIDL 2019, section 3), one command each."""


@experiment.command("compare")
@click.option("--preset", type=click.Choice(_PRESETS), default="demo", show_default=True,
              help="Cohort size and training settings (tiny: tests; demo: 2-core CPU, minutes; study: 2-core CPU, "
                   "hours, decides the ranking; paper: one GPU).")
@_common
@click.option("--seeds", type=Num(1, 1000, integer=True), default=None,
              help="Training seeds per network (SEED, SEED+1, ...; default: the preset's).")
@click.option("--jobs", type=Num(1, 256, integer=True), default=1, show_default=True,
              help="Trainings at once, each a process with one torch thread (2 on an idle 2-core machine).")
@click.option("--patience", type=Num(0, 100_000, integer=True), default=None,
              help="Early stopping: validations without a better (smoothed) validation NRMSE (0: off; default: the preset's).")
@click.option("--target", type=click.Choice(["reference", "ground-truth", "both"]), default="reference", show_default=True,
              help="Train on the dictionary-matching maps (the paper), on the ground truth, or both ways side by side.")
@click.option("--models", default="proposed,cohen2018,fang2018,balsiger2018", show_default=True,
              help="Comma-separated networks to compare.")
@click.option("--width", type=Num(0.0, 16.0, lo_open=True), default=None, help="Override the preset's channel-width multiplier.")
@click.option("--patch", type=Num(1, 1024, integer=True), default=None, help="Override the preset's output patch size.")
@click.option("--batchnorm", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="on: the networks as published; off: every network without batch normalization (a deviation, "
                   "docs/RESULTS.md).")
@click.option("--augment/--no-augment", default=None,
              help="Flips and quarter turns of the training samples, as Fang et al.'s public code (default: the preset's).")
def compare_cmd(preset, cohort, out, seed, epochs, steps, subjects, workers, threads, seeds, jobs, patience, target, models, width,
                patch, batchnorm, augment) -> None:
    """Experiment 1 (Table 1, Figure 2): proposed vs Cohen, Fang and Balsiger 2018 on the test split,
    against the reference maps and the ground truth; dictionary matching as a fifth method."""
    from ..experiments.compare import run_compare

    check_out(out, kind="dir")
    set_threads(threads)
    res = run_compare(out, preset=preset, cohort=cohort, target=target, seed=seed, seeds=seeds, epochs=epochs,
                      steps=steps, subjects=subjects, width=width, patch=patch, patience=patience,
                      models=[m.strip() for m in models.split(",") if m.strip()], workers=workers, jobs=jobs,
                      batchnorm=batchnorm == "on", augment=augment, log=click.echo, progress=progress)
    for stem, table in res.tables.items():
        click.echo(f"\nTable 1 — {res.titles[stem]} ({stem}):\n{table.rstrip()}")
    click.echo(f"\nreport: {res.report}")


@experiment.command("receptive-field")
@click.option("--preset", type=click.Choice(_PRESETS), default="demo", show_default=True,
              help="Cohort size and training settings.")
@_common
@click.option("--fields", default="1,3,5,7,9,11,13,15,17,19,21", show_default=True,
              help="Receptive fields (odd sizes 1-21) of the proposed CNN.")
@click.option("--target", type=click.Choice(["reference", "ground-truth"]), default="reference", show_default=True,
              help="Training target, and the maps the NRMSE is computed against.")
@click.option("--width", type=Num(0.0, 16.0, lo_open=True), default=None, help="Override the preset's channel-width multiplier.")
@click.option("--patch", type=Num(1, 1024, integer=True), default=None, help="Override the preset's output patch size.")
@click.option("--jobs", type=Num(1, 256, integer=True), default=1, show_default=True,
              help="Trainings at once, each a process with one torch thread.")
@click.option("--patience", type=Num(0, 100_000, integer=True), default=None,
              help="Early stopping: validations without a better (smoothed) validation NRMSE (0: off; default: the preset's).")
@click.option("--batchnorm", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="on: the proposed CNN as published; off: without batch normalization (a deviation).")
@click.option("--seeds", type=Num(1, 1000, integer=True), default=1, show_default=True,
              help="Training seeds per field (SEED, SEED+1, ...); a scan's NRMSE is the mean over them.")
def receptive_field_cmd(preset, cohort, out, seed, epochs, steps, subjects, workers, threads, fields, target, width, patch, jobs,
                        patience, batchnorm, seeds) -> None:
    """Experiment 2 (Figure 3): the proposed CNN per receptive field; per-scan NRMSE boxplots and paired
    Wilcoxon signed-rank tests against the best field, Bonferroni-corrected."""
    from ..experiments.receptive_field import parse_fields, run_receptive_field

    check_out(out, kind="dir")
    set_threads(threads)
    res = run_receptive_field(out, preset=preset, cohort=cohort, fields=parse_fields(fields), target=target, seed=seed,
                              seeds=seeds,
                              epochs=epochs, steps=steps, subjects=subjects, width=width, patch=patch, patience=patience,
                              workers=workers, jobs=jobs, batchnorm=batchnorm == "on",
                              log=click.echo, progress=progress)
    for m, rows in res.tests[target].items():
        best = next(r for r in rows if r.best)
        sig = [r.label for r in rows if r.significant]
        click.echo(f"{m}: best receptive field {best.label}×{best.label} (median NRMSE {best.median:.4g}); "
                   f"significantly worse: {', '.join(sig) if sig else 'none'}")
    click.echo(f"report: {res.report}")


@experiment.command("occlusion")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Trained network (checkpoint_best.pt or shipped:<name>); default: train the proposed CNN as in compare.")
@click.option("--preset", type=click.Choice(_PRESETS), default=None,
              help="Preset of the simulated cohort and of training (default: the checkpoint's, else demo).")
@_common
@click.option("--frames-per-batch", type=Num(1, 10**6, integer=True), default=None, help="Occluded copies per forward pass (default: by memory).")
def occlusion_cmd(checkpoint, preset, cohort, out, seed, epochs, steps, subjects, workers, threads, frames_per_batch) -> None:
    """Experiment 3 (Figure 4): each temporal frame blacked out in turn (real and imaginary channels, after
    normalization); importance = |NRMSE(occluded) − NRMSE(original)| per frame and map on the test split."""
    from ..experiments.occlusion import run_occlusion

    if frames_per_batch is not None and frames_per_batch < 1:
        raise MrfreconError(f"--frames-per-batch: expected >= 1, got {frames_per_batch}")
    check_out(out, kind="dir")
    set_threads(threads)
    from ..shipped import resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint) if checkpoint is not None else None
    res = run_occlusion(out, checkpoint=checkpoint, preset=preset, cohort=cohort, seed=seed, epochs=epochs, steps=steps,
                        subjects=subjects, frames_per_batch=frames_per_batch, workers=workers, log=click.echo,
                        progress=progress)
    for j, m in enumerate(res.maps):
        top = res.importance[:, j].argsort()[::-1][:5]
        click.echo(f"{m}: most important frames {', '.join(str(int(t)) for t in top)}")
    click.echo(f"report: {res.report}")


@experiment.command("overfit")
@click.option("--cohort", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Cohort folder (cohort.json); its first --subjects training subjects are used.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Result folder: report.md, overfit.csv/.md, runs/<network>/ (rerun to resume or reuse).")
@click.option("--models", default="proposed,cohen2018,fang2018,balsiger2018", show_default=True,
              help="Comma-separated networks; NAME:VARIANT with --option VARIANT.KEY=VALUE trains a variant.")
@click.option("--subjects", type=Num(1, 10_000, integer=True), default=4, show_default=True,
              help="Training subjects to fit.")
@click.option("--preset", type=click.Choice(_PRESETS), default="study", show_default=True,
              help="Training scheme (width, batch, schedule, head init, patch).")
@click.option("--steps", type=Num(1, 10**8, integer=True), default=None, help="Optimizer steps (default: the preset's budget).")
@click.option("--schedule", default=None, help="Learning-rate schedule (see `mrfrecon train --help`; default: the preset's).")
@click.option("--lr", type=Num(0.0, 10.0, lo_open=True), default=None, help="Base learning rate (default: the preset's).")
@click.option("--head-init", type=click.Choice(["paper", "target"]), default=None, help="See `mrfrecon train --help`.")
@click.option("--map-weights", type=click.Choice(["equal", "inverse-variance"]), default=None, help="See `mrfrecon train --help`.")
@click.option("--t1h2o-loss-mask", type=click.Choice(["foreground", "evaluation"]), default=None, help="See `mrfrecon train --help`.")
@click.option("--option", "model_option", multiple=True, metavar="NAME.KEY=VALUE",
              help="A network option for the run NAME of --models (e.g. proposed:nobn.batchnorm=false).")
@click.option("--target", type=click.Choice(["reference", "ground-truth"]), default="reference", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--threads", type=Num(1, 1024, integer=True), default=None, help="Torch CPU threads (default: the free cores).")
def overfit_cmd(cohort, out, models, subjects, preset, steps, schedule, lr, head_init, map_weights, t1h2o_loss_mask,
                model_option, target, seed, threads) -> None:
    """The overfit test: each network trained on a few subjects, then scored on the same subjects; it passes
    when its T1H2O NRMSE is at most half the constant predictor's (a network that cannot fit its own training
    scans has a defect in how it trains)."""
    from ..experiments.overfit import run_overfit
    set_threads(threads)
    names = [m.strip() for m in models.split(",") if m.strip()]
    known = ("proposed", "cohen2018", "fang2018", "balsiger2018")
    bad = [n for n in names if n.split(":", 1)[0] not in known]
    if bad or not names:
        raise MrfreconError(f"--models: unknown network(s) {', '.join(bad) or '(none)'}; known: {', '.join(known)}")
    opts: dict[str, dict] = {}
    for item in model_option:
        run, dot, rest = item.partition(".")
        if not dot or run not in names:
            raise MrfreconError(f"--option {item}: expected NAME.KEY=VALUE with NAME one of --models ({', '.join(names)})")
        opts.setdefault(run, {}).update(parse_model_options([rest]))
    res = run_overfit(out, cohort=cohort, models=names, subjects=subjects, steps=steps, preset=preset, seed=seed,
                      target=target, schedule=schedule, lr=lr, head_init=head_init, map_weights=map_weights,
                      t1h2o_loss_mask=t1h2o_loss_mask, model_options=opts, log=click.echo)
    for n, ok in res.passed.items():
        click.echo(f"{n}: T1H2O {res.scores[n]['t1h2o']:.4f} vs constant {res.constant['t1h2o']:.4f} — "
                   f"{'pass' if ok else 'FAIL'}")
    click.echo(f"report: {res.report}")


@experiment.command("budget")
@click.option("--preset", type=click.Choice(_PRESETS), default="study", show_default=True,
              help="Cohort size and training recipe.")
@_common
@click.option("--models", default="proposed,cohen2018,fang2018,balsiger2018", show_default=True,
              help="Comma-separated networks to test.")
@click.option("--factor", type=Num(2, 1000, integer=True), default=2, show_default=True,
              help="The long budget is FACTOR × --steps.")
@click.option("--seeds", type=Num(1, 1000, integer=True), default=1, show_default=True,
              help="Training seeds per network (SEED, SEED+1, ...), trained at both budgets.")
@click.option("--target", type=click.Choice(["reference", "ground-truth"]), default="reference", show_default=True,
              help="Training target of the runs.")
@click.option("--base", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="An `experiment compare` folder whose finished runs with the same settings are the --steps runs "
                   "(reused, never trained there).")
@click.option("--tolerance", type=Num(0.0, 1.0), default=0.02, show_default=True,
              help="Relative gain in mean test NRMSE that counts as not converged (when significant).")
@click.option("--jobs", type=Num(1, 256, integer=True), default=1, show_default=True,
              help="Trainings at once, each a process with one torch thread.")
def budget_cmd(preset, cohort, out, seed, epochs, steps, subjects, workers, threads, models, factor, seeds, target, base,
               tolerance, jobs) -> None:
    """The budget-doubling test: each network trained at --steps and at FACTOR × --steps, scored per test
    subject against the reference and the ground truth; converged when the longer budget gains no more than
    --tolerance with significance (paired Wilcoxon, Bonferroni)."""
    from ..experiments.budget import run_budget

    if epochs is not None:
        raise MrfreconError("--epochs: the budget test takes its budget in optimizer steps (--steps)")
    check_out(out, kind="dir")
    set_threads(threads)
    res = run_budget(out, preset=preset, cohort=cohort, models=[m.strip() for m in models.split(",") if m.strip()],
                     steps=steps, factor=factor, seed=seed, seeds=seeds, target=target, base=base, tolerance=tolerance,
                     subjects=subjects, workers=workers, jobs=jobs, log=click.echo, progress=progress)
    for m, (verdict, why) in res.verdicts.items():
        click.echo(f"{m}: {verdict} at {res.steps[0]} steps — {why}")
    click.echo(f"report: {res.report}")
