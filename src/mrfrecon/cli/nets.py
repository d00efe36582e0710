"""The network commands of ``mrfrecon``: ``train``, ``predict``, ``evaluate``.

Registered on the main group (:data:`mrfrecon.cli.common.cli`) when this module is imported
(:mod:`mrfrecon.cli` does so). For several GPUs, launch training with torchrun::

    torchrun --nproc_per_node 4 -m mrfrecon train --model proposed --cohort C --out R
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MrfreconError
from ..presets import PRESETS
from .common import SEED, Num, _read_opts, _with, check_out, cli, parse_model_options, progress, read_options

_MODELS = ["proposed", "cohen2018", "fang2018", "balsiger2018"]


@cli.command("train")
@click.option("--model", type=click.Choice(_MODELS), required=True, help="Network (see mrfrecon.models).")
@click.option("--cohort", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Cohort folder with cohort.json (train and val splits are used).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Run folder: checkpoint_best.pt, checkpoint_last.pt, log.csv.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="tiny", show_default=True,
              help="Budget, batch size, learning rate and schedule, width, patch size, early stopping.")
@click.option("--target", type=click.Choice(["reference", "ground-truth"]), default="reference", show_default=True,
              help="Train on the dictionary-matching maps (the paper) or the simulation's ground truth.")
@click.option("--steps", type=Num(1, 100_000_000, integer=True), default=None,
              help="The budget in optimizer steps (the cap with --patience; default: the preset's).")
@click.option("--epochs", type=Num(1, 100_000, integer=True), default=None,
              help="The budget in passes over the training samples instead of --steps.")
@click.option("--schedule", default=None, metavar="NAME[:K=V,...]",
              help="Learning-rate schedule: constant (the paper), cosine[:warmup=W,final=F], step[:warmup=W,every=S,decay=D], "
                   "plateau[:warmup=W,decay=D,patience=P,floor=F] (default: the preset's).")
@click.option("--eval-every", type=Num(1, 100_000_000, integer=True), default=None,
              help="Optimizer steps between evaluations, checkpoints and log rows (default: the preset's, else one epoch).")
@click.option("--patience", type=Num(0, 100_000, integer=True), default=None,
              help="Early stopping after this many evaluations without a better smoothed validation NRMSE (0: off; "
                   "default: the preset's).")
@click.option("--stop-window", type=Num(1, 1000, integer=True), default=None,
              help="Evaluations in the running median that early stopping watches (1: the raw curve; default: the preset's).")
@click.option("--min-steps", type=Num(0, 100_000_000, integer=True), default=None,
              help="Steps every run trains before it may stop early (default: the preset's).")
@click.option("--augment/--no-augment", default=None,
              help="Flips and quarter turns of the training patches (default: the preset's).")
@click.option("--head-init", type=click.Choice(["paper", "target"]), default=None,
              help="paper: Glorot weights, unit-scale batch norms; target: the output starts at the training targets' "
                   "mean and SD per map (architecture unchanged; default: the preset's).")
@click.option("--map-weights", type=click.Choice(["equal", "inverse-variance"]), default=None,
              help="How the maps' loss terms add up: equal (the paper) or each divided by its target's variance in its loss "
                   "mask (default: the preset's).")
@click.option("--init", "init", default=None, metavar="CHECKPOINT|shipped:NAME",
              help="Fine-tune: start from a trained checkpoint's weights and map normalization (same sequence, maps, network).")
@click.option("--t1h2o-loss-mask", type=click.Choice(["foreground", "evaluation"]), default=None,
              help="Where the T1H2O loss counts: every foreground voxel (the paper) or only where the target FF < 0.65, "
                   "the voxels scored (a deviation; default: the preset's).")
@click.option("--batch-size", type=Num(1, 65_536, integer=True), default=None, help="Override the preset's (global) batch size.")
@click.option("--lr", type=Num(0.0, 10.0, lo_open=True), default=None, help="Override the learning rate (paper: 1e-3).")
@click.option("--width", type=Num(0.0, 16.0, lo_open=True), default=None, help="Channel-width multiplier (paper networks: 1.0).")
@click.option("--patch", type=Num(1, 1024, integer=True), default=None, help="Output patch size of patch/pixel models (paper: 32).")
@click.option("--receptive-field", type=Num(1, 21, integer=True), default=None, help="proposed only: 1, 3, ..., 21 (paper 3.2; default 11).")
@click.option("--option", "model_option", multiple=True, metavar="NAME=VALUE",
              help="A network option of mrfrecon.models.MODELS (repeatable), e.g. batchnorm=false, activation=relu; "
                   "true/false, numbers and words are read as such.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoint_last.pt.")
@click.option("--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]), default="auto", show_default=True,
              help="Mixed precision on CUDA (always fp32 on CPU).")
@click.option("--workers", type=Num(0, 64, integer=True), default=None,
              help="DataLoader worker processes (default: 0 on CPU, half the cores up to 8 on CUDA).")
@click.option("--half-inputs", is_flag=True,
              help="Hold the normalized series as float16 in memory (half the RAM; paper scale ~32 GB instead of ~64).")
def train_cmd(model, cohort, out, preset, target, steps, epochs, schedule, eval_every, patience, stop_window, min_steps,
              augment, head_init, map_weights, init, t1h2o_loss_mask, batch_size, lr, width, patch, receptive_field, model_option, seed, resume, amp,
              workers, half_inputs) -> None:
    """Train a network on a cohort; keeps the model with the best validation NRMSE."""
    import sys

    from ..training import train

    check_out(out, kind="dir")
    options = {"receptive_field": receptive_field} if receptive_field is not None else {}
    if options and model != "proposed":
        raise MrfreconError("--receptive-field applies to --model proposed only")
    options.update(parse_model_options(model_option))
    best = train(model, cohort, out, preset=preset, target=target, seed=seed, epochs=epochs, steps=steps,
                 batch_size=batch_size, lr=lr, schedule=schedule, eval_every=eval_every, width=width, patch=patch,
                 model_options=options, patience=patience, stop_window=stop_window, min_steps=min_steps, augment=augment,
                 head_init=head_init, map_weights=map_weights, init=init, t1h2o_loss_mask=t1h2o_loss_mask, resume=resume, amp=amp,
                 workers=workers, half_inputs=half_inputs, log=click.echo, show_progress=sys.stderr.isatty())
    click.echo(f"best checkpoint: {best}")


@cli.command("predict")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), required=True, multiple=True,
              help="checkpoint_best.pt of a training run, or shipped:<name> (see `mrfrecon shipped`). Repeat it for an "
                   "ensemble (e.g. a study's seeds): the mean map and sd/<map>, the spread across members.")
@click.argument("scans", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for <scan>_maps.h5 and BIDS-style NIfTI maps with JSON sidecars.")
@click.option("--no-nifti", is_flag=True, help="Write only the HDF5 maps.")
@click.option("--bids-derivatives", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="BIDS derivative dataset for the NIfTI maps (sub-*/[ses-*/]anat|fmap/, dataset_description.json); "
                   "default: <bids root>/derivatives/mrfrecon when --out lies inside a BIDS dataset.")
@click.option("--tile", type=Num(1, 4096, integer=True), default=None, help="Predict in output tiles of this size (less memory, same result).")
@click.option("--dictionary", "dict_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="An ensemble's data-consistency check: the maps re-simulated against the series and matching "
                   "(flags/<map>, consistency/*), combined into the SD (docs/UNCERTAINTY.md).")
@click.option("--sd-calibration", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="An ensemble's SD scales per map (mrfrecon uncertainty calibrate).")
@_with(_read_opts)
def predict_cmd(checkpoint: tuple[Path, ...], scans: tuple[Path, ...], out: Path, no_nifti: bool, bids_derivatives: Path | None,
                tile: int | None, dict_path: Path | None, sd_calibration: Path | None, **read) -> None:
    """Predict T1H2O (ms), FF and B1 maps of SCANS with a trained network: scan .h5 files or any
    input `mrfrecon import` reads (the phase part of a BIDS part-mag/part-phase pair is found by name).

    NIfTI maps named from the input's BIDS entities (sub-01_part-mag_MRF.nii.gz → sub-01_…):
    anat/…_desc-water_T1map (s), anat/…_FFmap (%), fmap/…_desc-mrf_TB1map (%), each with a JSON
    sidecar, in a BIDS derivative dataset (--bids-derivatives), else beside the HDF5 maps."""
    import time

    from ..checkpoint import load_checkpoint
    from ..inference import plan_outputs, predict_folder
    from ..io.bids import plan_derivatives
    from ..io.readers import drop_partners, scan_stem
    from ..runtime import default_device
    from ..shipped import resolve_checkpoint

    members = [resolve_checkpoint(c) for c in checkpoint]  # shipped:<name> → its file, SHA-256 checked
    checkpoint = members[0]
    check_out(out, kind="dir", inputs=(*members, *scans))
    if no_nifti and bids_derivatives is not None:
        raise MrfreconError("--bids-derivatives: the derivative dataset holds the NIfTI maps; drop --no-nifti")
    opts = read_options(**read)
    t0 = time.perf_counter()
    ck = load_checkpoint(checkpoint)  # before the bar: a bad file is one line of error
    net = ck.build_model(default_device())  # a spec that builds no network, too; built once for all scans
    if len(members) > 1:
        from ..uncertainty.ensemble import check_ensemble

        ensemble = [ck, *(load_checkpoint(c) for c in members[1:])]
        check_ensemble(ensemble)
    elif dict_path is not None or sd_calibration is not None:
        raise MrfreconError("--dictionary and --sd-calibration give an ensemble's uncertainty: an ensemble of one has no "
                            "spread; repeat --checkpoint (e.g. a study's seeds)")
    inputs = drop_partners(list(scans))
    deriv = None if no_nifti else plan_derivatives(out, {str(p): scan_stem(p) for p in inputs}, bids_derivatives)
    if deriv is not None:
        check_out(deriv, kind="dir", inputs=(checkpoint, *scans))
    for outs in plan_outputs(ck, inputs, out, nifti=not no_nifti, bids_derivatives=deriv):
        for o in outs:
            check_out(o, kind="file", inputs=(checkpoint, *scans))
    with progress(len(inputs), "predicting") as cb:
        written = predict_folder(ensemble if len(members) > 1 else ck, inputs, out, nifti=not no_nifti, tile=tile,
                                 progress=cb, read_options=opts, bids_derivatives=deriv, net=net, dictionary=dict_path,
                                 sd_calibration=sd_calibration)
    where = f"{out} (HDF5) and the BIDS derivative dataset {deriv}" if deriv is not None else str(out)
    click.echo(f"predicted {len(written)} scan(s) in {time.perf_counter() - t0:.2f} s; wrote {where}")


@cli.command("evaluate")
@click.option("--predictions", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder of <scan>_maps.h5 files (mrfrecon predict).")
@click.option("--cohort", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--against", type=click.Choice(["reference", "ground-truth"]), default="reference", show_default=True,
              help="Compare with the dictionary-matching maps (the paper) or the ground truth.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for per_scan.csv, summary.csv, summary.md.")
@click.option("--rois", type=click.Choice(["major-muscles", "all-labels"]), default="major-muscles", show_default=True,
              help="ROIs whose means enter R²: the labelled muscles (the paper) or every label.")
def evaluate_cmd(predictions: Path, cohort: Path, split: str, against: str, out: Path, rois: str) -> None:
    """NRMSE, PSNR, SSIM per scan (mean ± SD) and R² of ROI means, as in the paper (section 2.3);
    the report names the ROI set."""
    from ..evaluation import evaluate, write_report
    from ..io.cohort import CohortIndex

    check_out(out, kind="dir")
    paths = CohortIndex.load(cohort).paths(split)
    if not paths:
        raise MrfreconError(f"{cohort}: the {split} split is empty")
    result = evaluate(predictions, paths, against=against, rois=rois)
    write_report(result, out, title=f"{predictions} on the {split} split of {cohort}")
    click.echo((out / "summary.md").read_text().rstrip())



@cli.command("shipped")
def shipped_cmd() -> None:
    """List the checkpoints shipped with mrfrecon (use them as --checkpoint shipped:<name>)."""
    from ..shipped import shipped_checkpoints, shipped_dir

    table = shipped_checkpoints()
    if not table:
        click.echo(f"no shipped checkpoints in {shipped_dir()}")
        return
    for name, e in sorted(table.items()):
        click.echo(f"shipped:{name}  {e.get('model')} trained on {e.get('target')} (seed {e.get('seed')}, width "
                   f"{e.get('width')}), val NRMSE {e.get('val_nrmse', float('nan')):.4f}, sha256 {e['sha256'][:16]}…")
