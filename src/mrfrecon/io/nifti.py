"""Maps out as a neuroimaging user expects: NIfTI with a RAS+ affine, BIDS-style names, JSON sidecars.

Names and units follow the BIDS quantitative-MRI suffixes where one exists (BIDS specification,
``src/schema/objects/suffixes.yaml``: ``T1map`` in seconds; ``TB1map`` in arbitrary units,
RECOMMENDED as percent such that FlipAngle_effective = B1+ · FlipAngle_nominal; ``PDmap``
arbitrary; ``fieldmap`` in Hz; ``MWFmap`` — the closest fraction map — RECOMMENDED in percent
0–100), with the ``desc-`` entity for what BIDS does not distinguish:

==========  ================================  =========  =============================
map         file                              unit       value
==========  ================================  =========  =============================
t1h2o       ``<stem>_desc-water_T1map``       s          T1H2O / 1000
t1fat       ``<stem>_desc-fat_T1map``         s          T1fat / 1000
b1          ``<stem>_TB1map``                 %          100 · B1
ff          ``<stem>_FFmap`` (no BIDS suffix) %          100 · FF
df          ``<stem>_desc-offresonance_fieldmap``  Hz    Δf
pd          ``<stem>_PDmap``                  arbitrary  PD
==========  ================================  =========  =============================

plus ``<stem>_desc-foreground_mask`` (the voxels mapped) and, when the scan has ROI labels,
``<stem>_dseg`` with ``<stem>_dseg.tsv`` (index, name). Every map gets a ``.json`` sidecar with
``Units``, a ``Description``, and the provenance fields the BIDS qMRI appendix asks of maps
made by open-source software (``BasedOn``, ``EstimationReference``, ``EstimationAlgorithm``,
``EstimationSoftwareName``/``Ver``/``Lang``/``Env``), and the method's files with their SHA-256.
The HDF5 ``*_maps.h5`` files keep mrfrecon's own units (ms, fractions, a.u.).
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

__all__ = ["BIDS_MAPS", "export_maps", "file_sha256", "planned_outputs", "provenance"]

#: map → (file name part after the stem, Units, scale from mrfrecon's unit, description)
BIDS_MAPS: dict[str, tuple[str, str, float, str]] = {
    "t1h2o": ("desc-water_T1map", "s", 1e-3, "Water T1 (T1H2O) of the two-component water-fat model"),
    "t1fat": ("desc-fat_T1map", "s", 1e-3, "Fat T1 (T1fat) of the two-component water-fat model"),
    "b1": ("TB1map", "%", 100.0, "Transmit field efficacy B1+: effective flip angle = TB1map/100 × nominal flip angle"),
    "ff": ("FFmap", "%", 100.0, "Fat fraction, fat amplitude / (water + fat amplitude), in percent"),
    "df": ("desc-offresonance_fieldmap", "Hz", 1.0, "Off-resonance frequency of water"),
    "pd": ("PDmap", "arbitrary", 1.0, "Proton density (water + fat amplitude), arbitrary units"),
}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def provenance(algorithm: str, reference: str, sources: Sequence[str], method_files: Mapping[str, str | os.PathLike[str] | None],
               **extra: Any) -> dict[str, Any]:
    """The sidecar fields shared by every map of one reconstruction: BIDS qMRI provenance and
    ``Method`` (name → file and SHA-256 of the checkpoint or dictionary used)."""
    method = {}
    for k, f in method_files.items():
        if f is not None and Path(f).is_file():
            method[k] = {"file": str(f), "sha256": file_sha256(f)}
    return {"BasedOn": [str(s) for s in sources], "EstimationReference": reference, "EstimationAlgorithm": algorithm,
            "EstimationSoftwareName": "mrfrecon", "EstimationSoftwareVer": __version__,
            "EstimationSoftwareLang": f"Python {platform.python_version()}", "EstimationSoftwareEnv": platform.platform(),
            "Method": method, **extra}


def planned_outputs(out_dir: str | os.PathLike[str], stem: str, maps: Sequence[str], *, labels: bool = False) -> list[Path]:
    """The files :func:`export_maps` writes for these maps (to check them before any work)."""
    out = Path(out_dir)
    paths = []
    for m in maps:
        if m in BIDS_MAPS:
            base = out / f"{stem}_{BIDS_MAPS[m][0]}"
            paths += [Path(f"{base}.nii.gz"), Path(f"{base}.json")]
    paths.append(out / f"{stem}_desc-foreground_mask.nii.gz")
    if labels:
        paths += [out / f"{stem}_dseg.nii.gz", out / f"{stem}_dseg.tsv"]
    return paths


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


def export_maps(maps: Mapping[str, np.ndarray], out_dir: str | os.PathLike[str], stem: str, affine: np.ndarray, *,
                sidecar: Mapping[str, Any] | None = None, foreground: np.ndarray | None = None,
                labels: np.ndarray | None = None, label_names: Mapping[int, str] | None = None) -> list[Path]:
    """Write maps ``(slices, y, x)`` in mrfrecon's units as BIDS-style NIfTI files with JSON
    sidecars (see the module docstring), atomically. ``affine``: RAS+ of the voxel index
    ``(x, y, slice)`` (:meth:`mrfrecon.io.scan.Scan.affine_ras`). Maps without a BIDS name
    (``residual``, ``valid``) stay in the HDF5 output only. Returns the paths written."""
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise MrfreconError(f"affine: expected 4 × 4, got {aff.shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for m, v in maps.items():
        if m not in BIDS_MAPS:
            continue
        part, units, scale, desc = BIDS_MAPS[m]
        base = out / f"{stem}_{part}"
        _save_nifti(_xyz(np.asarray(v, np.float32) * np.float32(scale)), aff, Path(f"{base}.nii.gz"))
        doc = {"Units": units, "Description": desc, "mrfrecon_map": m, "mrfrecon_scale": scale, **(sidecar or {})}
        atomic_write_text(Path(f"{base}.json"), json.dumps(doc, indent=2) + "\n")
        written += [Path(f"{base}.nii.gz"), Path(f"{base}.json")]
    if foreground is not None:
        target = out / f"{stem}_desc-foreground_mask.nii.gz"
        _save_nifti(_xyz(np.asarray(foreground).astype(np.uint8)), aff, target)
        written.append(target)
    if labels is not None:
        target = out / f"{stem}_dseg.nii.gz"
        _save_nifti(_xyz(np.asarray(labels).astype(np.int16)), aff, target)
        rows = ["index\tname"] + [f"{k}\t{v}" for k, v in sorted((label_names or {}).items())]
        written += [target, atomic_write_text(out / f"{stem}_dseg.tsv", "\n".join(rows) + "\n")]
    return written
