"""Maps from a trained network: one scan in memory, or a folder of scan files.

::

    from mrfrecon.inference import predict_scan, predict_folder

    maps = predict_scan("runs/proposed/checkpoint_best.pt", scan)   # name → (slices, y, x)
    maps = predict_scan("shipped:study-proposed", "sub-01_part-mag_MRF.nii.gz")  # read with its sequence
    predict_folder(ckpt, sorted(Path("cohort").glob("*.h5")), Path("pred"))
    # pred/<stem>_maps.h5 and NIfTI maps with BIDS names: pred/<stem>_desc-water_T1map.nii.gz (+ .json), ...
    predict_folder("shipped:study-proposed", inputs, "maps", bids_derivatives="bids/derivatives/mrfrecon")

Every function that takes a checkpoint takes a path, ``shipped:<name>`` (a checkpoint shipped
with the package, :mod:`mrfrecon.shipped`) or a loaded :class:`~mrfrecon.checkpoint.Checkpoint`;
:func:`predict_folder` loads it and builds its network once, and hands both down to each scan.

Whole slices in one fully convolutional pass (:func:`mrfrecon.data.predict_volume`): patch and
pixel networks on the slice zero-padded by their margin (identical to tiling the training
patches), slice networks (fang2018) on the whole slice. Predictions are de-normalized with the
training split's map ranges stored in the checkpoint, clipped to those ranges, and 0 in the
background — the form in which the paper evaluates them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import Checkpoint
from .data import normalize_series, predict_volume
from .errors import MrfreconError
from .atomic import atomic_h5
from .io.bids import plan_derivatives
from .io.nifti import export_maps, planned_outputs, provenance
from .io.readers import detect_kind, drop_partners, read_scan, scan_stem
from .io.scan import MAP_UNITS, Scan, load_scan
from .runtime import default_device
from .shipped import open_checkpoint

__all__ = ["MAPS_FORMAT", "check_compatible", "load_maps", "maps_path_for", "plan_outputs", "predict_folder", "predict_scan",
           "scan_sources"]

MAPS_FORMAT = "mrfrecon.maps/1"
MAPS_SUFFIX = "_maps.h5"


def check_compatible(ck: Checkpoint, scan: Scan, where: str = "scan") -> None:
    """Refuse a scan the network was not trained for: another number of frames or another
    sequence (digest)."""
    frames = scan.series.shape[1] or scan.sequence.frames  # a header-only scan (load_scan(series=False)) has 0
    if frames != ck.frames:
        raise MrfreconError(f"{where}: {frames} frames, but the checkpoint {ck.path} was trained on {ck.frames} "
                            f"(sequence {ck.sequence.name!r})")
    digest = scan.sequence.digest()
    if digest != ck.sequence_digest:
        raise MrfreconError(f"{where}: acquired with sequence {scan.sequence.name!r} (digest {digest}), but the "
                            f"checkpoint {ck.path} was trained for {ck.sequence.name!r} (digest {ck.sequence_digest})")


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    import contextlib

    return contextlib.nullcontext()


def predict_scan(
    checkpoint: str | os.PathLike[str] | Checkpoint,
    scan: Scan | str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    tile: int | None = None,
    amp: bool = False,
    net: torch.nn.Module | None = None,
    where: str = "scan",
) -> dict[str, np.ndarray]:
    """Maps of one scan: name → float32 (slices, y, x) in physical units (T1H2O ms, FF 0–1,
    B1 a.u.), clipped to the training range, 0 outside ``scan.foreground``.

    Parameters
    ----------
    checkpoint
        A checkpoint file, ``shipped:<name>`` (:func:`mrfrecon.shipped.resolve_checkpoint`), or a
        loaded :class:`~mrfrecon.checkpoint.Checkpoint` (not read again).
    scan
        A :class:`~mrfrecon.io.scan.Scan`, or any input :func:`~mrfrecon.io.readers.read_scan`
        reads, which is then read as acquired with the checkpoint's sequence.
    device
        Default :func:`mrfrecon.runtime.default_device`.
    tile
        Output tile size for patch/pixel models to bound memory on large slices (same result).
    amp
        bf16/fp16 autocast on CUDA (ignored on CPU).
    net
        The already built network of this checkpoint (saves rebuilding it per scan).
    where
        How errors name the scan.

    Raises
    ------
    MrfreconError
        When the scan's frame count or sequence does not match the checkpoint, or its series holds
        NaN/inf.
    """
    ck = open_checkpoint(checkpoint)
    if not isinstance(scan, Scan):
        where = where if where != "scan" else os.fspath(scan)
        scan = read_scan(scan, sequence=ck.sequence)
    check_compatible(ck, scan, where)
    try:
        series, _ = normalize_series(scan.series)
    except MrfreconError as e:
        raise MrfreconError(f"{where}: {e}") from None
    dev = default_device(device)
    if net is None:
        net = ck.build_model(dev)
    with _autocast(dev, amp):
        pred = predict_volume(net, series, tile=tile, device=dev)
    return ck.map_norm.denormalize(pred, scan.foreground)


def maps_path_for(scan_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir/<stem>_maps.h5`` for the input ``scan_path`` (stem: :func:`~mrfrecon.io.readers.scan_stem`)."""
    return Path(out_dir) / f"{scan_stem(scan_path)}{MAPS_SUFFIX}"


def _write_maps(path: Path, maps: dict[str, np.ndarray], foreground: np.ndarray, attrs: dict[str, str],
                extra: dict[str, tuple[np.ndarray, str]] | None = None) -> None:
    """``extra``: more datasets, name → (array, unit), e.g. the SD maps of
    :func:`mrfrecon.uncertainty.output.sd_datasets` (``sd/<map>``, ``flags/<map>``)."""
    with atomic_h5(path) as f:
        f.attrs["format"] = MAPS_FORMAT
        f.attrs.update(attrs)
        for k, v in maps.items():
            d = f.create_dataset(f"maps/{k}", data=np.asarray(v, np.float32), compression="gzip", shuffle=True)
            d.attrs["unit"] = MAP_UNITS.get(k, "")
        for k, (v, unit) in (extra or {}).items():
            f.create_dataset(k, data=v, compression="gzip", shuffle=True).attrs["unit"] = unit
        f.create_dataset("masks/foreground", data=foreground.astype(np.uint8), compression="gzip")


def load_maps(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a ``*_maps.h5`` file of :func:`predict_folder`: (name → (slices, y, x), attrs)."""
    from .io.h5 import open_h5, read_dataset

    path = Path(path)
    with open_h5(path, "maps") as f:
        if f.attrs.get("format") != MAPS_FORMAT:
            raise MrfreconError(f"{path}: format: expected {MAPS_FORMAT!r}, found {f.attrs.get('format')!r}")
        if "maps" not in f or not len(f["maps"]):
            raise MrfreconError(f"{path}: maps: group missing or empty")
        maps = {k: read_dataset(f, f"maps/{k}", ndim=3, dtype_kind="f").astype(np.float32) for k in f["maps"]}
        attrs = {k: str(v) for k, v in f.attrs.items()}
    return maps, attrs


def predict_folder(
    checkpoint: str | os.PathLike[str] | Checkpoint | Sequence[str | os.PathLike[str] | Checkpoint],
    scan_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    nifti: bool = True,
    tile: int | None = None,
    amp: bool = False,
    progress: Callable[[int], None] | None = None,
    read_options: dict | None = None,
    bids_derivatives: str | os.PathLike[str] | None = None,
    net: torch.nn.Module | None = None,
    dictionary: str | os.PathLike[str] | None = None,
    sd_calibration: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Predict every input and write ``out_dir/<stem>_maps.h5`` (maps, foreground, and the
    checkpoint and input it came from as attributes) and, with ``nifti``, the NIfTI maps with
    JSON sidecars of :func:`mrfrecon.io.nifti.export_maps`. Returns the ``*_maps.h5`` paths.

    ``checkpoint``: a path, ``shipped:<name>`` or a loaded checkpoint; it is loaded and its
    network built once (``net``: already built on ``device``) for all scans. The NIfTI maps go
    into the BIDS derivative dataset ``bids_derivatives`` (``sub-*/[ses-*/]anat|fmap/``, with its
    ``dataset_description.json``), or, without it, into ``<bids root>/derivatives/mrfrecon`` when
    ``out_dir`` lies inside a BIDS dataset and the inputs have BIDS names, else beside the HDF5
    maps (:func:`mrfrecon.io.bids.plan_derivatives`).

    Inputs are any kind :func:`mrfrecon.io.readers.read_scan` reads (``read_options`` go to it:
    ``axes``, ``mask``, ``phase_units``, ...; imported series are taken as acquired with the
    checkpoint's sequence); the other part of a BIDS magnitude/phase pair given alongside is
    skipped. All inputs are checked (frames, sequence, finite complex series) and predicted
    before the first file is written, so a bad input leaves ``out_dir`` untouched; every file is
    written atomically. An output that would replace one of the input files is refused.

    Several checkpoints (a list) are an ensemble (:mod:`mrfrecon.uncertainty.ensemble`): the
    maps are the members' mean and ``sd/<map>`` their spread (``ddof=1``), or, with a
    ``dictionary``, the spread combined with the data-consistency check against matching
    (``flags/<map>``, ``consistency/*``); ``sd_calibration`` scales the SDs
    (:class:`~mrfrecon.uncertainty.calibration.Calibration`). NIfTI SD maps go beside the maps.
    """
    many = isinstance(checkpoint, list | tuple)
    members = [open_checkpoint(c) for c in checkpoint] if many else []
    if many:
        from .uncertainty.ensemble import check_ensemble

        check_ensemble(members)  # one line: one member, other sequences, maps, normalizations or targets
    ck = members[0] if many else open_checkpoint(checkpoint)
    paths = drop_partners([Path(p) for p in scan_paths])
    if not paths:
        raise MrfreconError("no scan files given")
    out_dir = Path(out_dir)
    deriv = plan_derivatives(out_dir, {str(p): scan_stem(p) for p in paths}, bids_derivatives) if nifti else None
    planned = plan_outputs(ck, paths, out_dir, nifti=nifti, bids_derivatives=deriv)
    # headers first (cheap): a frame or sequence mismatch anywhere fails before any prediction
    kinds = [detect_kind(p) for p in paths]
    for p, kind in zip(paths, kinds, strict=True):
        if kind == "scan":
            check_compatible(ck, load_scan(p, series=False), str(p))
    dev = default_device(device)
    if net is None:
        net = ck.build_model(dev)
    unc = _ensemble_setup(members, dictionary, sd_calibration, ck)
    nets = [net] + [m.build_model(dev) for m in members[1:]]
    results = []
    for i, p in enumerate(paths):
        scan = read_scan(p, sequence=ck.sequence, **(read_options or {}))
        maps = predict_scan(ck, scan, dev, tile=tile, amp=amp, net=net, where=str(p))
        sd: dict[str, np.ndarray] = {}
        if many:
            from .uncertainty.ensemble import network_uncertainty

            preds = [maps] + [predict_scan(m, scan, dev, tile=tile, amp=amp, net=n, where=str(p))
                              for m, n in zip(members[1:], nets[1:], strict=True)]
            got = network_uncertainty(scan.series, scan.foreground, preds, device=dev,
                                      **{k: v for k, v in unc.items() if k != "description"})
            maps = {k: got[k] for k in ck.maps}
            sd = {k: v for k, v in got.items() if k not in ck.maps}
        results.append((maps, scan, sd))
        if progress is not None:
            progress(i + 1)
    attrs_base = {"checkpoint": str(ck.path) if not many else json.dumps([str(m.path) for m in members]),
                  "model": json.dumps(ck.spec), "target": ck.target,
                  "sequence_digest": ck.sequence_digest, "checkpoint_epoch": str(ck.epoch),
                  "mrfrecon_version": __version__, "git_hash": ck.meta.get("git_hash", "unknown")}
    # one provenance (and one SHA-256 of the checkpoint) for all scans; Sources per scan
    algorithm = f"CNN {ck.spec.get('name', '?')} (fully convolutional, one pass per slice)"
    side = provenance(algorithm, "Balsiger et al., On the spatial and temporal influence for the reconstruction of "
                      "magnetic resonance fingerprinting, MIDL 2019", [], {"checkpoint": ck.path},
                      TrainingTarget=ck.target) if nifti else {}
    generated = {"Description": f"mrfrecon predict: {algorithm}, trained on {ck.target} maps"}
    written = []
    for p, outs, (maps, scan, sd) in zip(paths, planned, results, strict=True):
        from .uncertainty.output import export_sd_maps, sd_datasets

        _write_maps(outs[0], maps, scan.foreground, {**attrs_base, "scan": str(p)}, extra=sd_datasets(sd))
        if nifti:
            export_maps(maps, deriv or out_dir, scan_stem(p), scan.affine_ras(),
                        sidecar={**side, "Sources": scan_sources(scan, p)}, foreground=scan.foreground,
                        bids=deriv is not None, generated_by=generated)
            if sd:
                export_sd_maps(sd, deriv or out_dir, scan_stem(p), scan.affine_ras(), bids=deriv is not None,
                               method=unc["description"], sidecar={**side, "Sources": scan_sources(scan, p),
                                                                   "Checkpoints": [str(m.path) for m in members]})
        written.append(outs[0])
    return written


def _ensemble_setup(members: list[Checkpoint], dictionary: str | os.PathLike[str] | None,
                    sd_calibration: str | os.PathLike[str] | None, ck: Checkpoint) -> dict:
    """Keyword arguments of :func:`mrfrecon.uncertainty.ensemble.network_uncertainty` (and a
    description for the sidecars), checked before any prediction."""
    if not members:
        if dictionary is not None or sd_calibration is not None:
            raise MrfreconError("a dictionary (data consistency) or an SD calibration needs an ensemble: give several checkpoints")
        return {}
    from .dictionary import Dictionary
    from .uncertainty.calibration import Calibration

    d = Dictionary.load(dictionary, ck.sequence) if dictionary is not None else None
    cal = Calibration.load(sd_calibration) if sd_calibration is not None else None
    what = (f"spread (SD, ddof=1) of an ensemble of {len(members)} networks" +
            (", combined with the data-consistency check against two-component matching" if d is not None else "") +
            (f", scaled by the calibration {sd_calibration}" if cal is not None else ""))
    return {"dictionary": d, "calibration": cal, "description": what}


def scan_sources(scan: Scan, path: str | os.PathLike[str]) -> list[str]:
    """The files a scan was read from, the ``Sources`` of its maps: ``path`` itself for an
    mrfrecon scan file, else the importer's sources (both parts of a pair) that exist."""
    p = Path(path)
    if p.is_dir() or detect_kind(p) == "scan":
        return [os.fspath(p)]
    found = [s for s in scan.attrs.get("source", []) or [] if isinstance(s, str) and Path(s).exists()]
    return found or [os.fspath(p)]


def plan_outputs(ck: Checkpoint, paths: Sequence[Path], out_dir: Path, *, nifti: bool = True,
                 bids_derivatives: str | os.PathLike[str] | None = None) -> list[list[Path]]:
    """The files :func:`predict_folder` would write per input (``*_maps.h5`` first; the NIfTI
    maps in ``bids_derivatives``, a derivative dataset root, when given, else in ``out_dir``);
    refuses inputs whose outputs collide and outputs that would replace an input."""
    stems = [scan_stem(p) for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise MrfreconError(f"several inputs share the name {dup[0]!r}: their outputs would collide")
    inputs = {Path(p).resolve() for p in paths}
    if ck.path is not None:
        inputs.add(ck.path.resolve())
    bids = bids_derivatives is not None
    folder = Path(bids_derivatives) if bids else out_dir
    planned: list[list[Path]] = []
    owner: dict[Path, Path] = {}
    for p, stem in zip(paths, stems, strict=True):
        outs = [maps_path_for(p, out_dir)] + (planned_outputs(folder, stem, ck.maps, bids=bids) if nifti else [])
        for o in outs:
            if o.resolve() in inputs:
                raise MrfreconError(f"{o}: is an input file; choose another --out")
            # names built from fewer entities than the inputs carry (a fieldmap drops rec-) may meet
            if o.resolve() in owner:
                raise MrfreconError(f"{owner[o.resolve()]} and {p}: both would write {o}")
            owner[o.resolve()] = p
        planned.append(outs)
    return planned
