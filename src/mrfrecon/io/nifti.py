"""Maps out as a neuroimaging user expects: NIfTI with a RAS+ affine, BIDS names, JSON sidecars.

Names, places and the derivative dataset around them come from :mod:`mrfrecon.io.bids` (BIDS
specification 1.11.1). Units follow the BIDS quantitative-MRI suffixes (``src/schema/objects/
suffixes.yaml``: ``T1map`` in seconds; ``TB1map`` in arbitrary units, RECOMMENDED as percent such
that FlipAngle_effective = B1+ · FlipAngle_nominal; ``PDmap`` arbitrary; ``fieldmap`` in Hz;
``MWFmap`` — the closest fraction map — RECOMMENDED in percent 0–100):

==========  ==========  ====================================  =========  =============
map         folder      name after the source entities        unit       value
==========  ==========  ====================================  =========  =============
t1h2o       ``anat/``   ``desc-water_T1map``                  s          T1H2O / 1000
t1fat       ``anat/``   ``desc-fat_T1map``                    s          T1fat / 1000
ff          ``anat/``   ``FFmap`` (no BIDS suffix: .bidsignore) %        100 · FF
pd          ``anat/``   ``desc-mrf_PDmap``                    arbitrary  PD
b1          ``fmap/``   ``desc-mrf_TB1map``                   %          100 · B1
df          ``fmap/``   ``desc-mrf_fieldmap``                 Hz         Δf
(with df)   ``fmap/``   ``desc-mrf_magnitude`` (the PD map)   arbitrary  PD
==========  ==========  ====================================  =========  =============

plus ``desc-foreground_mask`` (the voxels mapped) and, when the scan has ROI labels, ``dseg``
with ``dseg.tsv`` (index, name). The source entities are the input's (``sub-01_ses-2_part-mag_MRF``
→ ``sub-01_ses-2``); an input without BIDS entities prefixes the names with its stem (``s000_…``).
With ``bids=True`` the files go to ``sub-*/[ses-*/]anat|fmap/`` of a derivative dataset with its
``dataset_description.json``; otherwise into one folder. Every map gets a ``.json`` sidecar with
``Units``, a ``Description``, ``SkullStripped`` (REQUIRED for image derivatives), ``Sources`` (BIDS
URIs in a derivative dataset, ``file:`` URIs otherwise), the provenance fields the BIDS qMRI
appendix asks of maps made by open-source software (``EstimationReference``,
``EstimationAlgorithm``, ``EstimationSoftwareName``/``Ver``/``Lang``/``Env``), and the method's
files with their SHA-256. The HDF5 ``*_maps.h5`` files keep mrfrecon's own units (ms, fractions, a.u.).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_path, atomic_write_text
from ..errors import MrfreconError
from .bids import OUTPUTS, DerivativeDataset, file_uris, output_path

__all__ = ["BIDS_MAPS", "export_maps", "file_sha256", "planned_outputs", "provenance", "sidecar_sources", "write_nifti"]

#: map → (file name part after the source entities, Units, scale from mrfrecon's unit, description)
BIDS_MAPS: dict[str, tuple[str, str, float, str]] = {
    "t1h2o": (OUTPUTS["t1h2o"].part(), "s", 1e-3, "Water T1 (T1H2O) of the two-component water-fat model"),
    "t1fat": (OUTPUTS["t1fat"].part(), "s", 1e-3, "Fat T1 (T1fat) of the two-component water-fat model"),
    "b1": (OUTPUTS["b1"].part(), "%", 100.0, "Transmit field efficacy B1+: effective flip angle = TB1map/100 × nominal flip angle"),
    "ff": (OUTPUTS["ff"].part(), "%", 100.0, "Fat fraction, fat amplitude / (water + fat amplitude), in percent"),
    "df": (OUTPUTS["df"].part(), "Hz", 1.0, "B0 off-resonance frequency of water"),
    "pd": (OUTPUTS["pd"].part(), "arbitrary", 1.0, "Proton density (water + fat amplitude), arbitrary units"),
}
_MAGNITUDE_DESC = "Magnitude image of the fieldmap: the proton density (water + fat amplitude) of the same fit"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provenance(algorithm: str, reference: str, sources: Sequence[str | os.PathLike[str]],
               method_files: Mapping[str, str | os.PathLike[str] | None], **extra: Any) -> dict[str, Any]:
    """The sidecar fields shared by every map of one reconstruction: ``Sources`` (the input
    files; :func:`export_maps` writes them as URIs), BIDS qMRI provenance, and ``Method`` (name →
    file and SHA-256 of the checkpoint or dictionary used)."""
    method = {}
    for k, f in method_files.items():
        if f is not None and Path(f).is_file():
            method[k] = {"file": str(f), "sha256": file_sha256(f)}
    return {"Sources": [os.fspath(s) for s in sources], "EstimationReference": reference,
            "EstimationAlgorithm": algorithm, "EstimationSoftwareName": "mrfrecon", "EstimationSoftwareVer": __version__,
            "EstimationSoftwareLang": f"Python {platform.python_version()}", "EstimationSoftwareEnv": platform.platform(),
            "Method": method, **extra}


def _keys(maps: Sequence[str]) -> list[str]:
    """The map outputs, in order, and the fieldmap's magnitude (the PD map) when both exist."""
    keys = [m for m in maps if m in BIDS_MAPS]
    return keys + (["magnitude"] if "df" in keys and "pd" in keys else [])


def planned_outputs(out_dir: str | os.PathLike[str], stem: str, maps: Sequence[str], *, labels: bool = False,
                    bids: bool = False) -> list[Path]:
    """The files :func:`export_maps` writes for these maps (to check them before any work); the
    dataset-level files of a derivative dataset are not listed."""
    out = Path(out_dir)
    paths = []
    for key in [*_keys(maps), "mask"]:
        base = out / output_path(key, stem, bids=bids)
        paths += [Path(f"{base}.nii.gz"), Path(f"{base}.json")]
    if labels:
        base = out / output_path("dseg", stem, bids=bids)
        paths += [Path(f"{base}.nii.gz"), Path(f"{base}.json"), Path(f"{base}.tsv")]
    return paths


def _with_uris(sidecar: Mapping[str, Any] | None, dataset: DerivativeDataset | None) -> dict[str, Any]:
    side = dict(sidecar or {})
    if side.get("Sources"):
        srcs = side["Sources"]
        side["Sources"] = dataset.source_uris(srcs) if dataset is not None else file_uris(srcs)
    return side


def sidecar_sources(sidecar: Mapping[str, Any] | None, out_dir: str | os.PathLike[str], *, bids: bool = False) -> dict[str, Any]:
    """``sidecar`` with its ``Sources`` (file paths) written as :func:`export_maps` writes them:
    BIDS URIs of the derivative dataset ``out_dir`` with ``bids`` (new ``DatasetLinks`` are
    saved), else ``file:`` URIs. For other NIfTI files beside the maps (e.g. their SDs)."""
    dataset = DerivativeDataset(out_dir) if bids else None
    before = dict(dataset.links) if dataset is not None else {}
    side = _with_uris(sidecar, dataset)
    if dataset is not None and dataset.links != before:
        dataset.save()
    return side


def _save_nifti(vol: np.ndarray, affine: np.ndarray, target: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)  # scanner-anatomical RAS+ (NIfTI-1 xform code 1)
    img.set_sform(affine, code=1)
    with atomic_path(target) as tmp:
        # nibabel chooses the compression from the file name: save under a .nii.gz name, then move
        named = Path(str(tmp) + ".nii.gz")
        nib.save(img, str(named))
        os.replace(named, tmp)


def _xyz(v: np.ndarray) -> np.ndarray:
    """(slices, y, x) → (x, y, slice), the order of the affine's voxel index."""
    return np.ascontiguousarray(np.transpose(np.asarray(v), (2, 1, 0)))


def _affine(affine: np.ndarray) -> np.ndarray:
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise MrfreconError(f"affine: expected 4 × 4, got {aff.shape}")
    return aff


def write_nifti(base: str | os.PathLike[str], vol: np.ndarray, affine: np.ndarray, sidecar: Mapping[str, Any]) -> list[Path]:
    """Write ``vol (slices, y, x)`` as ``<base>.nii.gz`` (voxel index ``(x, y, slice)``, RAS+
    ``affine``, qform and sform code 1) and ``sidecar`` as its JSON sidecar ``<base>.json``, each
    file atomically, the folder made if needed: the writer of the maps, masks and segmentations
    (:func:`export_maps`) and of the SD maps (:func:`mrfrecon.uncertainty.output.export_sd_maps`).

    Returns
    -------
    list of Path
        The files written.
    """
    nii = Path(f"{os.fspath(base)}.nii.gz")
    _save_nifti(_xyz(vol), _affine(affine), nii)
    return [nii, atomic_write_text(Path(f"{os.fspath(base)}.json"), json.dumps(sidecar, indent=2) + "\n")]


def export_maps(maps: Mapping[str, np.ndarray], out_dir: str | os.PathLike[str], stem: str, affine: np.ndarray, *,
                sidecar: Mapping[str, Any] | None = None, foreground: np.ndarray | None = None,
                labels: np.ndarray | None = None, label_names: Mapping[int, str] | None = None,
                bids: bool = False, generated_by: Mapping[str, Any] | None = None) -> list[Path]:
    """Write maps ``(slices, y, x)`` in mrfrecon's units as NIfTI files with BIDS names and JSON
    sidecars (see the module docstring), atomically.

    Parameters
    ----------
    maps
        Map name → ``(slices, y, x)``; maps without a BIDS name (``residual``, ``valid``) stay in
        the HDF5 output only.
    out_dir
        The output folder, or with ``bids`` the root of the derivative dataset.
    stem
        The input's stem (:func:`mrfrecon.io.readers.scan_stem`): its BIDS entities name the
        files (``sub-01_ses-2_MRF`` → ``sub-01_ses-2_desc-water_T1map``), else it prefixes them.
    affine
        RAS+ of the voxel index ``(x, y, slice)`` (:meth:`mrfrecon.io.scan.Scan.affine_ras`).
    sidecar
        Fields added to every sidecar (:func:`provenance`); its ``Sources`` (file paths) are
        written as BIDS URIs with ``bids``, else as ``file:`` URIs.
    foreground, labels, label_names
        The mask of the voxels mapped, and ROI labels with their names (``dseg``).
    bids
        Write ``sub-*/[ses-*/]anat|fmap/`` and the dataset's ``dataset_description.json``,
        ``.bidsignore`` and README (:class:`mrfrecon.io.bids.DerivativeDataset`); ``stem`` must
        then carry BIDS entities.
    generated_by
        This run's ``GeneratedBy`` entry in ``dataset_description.json`` (with ``bids``).

    Returns
    -------
    list of Path
        The files written.
    """
    aff = _affine(affine)
    out = Path(out_dir)
    dataset = DerivativeDataset(out) if bids else None
    output_path("mask", stem, bids=bids)  # a stem that cannot be named fails before any file
    side = _with_uris(sidecar, dataset)
    written: list[Path] = []

    def write(key: str, vol: np.ndarray, doc: dict[str, Any]) -> None:
        written.extend(write_nifti(out / output_path(key, stem, bids=bids), vol, aff, doc))

    for m in _keys(list(maps)):
        src = "pd" if m == "magnitude" else m
        part, units, scale, desc = BIDS_MAPS[src]
        if m == "magnitude":
            desc = _MAGNITUDE_DESC
        doc = {"Units": units, "Description": desc, "SkullStripped": False, "mrfrecon_map": src, "mrfrecon_scale": scale,
               **side}
        write(m, np.asarray(maps[src], np.float32) * np.float32(scale), doc)
    # masks and segmentations (BIDS derivatives, "Masks", "Segmentations"): Sources and
    # SpatialReference RECOMMENDED; they lie on the voxels of the first source
    ref = {"Sources": side["Sources"], "SpatialReference": side["Sources"][0]} if side.get("Sources") else {}
    if foreground is not None:
        write("mask", np.asarray(foreground).astype(np.uint8),
              {"Type": "ROI", "Description": "Voxels mapped (the scan's foreground)", **ref})
    if labels is not None:
        write("dseg", np.asarray(labels).astype(np.int16),
              {"Description": "ROI labels of the scan; names in the .tsv beside it", **ref})
        rows = ["index\tname"] + [f"{k}\t{v}" for k, v in sorted((label_names or {}).items())]
        written.append(atomic_write_text(out / f"{output_path('dseg', stem, bids=bids)}.tsv", "\n".join(rows) + "\n"))
    if dataset is not None:
        written += dataset.save(generated_by)
    return written
