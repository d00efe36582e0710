"""``mrfrecon cohort create``: a training cohort from a user's own scans (:mod:`mrfrecon.assemble`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MrfreconError
from .common import SEED, Num, _with, check_out, cli, progress, read_options

_read_opts = [  # those of `import`, less --mask, which here names a mask per scan
    click.option("--axes", default=None,
                 help="Storage order of NumPy/MATLAB series, e.g. x,y,z,t (x columns, y rows, z slices, t frames)."),
    click.option("--phase-units", type=click.Choice(["auto", "radians", "scanner", "uint12"]), default="auto",
                 show_default=True, help="Units of phase images (as for `mrfrecon import`)."),
    click.option("--pair", type=click.Choice(["magnitude-phase", "real-imag"]), default=None,
                 help="What two parts of a series are (default: from BIDS part- names, else magnitude-phase)."),
    click.option("--voxel-mm", default=None, help="Voxel size x,y,slice in mm of arrays without geometry (default 1,1,8)."),
    click.option("--orientation", default=None, help="Axis codes of arrays without geometry, e.g. LPS."),
]
_raw_opts = [
    click.option("--window", type=Num(1, 100_000, integer=True), default=None,
                 help="ISMRMRD: KWIC view-sharing window in spokes (default 55)."),
    click.option("--recon", type=click.Choice(["kwic", "kwic-tv"]), default=None,
                 help="ISMRMRD: frame reconstruction (default kwic)."),
    click.option("--tv-weight", type=Num(0.0, 100.0, lo_open=True), default=None,
                 help="ISMRMRD with --recon kwic-tv: TV weight (default 0.04)."),
    click.option("--repetition", default=None, metavar="N|last|all-average", help="ISMRMRD: which train (default last)."),
    click.option("--virtual-coils", default=None, metavar="K|auto", help="ISMRMRD: SVD coil compression (default: all coils)."),
]


@cli.group("cohort")
def cohort_group() -> None:
    """Cohorts of your own scans (simulated cohorts: `mrfrecon simulate`)."""


@cohort_group.command("create")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dictionary", "dict_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Dictionary HDF5 file: the reference maps, and the sequence every scan must have.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Cohort folder: <scan>.h5 per scan, cohort.json with the split.")
@click.option("--split", default=None, metavar="TRAIN/VAL/TEST",
              help="Fractions of the subjects per split, drawn with --seed (default 55/20/20, the paper's).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the split.")
@click.option("--split-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Table with columns subject and split (train, val, test), tab-separated (.csv: commas).")
@click.option("--rois", multiple=True, metavar="SCAN=SEG|FOLDER",
              help="ROI segmentations (NIfTI labels on the scan's voxel grid), repeatable: SCAN=FILE (SCAN: scan id, "
                   "input name or subject), or a folder of <scan>_dseg.nii.gz / <subject>_dseg.nii.gz files.")
@click.option("--labels", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Label table of every segmentation (tab-separated columns index, name; BIDS dseg.tsv); default: "
                   "<segmentation>.tsv beside each, else a dseg.tsv beside it or in the ROI folder.")
@click.option("--mask", "masks", multiple=True, metavar="SCAN=MASK|FOLDER",
              help="Foreground masks (NIfTI on the scan's grid), repeatable, as --rois (folder: <scan>_mask.nii.gz); "
                   "default: the scan's own, else estimated.")
@click.option("--allow-mixed-pixel-size", is_flag=True,
              help="Accept scans of different in-plane pixel sizes (stated in cohort.json) instead of refusing.")
@click.option("--overwrite", is_flag=True, help="Replace scans made with other settings instead of refusing.")
@_with(_read_opts)
@_with(_raw_opts)
def cohort_create(inputs: tuple[Path, ...], dict_path: Path, out: Path, split: str | None, seed: int,
                  split_file: Path | None, rois: tuple[str, ...], labels: Path | None, masks: tuple[str, ...],
                  allow_mixed_pixel_size: bool, overwrite: bool, axes: str | None, phase_units: str, pair: str | None,
                  voxel_mm: str | None, orientation: str | None, window: int | None, recon: str | None,
                  tv_weight: float | None, repetition: str | None, virtual_coils: str | None) -> None:
    """Make a training cohort of INPUTS (scan files, NIfTI, DICOM folders, ISMRMRD raw data,
    NumPy/MATLAB with --axes): reference maps by dictionary matching, the paper's masks, ROI labels,
    a split by subject; consistent sequence, frame count and pixel size. Resumable.

    `mrfrecon train --cohort OUT` (target reference: real scans have no ground truth), `evaluate` and
    the experiments take it as they take a simulated cohort."""
    import time

    from ..assemble import DEFAULT_SPLIT, create_cohort, plan_inputs

    check_out(out, kind="dir", inputs=inputs)
    if split is not None and split_file is not None:
        raise MrfreconError("--split and --split-file: give one of them")
    read = read_options(axes, None, phase_units, pair, voxel_mm, orientation)  # masks are per scan here
    raw = {"window": window, "recon": recon, "tv_weight": tv_weight, "repetition": repetition,
           "coil_compression": virtual_coils}
    info: dict = {}
    t0 = time.perf_counter()
    with progress(len(plan_inputs(inputs)), "cohort create", lazy=True) as cb:
        index = create_cohort(inputs, out, dict_path, split=split or DEFAULT_SPLIT, seed=seed, split_file=split_file,
                              rois=rois, labels=labels, masks=masks, allow_mixed_pixel_size=allow_mixed_pixel_size,
                              overwrite=overwrite, read_options=read, raw_options=raw, progress=cb, log=click.echo,
                              info=info)
    sizes = {k: len(v) for k, v in index.split.items()}
    made = len(info.get("seconds", {}))
    per = f", {(time.perf_counter() - t0) / made:.1f} s per scan made" if made else ""
    pix = "; ".join(index.attrs["pixel_mm"])
    click.echo(f"cohort of {len(index.subjects)} scans in {out} (train/val/test {sizes['train']}/{sizes['val']}/"
               f"{sizes['test']} scans; pixel {pix}){per}")
