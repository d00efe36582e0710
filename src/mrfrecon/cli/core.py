"""The core commands of ``mrfrecon``: sequence, dictionary, match, simulate, figure, demo.

Units on the command line are those of a scanner console: ms, Hz, degrees, fractions.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from .. import __version__
from ..errors import MrfreconError
from ..presets import PRESETS
from .common import PROCESSES, SEED, Num, _read_opts, _seq_opts, _sequence, _with, check_out, cli, progress, read_options, set_threads


# --------------------------------------------------------------------------------- sequence
@cli.group()
def sequence() -> None:
    """Inspect and export MRF sequences."""


@sequence.command("export")
@_with(_seq_opts)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="JSON file to write.")
def sequence_export(sequence_path: Path | None, echo_spacing: float, out: Path) -> None:
    """Write a sequence (per-spoke flip angle in degrees, TE and TR in ms) as JSON."""
    check_out(out, kind="file", suffixes=(".json",))
    seq = _sequence(sequence_path, echo_spacing)
    seq.save(out)
    click.echo(f"wrote {out}")


@sequence.command("show")
@_with(_seq_opts)
def sequence_show(sequence_path: Path | None, echo_spacing: float) -> None:
    """Summarize a sequence: spokes, frames, timing, flip-angle and TE segments."""
    seq = _sequence(sequence_path, echo_spacing)
    click.echo(f"{seq.name}: {seq.spokes} spokes, {seq.frames} frames of {seq.spokes_per_frame} spokes; "
               f"TI {seq.ti_ms:g} ms; {seq.repetitions} repetition(s), recovery {seq.recovery_ms:g} ms; "
               f"train {seq.duration_ms / 1000:.3f} s; digest {seq.digest()}")
    start = 0
    keys = np.stack([seq.flip_angle_deg, seq.te_ms, seq.tr_ms], 1)
    for k in range(1, seq.spokes + 1):
        if k == seq.spokes or not np.array_equal(keys[k], keys[start]):
            fa, te, tr = keys[start]
            click.echo(f"  spokes {start + 1:5d}-{k:5d}: FA {fa:6.2f}°  TE {te:5.2f} ms  TR {tr:5.2f} ms")
            start = k


# --------------------------------------------------------------------------------- dictionary
@cli.group()
def dictionary() -> None:
    """Build and inspect dictionaries."""


@dictionary.command("build")
@_with(_seq_opts)
@click.option("--grid", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Grid spec (TOML or JSON: per axis t1h2o_ms, t1fat_ms, b1, df_hz either values = [...] or "
                   "ranges = [[start, stop, step], ...]); default the clinical grid (45,000 water, 4,125 fat atoms).")
@click.option("--preset-grid", type=click.Choice(["clinical", "mrftools"]), default="clinical", show_default=True,
              help="Built-in grid when no --grid is given.")
@click.option("--energy", type=Num(0.0, 1.0, lo_open=True), default=0.999, show_default=True, help="Energy the temporal SVD basis keeps.")
@click.option("--rank", type=Num(1, 10**6, integer=True), default=None, help="Fixed rank of the temporal basis (overrides --energy).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="HDF5 file to write.")
def dictionary_build(sequence_path, echo_spacing, grid, preset_grid, energy, rank, out) -> None:
    """Simulate water and fat dictionaries on a grid and save them with their temporal basis."""
    check_out(out, kind="file", suffixes=(".h5", ".hdf5"))
    from ..dictionary import Dictionary, Grid

    seq = _sequence(sequence_path, echo_spacing)
    g = Grid.load(grid) if grid else (Grid.mrftools() if preset_grid == "mrftools" else Grid.clinical())
    d = Dictionary.build(seq, g, energy=energy, rank=rank)
    d.save(out)
    click.echo(d.summary())
    click.echo(f"built in {d.build_seconds:.2f} s; wrote {out}")


@dictionary.command("info")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def dictionary_info(path: Path) -> None:
    """Describe a dictionary file."""
    from ..dictionary import Dictionary

    d = Dictionary.load(path)
    click.echo(d.summary())
    click.echo(f"mrfrecon {d.version}; sequence digest {d.sequence.digest()}; T2 water {d.t2h2o_ms:g} ms, fat {d.t2fat_ms:g} ms")


# --------------------------------------------------------------------------------- match
_MATCH_SUFFIXES = (".npz", ".h5", ".hdf5")


def _save_maps(maps: dict[str, np.ndarray], out: Path, attrs: dict[str, str]) -> None:
    """Maps as .npz (with a ``units`` entry) or .h5 (a ``unit`` attribute per dataset)."""
    from ..atomic import atomic_h5, atomic_path
    from ..io.scan import MAP_UNITS

    units = {k: MAP_UNITS.get(k.removeprefix("sd_"), "") for k in maps}
    if out.suffix.lower() == ".npz":
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **maps, units=np.asarray(json.dumps(units)))
    else:
        with atomic_h5(out) as f:
            for k, v in maps.items():
                # SDs and their flags beside the maps: sd/<map>, flags/<map>, sd/noise
                name = f"sd/{k[3:]}" if k.startswith("sd_") else f"flags/{k[5:]}" if k.startswith("flag_") else \
                    "sd/noise" if k == "sigma" else f"maps/{k}"
                f.create_dataset(name, data=v).attrs["unit"] = units[k]
            f.attrs.update(attrs)


def _fingerprint_list(path: Path, axes: str | None) -> np.ndarray | None:
    """A .npy of fingerprints ``(n, frames)`` or ``(frames,)`` (no image: no foreground), else None."""
    if axes is not None or path.suffix.lower() != ".npy" or not path.is_file():
        return None
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise MrfreconError(f"{path}: not a readable .npy array ({e})") from None
    if x.ndim > 2:
        return None
    x = np.asarray(x)
    if not np.iscomplexobj(x) or not np.any(x.imag):
        raise MrfreconError(f"{path}: magnitude-only fingerprints ({x.dtype}, no phase): the dictionary's atoms are "
                            "complex and their phase carries the off-resonance and the water–fat shift; give complex "
                            "fingerprints")
    return x


@cli.command("match")
@click.argument("fingerprints", type=click.Path(path_type=Path))
@click.argument("second", required=False, type=click.Path(path_type=Path))
@click.option("--dictionary", "dict_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Dictionary HDF5 file (mrfrecon dictionary build).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="A folder (<stem>_maps.h5 and BIDS-style NIfTI maps with JSON sidecars), or one file: .npz or .h5.")
@click.option("--method", type=click.Choice(["fast", "exhaustive", "gridded-ff"]), default="fast", show_default=True,
              help="fast: coarse-to-fine two-component; exhaustive: all pairs; gridded-ff: the paper's baseline.")
@click.option("--ff-model", type=click.Choice(["common-phase", "magnitude"]), default="common-phase", show_default=True)
@click.option("--bids-derivatives", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="BIDS derivative dataset for the NIfTI maps (sub-*/[ses-*/]anat|fmap/, dataset_description.json); "
                   "default: <bids root>/derivatives/mrfrecon when a folder --out lies inside a BIDS dataset.")
@click.option("--uncertainty", is_flag=True,
              help="Also write the SD of every map (the Cramér–Rao bound at the matched parameters; docs/UNCERTAINTY.md): "
                   "sd/<map> and flags/<map> beside maps/<map>, and NIfTI <name with desc-…SD> maps.")
@click.option("--noise", default=None, metavar="residual|background|SD",
              help="With --uncertainty: the noise level per frame: residual (default: per voxel, from the fit), "
                   "background (an image's voxels outside the foreground, robust), or the SD in the series' units.")
@click.option("--sd-calibration", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="With --uncertainty: scales of the SDs per map (mrfrecon uncertainty calibrate).")
@_with(_read_opts)
def match_cmd(fingerprints: Path, second: Path | None, dict_path: Path, out: Path, method: str, ff_model: str,
              bids_derivatives: Path | None, uncertainty: bool, noise: str | None, sd_calibration: Path | None,
              **read) -> None:
    """Match FINGERPRINTS to a dictionary: a scan or image series of any kind `mrfrecon import` reads
    (SECOND: the phase or imaginary part of a two-file series), or a .npy of complex fingerprints
    (n, frames).

    An image is matched in its foreground only (the scan's mask, --mask, or an estimated one).
    Writes t1h2o (ms), ff, b1, df (Hz), t1fat (ms), pd, residual and valid; magnitude-only data are
    refused (the dictionary is complex).
    """
    import time

    from ..dictionary import Dictionary
    from ..matching import match

    opts = read_options(**read)
    name = out.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        raise MrfreconError(f"{out}: NIfTI maps are one file per map: give a folder as --out (or a .npz / .h5 file)")
    to_folder = not name.endswith(_MATCH_SUFFIXES)
    if bids_derivatives is not None and not to_folder:
        raise MrfreconError(f"--bids-derivatives: give a folder as --out (for the HDF5 maps), not {out.name}")
    check_out(out, kind="dir" if to_folder else "file", inputs=(fingerprints, dict_path) + ((second,) if second else ()))
    for p in (fingerprints, second):
        if p is not None and not p.exists():
            raise MrfreconError(f"{p}: no such file or folder")
    attrs = {"dictionary": str(dict_path), "method": method, "ff_model": ff_model, "mrfrecon_version": __version__}
    sigma, cal = _uncertainty_options(uncertainty, noise, sd_calibration)
    fps = _fingerprint_list(fingerprints, opts["axes"]) if second is None else None
    if fps is not None:  # a list of fingerprints, no image
        if to_folder:
            raise MrfreconError(f"{fingerprints}: a list of fingerprints {fps.shape} has no image geometry: give a .npz "
                                "or .h5 file as --out (NIfTI needs an image: declare one with --axes)")
        d = Dictionary.load(dict_path)
        n = int(np.prod(fps.shape[:-1])) if fps.ndim else 0
        t0 = time.perf_counter()
        with progress(n, f"matching ({method})") as cb:
            maps = match(fps, d, method=method, ff_model=ff_model, progress=cb)
        dt = time.perf_counter() - t0
        if uncertainty:
            from ..uncertainty.matched import match_uncertainty

            maps = {**maps, **match_uncertainty(fps, d, maps, sigma=sigma, calibration=cal)}
        _save_maps(maps, out, attrs)
        click.echo(f"matched {n:,} fingerprints in {dt:.2f} s; wrote {out}")
        return
    from ..cohort import reference_maps
    from ..io.readers import read_scan, scan_stem
    from ..matching import MAP_KEYS

    d = Dictionary.load(dict_path)
    scan = read_scan(fingerprints, second, sequence=d.sequence, **opts)
    if scan.sequence.digest() != d.sequence.digest():  # an mrfrecon scan carries its own sequence
        Dictionary.load(dict_path, scan.sequence)  # raises, naming both sequences
    stem = scan_stem(fingerprints)
    if to_folder:
        from ..inference import MAPS_SUFFIX
        from ..io.bids import plan_derivatives
        from ..io.nifti import planned_outputs

        # NIfTI maps: a BIDS derivative dataset (--bids-derivatives, or --out inside a BIDS dataset), else --out
        deriv = plan_derivatives(out, {str(fingerprints): stem}, bids_derivatives)
        planned = planned_outputs(deriv or out, stem, MAP_KEYS, labels=scan.labels is not None, bids=deriv is not None)
        if uncertainty:
            from ..uncertainty.output import planned_sd_outputs

            planned += planned_sd_outputs(deriv or out, stem, MAP_KEYS, bids=deriv is not None)
        for o in [out / f"{stem}{MAPS_SUFFIX}", *planned]:
            check_out(o, kind="file", inputs=(fingerprints, dict_path))
    n = int(scan.foreground.sum())
    t0 = time.perf_counter()
    with progress(n, f"matching ({method})") as cb:
        maps = reference_maps(scan.series, scan.foreground, d, keys=(*MAP_KEYS, "valid"), method=method,
                              ff_model=ff_model, progress=cb)
    dt = time.perf_counter() - t0
    sd: dict[str, np.ndarray] = {}
    if uncertainty:
        from ..uncertainty.matched import scan_match_uncertainty

        t1 = time.perf_counter()
        sd = scan_match_uncertainty(scan.series, scan.foreground, d, maps, sigma=sigma, calibration=cal)
        click.echo(f"SDs of the maps (Cramér–Rao, noise: {sigma}) in {time.perf_counter() - t1:.2f} s")
    if to_folder:
        from ..inference import MAPS_SUFFIX, _write_maps, scan_sources
        from ..io.nifti import export_maps, provenance
        from ..uncertainty.output import export_sd_maps, sd_datasets

        _write_maps(out / f"{stem}{MAPS_SUFFIX}", maps, scan.foreground, {**attrs, "scan": str(fingerprints)},
                    extra=sd_datasets(sd))
        algorithm = f"two-component (water, fat) dictionary matching, method {method}, FF model {ff_model}"
        side = provenance(algorithm, "Balsiger et al., MIDL 2019 (two-component matching: docs/MATCHING.md)",
                          scan_sources(scan, fingerprints), {"dictionary": dict_path})
        export_maps(maps, deriv or out, stem, scan.affine_ras(), sidecar=side, foreground=scan.foreground & maps["valid"],
                    labels=scan.labels, label_names=scan.label_names, bids=deriv is not None,
                    generated_by={"Description": f"mrfrecon match: {algorithm}"})
        if sd:
            export_sd_maps(sd, deriv or out, stem, scan.affine_ras(), bids=deriv is not None,
                           method=f"Cramér–Rao bound of the two-component model at the matched parameters, noise level: {sigma}",
                           sidecar={**side, "SDCalibration": str(sd_calibration) if sd_calibration else None})
    else:
        _save_maps({**maps, **sd}, out, attrs)
    wrote = f"{out} and the BIDS derivative dataset {deriv}" if to_folder and deriv is not None else str(out)
    click.echo(f"matched {n:,} foreground voxels ({scan.attrs.get('foreground', 'the scan’s mask')}) in {dt:.2f} s; wrote {wrote}")


def _uncertainty_options(uncertainty: bool, noise: str | None, sd_calibration: Path | None):
    """The noise level and calibration of ``match --uncertainty`` (checked before any work)."""
    if not uncertainty:
        if noise is not None or sd_calibration is not None:
            raise MrfreconError("--noise and --sd-calibration apply with --uncertainty")
        return "residual", None
    from ..uncertainty.calibration import Calibration
    from ..uncertainty.matched import parse_sigma

    return parse_sigma(noise or "residual"), Calibration.load(sd_calibration) if sd_calibration else None


# --------------------------------------------------------------------------------- import
#: From this many receive coils on, `import` suggests coil compression.
MANY_COILS = 8


@cli.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("second", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Scan .h5 file to write.")
@_with(_seq_opts)
@_with(_read_opts)
@click.option("--window", type=Num(1, 1400, integer=True), default=None,
              help="ISMRMRD: KWIC view-sharing window in spokes (default 55, the paper's).")
@click.option("--recon", type=click.Choice(["kwic", "kwic-tv"]), default=None,
              help="ISMRMRD: frame reconstruction, KWIC or KWIC + CS-TV (the paper's; default kwic).")
@click.option("--tv-weight", type=Num(0.0, 100.0, lo_open=True), default=None,
              help="ISMRMRD with --recon kwic-tv: TV weight (default 0.04, measured best at 1-1.5 mm pixels).")
@click.option("--repetition", default=None, metavar="N|last|all-average",
              help="ISMRMRD: which train by idx.repetition (default last: the one the sequence's signal model keeps).")
@click.option("--virtual-coils", default=None, metavar="K|auto",
              help="ISMRMRD: SVD coil compression to K virtual coils, or auto (99.9 % of the signal energy); default: all.")
def import_cmd(source: Path, second: Path | None, out: Path, sequence_path: Path | None, echo_spacing: float,
               window: int | None, recon: str | None, tv_weight: float | None, repetition: str | None,
               virtual_coils: str | None, **read) -> None:
    """Turn SOURCE into an mrfrecon scan: NIfTI, NumPy, MATLAB, DICOM (a folder or files) or ISMRMRD radial
    raw data (Walsh coil sensitivities, KWIC or KWIC + CS-TV frames); SECOND: the phase or imaginary part of a two-file series.

    The series must be complex (magnitude + phase or real + imaginary parts are combined);
    geometry (a RAS+ affine) and the sequence are kept; without --mask the foreground is estimated.
    """
    from ..io.readers import read_scan
    from ..io.scan import save_scan

    check_out(out, kind="file", suffixes=(".h5", ".hdf5"), inputs=(source,) + ((second,) if second else ()))
    opts = read_options(**read)
    seq = _sequence(sequence_path, echo_spacing)
    raw = {k: v for k, v in {"window": window, "recon": recon, "tv_weight": tv_weight, "repetition": repetition,
                             "coil_compression": virtual_coils}.items() if v is not None}
    scan = read_scan(source, second, sequence=seq, **opts, **raw)
    save_scan(out, scan)
    s, t, y, x = scan.series.shape
    click.echo(f"imported {source} ({scan.attrs.get('import', {}).get('kind', 'scan')}): {s} slice(s), {t} frames, "
               f"{y} × {x}, orientation {''.join(scan.attrs.get('orientation', []))}, foreground "
               f"{int(scan.foreground.sum()):,} voxels ({scan.attrs.get('foreground', 'from the scan')}); wrote {out}")
    notes = scan.attrs.get("import", {})
    if notes.get("kind") == "ismrmrd" and int(notes.get("coils", 0)) >= MANY_COILS and "virtual_coils" not in notes:
        # every coil costs a sensitivity map and a reconstruction: 24 coils at the paper's size take
        # 386 s with KWIC against 51 s with --virtual-coils auto (benchmarks/BENCHMARKS.md, issue 21)
        click.echo(f"note: {notes['coils']} coils reconstructed without compression; --virtual-coils auto "
                   "keeps the signal's virtual coils at a fraction of the time (docs/IMPORT.md)")


# --------------------------------------------------------------------------------- simulate
def _read_maps(path: Path) -> dict[str, np.ndarray]:
    """User maps from an HDF5 file (datasets named t1h2o, ff, b1, df, t1fat, pd at the root or
    under maps/) or a folder of NIfTI files named <map>.nii or <map>.nii.gz (x, y, slice order)."""
    from ..io.h5 import open_h5, read_dataset
    from ..io.scan import MAP_NAMES

    maps: dict[str, np.ndarray] = {}
    files: dict[str, Path] = {}
    if path.is_dir():
        import nibabel as nib

        for k in MAP_NAMES:
            cands = [path / f"{k}.nii.gz", path / f"{k}.nii"]
            found = next((c for c in cands if c.exists()), None)
            if found is None:
                raise MrfreconError(f"{path}: no {k}.nii.gz or {k}.nii (need {', '.join(MAP_NAMES)})")
            try:
                img = nib.load(str(found))
                vol = np.asarray(img.dataobj, dtype=np.float64)
                affine = np.asarray(img.affine, np.float64)
            except Exception as e:  # nibabel raises several types for bad files
                raise MrfreconError(f"{found}: not a readable NIfTI image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
            vol = vol[..., None] if vol.ndim == 2 else vol
            if vol.ndim != 3:
                raise MrfreconError(f"{found}: expected a 2-D or 3-D image, got shape {vol.shape}")
            # all maps describe the same voxels: same shape, same voxel-to-world affine
            if files:
                first = next(iter(files))
                if vol.shape != ref_shape:
                    raise MrfreconError(f"{found}: shape {vol.shape} differs from {files[first].name} {ref_shape}")
                if not np.allclose(affine, ref_affine, rtol=1e-5, atol=1e-4):
                    raise MrfreconError(f"{found}: affine (voxel size, orientation or origin) differs from {files[first].name}")
            else:
                ref_shape, ref_affine = vol.shape, affine
            files[k] = found
            maps[k] = np.transpose(vol, (2, 1, 0))
        from ..limits import check_map

        fg = maps["pd"] > 0
        for k, v in maps.items():  # physical ranges, the file named in the message
            check_map(k, v, str(files[k]), None if k in ("pd", "ff", "df") else fg)
        return maps
    with open_h5(path, "maps") as f:
        base = "maps/" if "maps" in f else ""
        for k in MAP_NAMES:
            maps[k] = read_dataset(f, base + k, dtype_kind="fiu").astype(np.float64)
    return maps


@cli.command("simulate")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="tiny", show_default=True,
              help="Cohort size, matrix, slices and SNR (tiny: tests; demo: 2-core CPU; paper: 95 × 5 × 350²).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Cohort folder (or, with --from-maps, the scan .h5 file) to write.")
@click.option("--subjects", type=Num(1, 100_000, integer=True), default=None, help="Number of subjects (default: the preset's).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Cohort seed: the same seed gives identical files.")
@click.option("--workers", type=PROCESSES, default=1, show_default=True, help="Subjects simulated in parallel processes.")
@click.option("--overwrite", is_flag=True, help="Replace scans (and the index) made with other settings instead of refusing.")
@click.option("--shard", default=None, metavar="K/N",
              help="Simulate only subjects i with i mod N = K-1 (shards may run at once into one folder; the last writes the index).")
@click.option("--no-reference", is_flag=True, help="Skip the reference maps from dictionary matching.")
@click.option("--from-maps", type=click.Path(path_type=Path, exists=False), default=None,
              help="Simulate one scan from your own maps: an HDF5 file or a folder of NIfTI files "
                   "(t1h2o ms, ff, b1, df Hz, t1fat ms, pd).")
@click.option("--snr", type=Num(0.0, lo_open=True, allow_inf=True), default=None, help="Image-domain SNR of a frame (default: the preset's).")
@click.option("--recon", type=click.Choice(["kwic", "kwic-tv"]), default=None,
              help="Frame reconstruction: KWIC view sharing, or KWIC + compressed sensing with total variation "
                   "(the paper's; default: the preset's).")
@click.option("--tv-weight", type=float, default=None, help="CS-TV regularization weight (> 0; default: the preset's).")
@click.option("--tv-iterations", type=int, default=None, help="Most CS-TV iterations (>= 1; default: the preset's).")
def simulate_cmd(preset, out, subjects, seed, workers, overwrite, shard, no_reference, from_maps, snr, recon, tv_weight,
                 tv_iterations) -> None:
    """Simulate an MRF-WF cohort (phantoms → radial k-space → KWIC (+ CS-TV) frames → scan files), resumable."""
    from ..cohort import recon_options

    check_out(out, kind="file" if from_maps is not None and out.suffix in (".h5", ".hdf5") else "dir",
              inputs=(from_maps,) if from_maps is not None else ())
    from ..presets import load_preset

    overrides = {k: v for k, v in (("snr", snr), ("recon", recon), ("tv_weight", tv_weight),
                                   ("tv_iterations", tv_iterations)) if v is not None}
    cfg_check = {**load_preset(preset)["cohort"], **overrides}
    try:
        recon_options(cfg_check)
    except MrfreconError as e:  # name the command-line option, not the preset key
        raise MrfreconError(str(e).replace("tv_weight:", "--tv-weight:").replace("tv_iterations:", "--tv-iterations:")
                            .replace("recon:", "--recon:")) from None

    if from_maps is not None:
        from ..cohort import acquire, reference_maps
        from ..dictionary import Dictionary
        from ..io.scan import MAP_NAMES, Scan, save_scan
        from ..sequence import Sequence

        cfg = load_preset(preset)["cohort"]
        maps = _read_maps(from_maps)
        seq = Sequence.mrf_wf()
        info: dict = {}
        rec, tv = recon_options({**cfg, **overrides})
        series = acquire(seq, maps, seed=seed, snr=snr if snr is not None else float(cfg["snr"]),
                         coils=int(cfg.get("coils", 1)), recon=rec, tv=tv, info=info)
        fg = np.asarray(maps["pd"]).reshape(series.shape[0], *series.shape[2:]) > 0
        m3 = {k: np.asarray(maps[k], np.float32).reshape(fg.shape) for k in MAP_NAMES}
        ref = {} if no_reference else reference_maps(series, fg, Dictionary.build(seq))
        scan = Scan(series=series, foreground=fg, sequence=seq, maps=m3, reference=ref,
                    attrs={"subject": from_maps.stem, "source_maps": str(from_maps), "seed": seed, "simulation": info})
        target = out if out.suffix in (".h5", ".hdf5") else out / f"{from_maps.stem}.h5"
        if target.is_dir():
            raise MrfreconError(f"--out: {target} is an existing folder, not a scan file")
        save_scan(target, scan)
        click.echo(f"wrote {target} ({series.shape[0]} slices, {series.shape[1]} frames, {series.shape[2]}²)")
        return
    from ..cohort import parse_shard, simulate_cohort

    if out.exists() and not out.is_dir():
        raise MrfreconError(f"--out: {out} is an existing file; a cohort is a folder")
    k_n = parse_shard(shard)
    n = subjects if subjects is not None else int(load_preset(preset)["cohort"]["subjects"])
    mine = n if k_n is None else len(range(k_n[0] - 1, n, k_n[1]))
    with progress(mine, f"simulating {preset} cohort" + (f" (shard {k_n[0]}/{k_n[1]})" if k_n else ""), lazy=True) as cb:
        idx = simulate_cohort(out, preset=preset, subjects=subjects, seed=seed, workers=workers,
                              reference=not no_reference, overrides=overrides or None,
                              overwrite=overwrite, shard=k_n, progress=cb, log=click.echo)
    if idx is None:
        click.echo(f"shard {k_n[0]}/{k_n[1]} of {out} complete; the last shard (or a run without --shard) writes cohort.json")
        return
    sizes = {k: len(v) for k, v in idx.split.items()}
    click.echo(f"cohort of {len(idx.subjects)} scans in {out} (train/val/test {sizes['train']}/{sizes['val']}/{sizes['test']})")


@cli.command("figure")
@click.argument("scan_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="PNG file to write.")
@click.option("--slice", "slice_index", type=Num(0, 10**6, integer=True), default=None, help="Slice (default: the middle one).")
def figure_cmd(scan_path: Path, out: Path, slice_index: int | None) -> None:
    """Plot one slice of a scan: frames, ground truth, reference maps and their error (PNG); or of a
    <stem>_maps.h5 with SD maps (match --uncertainty, an ensemble's predict): the maps, their SDs and flags."""
    check_out(out, kind="file", suffixes=(".png",), inputs=(scan_path,))
    from ..figures import plot_scan
    from ..io.scan import load_scan

    if _is_maps_file(scan_path):
        from ..figures import plot_uncertainty
        from ..inference import load_maps
        from ..uncertainty.output import load_sd

        maps, _ = load_maps(scan_path)
        sd = load_sd(scan_path)
        fg = _maps_foreground(scan_path)
        if slice_index is not None and slice_index >= fg.shape[0]:
            raise MrfreconError(f"--slice: {slice_index} is out of range: {scan_path} has {fg.shape[0]} slice(s)")
        plot_uncertainty(maps, sd, fg, out, slice_index=slice_index, title=scan_path.name)
        click.echo(f"wrote {out}")
        return
    scan = load_scan(scan_path)
    if slice_index is not None and slice_index >= scan.shape[0]:
        raise MrfreconError(f"--slice: {slice_index} is out of range: {scan_path} has {scan.shape[0]} slice(s) (0 to {scan.shape[0] - 1})")
    plot_scan(scan, out, slice_index=slice_index)
    click.echo(f"wrote {out}")


def _is_maps_file(path: Path) -> bool:
    """An mrfrecon maps file (``<stem>_maps.h5``) rather than a scan."""
    import h5py

    from ..inference import MAPS_FORMAT

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == MAPS_FORMAT
    except OSError:
        return False  # load_scan names what is wrong with the file


def _maps_foreground(path: Path) -> np.ndarray:
    from ..io.h5 import open_h5, read_dataset

    with open_h5(path, "maps") as f:
        return read_dataset(f, "masks/foreground", ndim=3).astype(bool)


# --------------------------------------------------------------------------------- demo
@cli.command("demo")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("demo-output"), show_default=True)
@click.option("--preset", type=click.Choice(list(PRESETS)), default="demo", show_default=True,
              help="Cohort and training preset (demo: ≤ 15 min on a 2-core CPU; tiny: about a minute).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the cohort, the training and the matching section.")
@click.option("--target", type=click.Choice(["reference", "ground-truth", "both"]), default="both", show_default=True,
              help="Train the networks on the reference maps, the ground truth, or both side by side.")
@click.option("--voxels", type=Num(0, 10**8, integer=True), default=5000, show_default=True,
              help="Fingerprints of the dictionary-matching section (0: leave it out).")
@click.option("--noise", type=Num(0.0, 10.0), default=0.01, show_default=True,
              help="Matching section: complex noise SD relative to the mean fingerprint magnitude.")
@click.option("--matching-only", is_flag=True, help="Only the dictionary-matching section (seconds).")
@click.option("--threads", type=Num(1, 1024, integer=True), default=None, help="Torch CPU threads (default: the free cores).")
def demo(out: Path, preset: str, seed: int, target: str, voxels: int, noise: float, matching_only: bool,
         threads: int | None) -> None:
    """The built-in demo: simulate a small cohort with reference maps, train the four networks briefly,
    compare them (Table 1, Figure 2) against the references and the ground truth; prints the table and
    the report's path."""
    from ..demo import run_demo

    check_out(out, kind="dir")
    n = set_threads(threads)
    run_demo(out, preset=preset, seed=seed, target=target, voxels=voxels, noise=noise, matching_only=matching_only,
             workers=n, echo=click.echo, progress=progress)
