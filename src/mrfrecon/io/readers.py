"""Any supported input → a validated :class:`~mrfrecon.io.scan.Scan`: the one reader behind
``mrfrecon import``, ``predict`` and ``match``, and :func:`read_scan` in Python.

::

    from mrfrecon.io.readers import read_scan

    scan = read_scan("sub-01_part-mag_MRF.nii.gz")            # finds sub-01_part-phase_MRF.nii.gz
    scan = read_scan("MRF.nii.gz")                            # dcm2niix: finds MRF_ph.nii.gz, reads the .json sidecars
    scan = read_scan("series.npy", axes="x,y,z,t")            # no geometry in the file: declare the axes
    scan = read_scan("dicom/", mask="mask.nii.gz")            # classic or enhanced multi-frame magnitude + phase images
    scan = read_scan("raw.mrd")                               # ISMRMRD radial k-space → Walsh + KWIC frames

The kind is told from the content (HDF5 attributes, the DICOM preamble) and the file name; an
input of another kind is refused with the list of kinds supported. Without a mask the foreground
is estimated (:func:`mrfrecon.io.foreground.estimate_foreground`).

Two-file NIfTI series find their other part by name: BIDS ``part-mag``/``part-phase`` (and
``part-real``/``part-imag``), or dcm2niix's post-fixes (``rordenlab/dcm2niix`` FILENAMING.md:
``_ph`` for a phase map, ``_real``/``_imaginary`` for complex parts; ``name.nii.gz`` +
``name_ph.nii.gz``). Their JSON sidecars (:mod:`mrfrecon.io.sidecars`) are checked: the part each
file is, the echo time against the sequence's, and the phase units they state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from ..sequence import Sequence
from .geometry import affine_axcodes, affine_from_axcodes
from .scan import SCAN_FORMAT, Scan, _validate_scan, load_scan
from .series import ImportedSeries

__all__ = ["KINDS", "bids_partner", "dcm2niix_partner", "detect_kind", "drop_partners", "read_mask", "read_scan", "scan_stem", "supported_kinds"]

#: The kinds of input every command reads.
KINDS = {
    "scan": "mrfrecon scan (.h5)",
    "ismrmrd": "ISMRMRD/MRD radial raw data (.mrd, .h5)",
    "nifti": "NIfTI series (.nii, .nii.gz; complex, or magnitude + phase, or real + imaginary)",
    "numpy": "NumPy (.npy, .npz, with --axes)",
    "matlab": "MATLAB (.mat v5 or v7.3, with --axes)",
    "dicom": "DICOM magnitude + phase images, classic or enhanced multi-frame (.dcm files or a folder)",
}
_PARTNER = {"mag": "phase", "real": "imag"}
_PAIR_OF = {"mag": "magnitude-phase", "real": "real-imag"}


def supported_kinds() -> str:
    """One line naming every supported kind of input."""
    return "; ".join(KINDS.values())


def _hdf5_kind(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") == SCAN_FORMAT:
                return "scan"
            if "dataset" in f and isinstance(f["dataset"], h5py.Group):
                return "ismrmrd"
            fmt = f.attrs.get("format")
    except OSError as e:
        raise MrfreconError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None
    raise MrfreconError(f"{path}: an HDF5 file that is neither an mrfrecon scan nor ISMRMRD data (format attribute "
                        f"{fmt!r}, no /dataset group); supported: {supported_kinds()}")


def detect_kind(path: str | os.PathLike[str]) -> str:
    """The kind of an input (a key of :data:`KINDS`), from its content and name."""
    from .dicom import is_dicom

    p = Path(path)
    if p.is_dir():
        return "dicom"
    if not p.exists():
        raise MrfreconError(f"{p}: no such file")
    name = p.name.lower()
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n") or name.endswith((".h5", ".hdf5", ".mrd")):
        return _hdf5_kind(p)
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".npy", ".npz")):
        return "numpy"
    if name.endswith(".mat"):
        return "matlab"
    if name.endswith(".dcm") or is_dicom(p):
        return "dicom"
    raise MrfreconError(f"{p}: not a supported kind of input; supported: {supported_kinds()}")


def bids_partner(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """For a BIDS-named part (``..._part-mag_...`` or ``..._part-real_...``), the other part's
    file and the pair (``magnitude-phase`` or ``real-imag``); ``None`` for other names."""
    p = Path(path)
    m = re.search(r"(^|_)part-(mag|real)(_|\.)", p.name)
    if not m:
        return None
    other = p.with_name(p.name[: m.start(2)] + _PARTNER[m.group(2)] + p.name[m.end(2):])
    return other, _PAIR_OF[m.group(2)]


def _nifti_named(folder: Path, stem: str) -> Path | None:
    return next((q for q in (folder / f"{stem}.nii.gz", folder / f"{stem}.nii") if q.is_file()), None)


def _nifti_stem(p: Path) -> str | None:
    low = p.name.lower()
    ext = ".nii.gz" if low.endswith(".nii.gz") else ".nii" if low.endswith(".nii") else None
    return p.name[: -len(ext)] if ext else None


def dcm2niix_partner(path: str | os.PathLike[str]) -> tuple[Path, Path, str] | None:
    """The two parts of a dcm2niix series named by its post-fixes, from either file: ``(first,
    second, pair)`` for ``S.nii.gz`` + ``S_ph.nii.gz`` (``magnitude-phase``) or ``S_real.nii.gz`` +
    ``S_imaginary.nii.gz`` (``real-imag``), when both files exist; ``None`` otherwise.

    Raises :class:`MrfreconError` for dcm2niix's ``_phMag`` files (magnitude and phase stacked on
    the 4th axis), which are not an MRF series as they stand."""
    p = Path(path)
    stem = _nifti_stem(p)
    if stem is None:
        return None
    if stem.endswith("_phMag"):
        raise MrfreconError(f"{p}: dcm2niix stored magnitude and phase in one file (_phMag, the two parts stacked on "
                            "the 4th axis); convert the magnitude and phase images to separate files (name.nii.gz + "
                            "name_ph.nii.gz), or give them as a NumPy/MATLAB pair")
    if stem.endswith("_ph") and (mag := _nifti_named(p.parent, stem[:-3])) is not None:
        return mag, p, "magnitude-phase"
    if stem.endswith("_imaginary") and (re_ := _nifti_named(p.parent, stem[:-10] + "_real")) is not None:
        return re_, p, "real-imag"
    if stem.endswith("_real") and (im := _nifti_named(p.parent, stem[:-5] + "_imaginary")) is not None:
        return p, im, "real-imag"
    if (ph := _nifti_named(p.parent, stem + "_ph")) is not None:
        return p, ph, "magnitude-phase"
    return None


def drop_partners(paths: list[Path]) -> list[Path]:
    """``paths`` without the second part of a BIDS or dcm2niix pair whose first part is also listed
    (a shell glob ``*.nii.gz`` names both ``part-mag`` and ``part-phase``, or ``S`` and ``S_ph``)."""
    given = {Path(p).resolve() for p in paths}
    partners = set()
    for p in paths:
        found = bids_partner(p)
        if found is not None and found[0].resolve() in given:
            partners.add(found[0].resolve())
        pair = dcm2niix_partner(p)
        if pair is not None and pair[0].resolve() in given and pair[1].resolve() in given:
            partners.add(pair[1].resolve())
    return [p for p in paths if Path(p).resolve() not in partners]


def scan_stem(path: str | os.PathLike[str]) -> str:
    """The name a scan's outputs carry: the file name without extensions and without a BIDS
    ``part-`` entity (``sub-01_part-mag_MRF.nii.gz`` → ``sub-01_MRF``)."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".h5", ".hdf5", ".mrd", ".npy", ".npz", ".mat", ".dcm"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return re.sub(r"_part-[a-z]+(?=_|$)", "", name) or "scan"


def read_mask(path: str | os.PathLike[str], shape: tuple[int, int, int], axes: str | None = None) -> np.ndarray:
    """bool ``(slices, y, x)`` from a mask file: NIfTI ``(x, y[, z])``, or ``.npy`` in the series'
    declared axis order without ``t`` (default ``(slices, y, x)``). Non-zero is foreground."""
    p = Path(path)
    if not p.exists():
        raise MrfreconError(f"{p}: no such mask file")
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            v = np.asarray(nib.load(str(p)).dataobj)
        except Exception as e:
            raise MrfreconError(f"{p}: not a readable NIfTI mask ({e})") from None
        v = v[..., None] if v.ndim == 2 else v
        m = np.transpose(v, (2, 1, 0)) if v.ndim == 3 else v
    elif name.endswith(".npy"):
        try:
            v = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise MrfreconError(f"{p}: not a readable .npy mask ({e})") from None
        if axes is not None:
            names = [a.strip().lower() for a in axes.split(",") if a.strip() and a.strip().lower() != "t"]
            if len(names) == v.ndim and set(names) <= set("xyz"):
                order = [names.index(a) for a in "zyx" if a in names]
                v = np.transpose(v, order)
        m = v[None] if v.ndim == 2 else v
    else:
        raise MrfreconError(f"{p}: a mask must be NIfTI (.nii, .nii.gz) or NumPy (.npy)")
    if m.shape != tuple(shape):
        raise MrfreconError(f"{p}: mask of shape {m.shape} (slices, y, x) does not fit the series' {tuple(shape)}")
    if not np.isfinite(m.astype(np.float64)).all():
        raise MrfreconError(f"{p}: mask contains NaN or infinite values")
    fg = m != 0
    if not fg.any():
        raise MrfreconError(f"{p}: the mask is empty (no non-zero voxel)")
    return fg


def read_scan(
    path: str | os.PathLike[str],
    second: str | os.PathLike[str] | None = None,
    *,
    sequence: Sequence | None = None,
    axes: str | None = None,
    pair: str | None = None,
    phase_units: str = "auto",
    mask: str | os.PathLike[str] | None = None,
    voxel_mm: tuple[float, float, float] | None = None,
    orientation: str | None = None,
    kind: str | None = None,
    **raw_options: Any,
) -> Scan:
    """Read any supported input as a validated scan.

    Parameters
    ----------
    path, second
        The input (a file, or a DICOM folder); ``second`` the other part of a two-file series
        (phase or imaginary part; found by itself for BIDS ``part-mag``/``part-real`` names).
    sequence
        The MRF sequence the data were acquired with (default the built-in MRF-WF); its frame
        count must match the series'. Ignored for mrfrecon scans, which carry their own.
    axes
        Storage order of a NumPy/MATLAB array (``x,y,t``, ``x,y,z,t``, ``t,z,y,x``, ...).
    pair
        ``magnitude-phase`` (default for two files) or ``real-imag``.
    phase_units
        ``auto`` (from the files' tags: DICOM RescaleSlope/Intercept, NIfTI scl_slope/scl_inter,
        sidecar ``Units``; else an unambiguous range), ``radians``, ``scanner`` (−4096 … 4096 for
        −π … π) or ``uint12`` (0 … 4095 for −π … π): :func:`mrfrecon.io.series.phase_radians`.
    mask
        A foreground mask file (NIfTI or .npy); default: the scan's own, else estimated.
    voxel_mm, orientation
        Geometry of arrays that carry none: voxel size (x, y, slice) in mm (default 1 × 1 × 8) and
        axis codes such as ``LPS`` (x → left, y → posterior, slice → superior). Without
        ``orientation`` the geometry is recorded as unknown.
    kind
        Force the kind (a key of :data:`KINDS`) instead of telling it from the content.
    raw_options
        For ISMRMRD: ``window`` (KWIC spokes, default 55), ``recon`` (``kwic`` or ``kwic-tv``),
        ``tv_weight``.
    """
    p = Path(path)
    kind = kind or detect_kind(p)
    if kind not in KINDS:
        raise MrfreconError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "scan":
        scan = load_scan(p)
        if mask is not None:
            scan.foreground = read_mask(mask, scan.shape, axes)
            scan.attrs = {**scan.attrs, "foreground": f"from {mask}"}
        return scan
    seq = sequence or Sequence.mrf_wf()
    echo_times = tuple(float(t) for t in np.unique(seq.te_ms))
    if second is None and kind == "nifti" and (found := bids_partner(p)) is not None:
        second, pair = found[0], pair or found[1]
        if not second.exists():
            raise MrfreconError(f"{p}: a BIDS part-{'mag' if pair == 'magnitude-phase' else 'real'} image, but its "
                                f"other part {second.name} is not beside it")
    elif second is None and kind == "nifti" and (both := dcm2niix_partner(p)) is not None:
        p, second, pair = both[0], both[1], pair or both[2]
    imp: ImportedSeries
    if kind == "nifti":
        from .series import read_nifti
        from .sidecars import check_sidecars, read_sidecar, sidecar_component

        if second is None and (side := read_sidecar(p)) is not None and sidecar_component(side[1]) == "magnitude":
            raise MrfreconError(f"{p}: its sidecar {side[0].name} says a magnitude image, and no phase file is beside "
                                f"it ({scan_stem(p)}_ph.nii.gz as dcm2niix names it, or a BIDS part-phase file); give "
                                "the phase file as the second input")
        declared, side_notes = check_sidecars(p, Path(second) if second is not None else None,
                                              pair or "magnitude-phase", echo_times)
        imp = read_nifti(p, second, frames=seq.frames, pair=pair or "magnitude-phase", axes=axes,
                         phase_units=phase_units, phase_declared=declared)
        imp.notes.update(side_notes)
    elif kind == "numpy":
        from .series import read_numpy

        imp = read_numpy(p, frames=seq.frames, axes=axes, pair=pair, phase_units=phase_units)
    elif kind == "matlab":
        from .series import read_matlab

        imp = read_matlab(p, frames=seq.frames, axes=axes, pair=pair, phase_units=phase_units)
    elif kind == "dicom":
        from .dicom import read_dicom

        paths = [p] + ([Path(second)] if second is not None else [])
        imp = read_dicom(paths, frames=seq.frames, phase_units=phase_units, echo_times_ms=echo_times)
    else:
        from .ismrmrd import read_ismrmrd

        imp = read_ismrmrd(p, seq, **raw_options)
    if raw_options and kind != "ismrmrd":
        raise MrfreconError(f"{p}: {', '.join(raw_options)} apply to ISMRMRD raw data only")
    if second is not None and kind in ("numpy", "matlab", "ismrmrd"):
        raise MrfreconError(f"{second}: a second file applies to NIfTI and DICOM inputs; put both parts of a "
                            f"{kind} series in one .npz/.mat file (magnitude + phase or real + imag variables)")
    series = imp.series
    s, _, ny, nx = series.shape
    attrs: dict[str, Any] = {"subject": scan_stem(p), "source": imp.sources, "import": imp.notes}
    affine = imp.affine
    if affine is None:
        vox = tuple(float(v) for v in (voxel_mm or (1.0, 1.0, 8.0)))
        affine = affine_from_axcodes(vox, (nx, ny, s), tuple(orientation.upper()) if orientation else ("R", "A", "S"))
        attrs["voxel_mm"] = list(vox)
        if orientation is None:
            attrs["geometry"] = "unknown: the file carries none (maps are written with axes x, y, slice taken as R, A, S)"
    attrs["orientation"] = list(affine_axcodes(affine))
    if mask is not None:
        fg = read_mask(mask, (s, ny, nx), axes)
        attrs["foreground"] = f"from {mask}"
    else:
        from .foreground import estimate_foreground

        fg = estimate_foreground(series)
        attrs["foreground"] = "estimated (log-Otsu on the RMS image, holes filled)"
    scan = Scan(series=series, foreground=fg, sequence=seq, attrs=attrs, affine=affine)
    _validate_scan(scan, str(p))
    return scan
