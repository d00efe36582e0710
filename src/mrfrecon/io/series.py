"""Image series from NIfTI, NumPy and MATLAB files → ``(slices, frames, y, x)`` complex64.

A series arrives as one complex array, or as two real arrays: magnitude and phase, or real and
imaginary parts. Files without geometry (NumPy, MATLAB) need their axis order declared: a
comma-separated list naming every axis of the stored array, ``x`` (columns), ``y`` (rows), ``z``
(slices; optional) and ``t`` (frames), in storage order, e.g. ``x,y,t`` or ``t,z,y,x``. For
MATLAB files the order is MATLAB's own (``size(A)``), also for v7.3 files, which HDF5 stores
with the axes reversed. NIfTI images are ``(x, y, z, t)`` by the standard (NIfTI-1 ``dim``),
or ``(x, y, t)`` for one slice; their affine (nibabel's, RAS+) is kept.

Phase units (:func:`phase_radians`): radians; ``scanner``, the range ``[-4096, 4096)`` for
``[-π, π)``; or ``uint12``, the 12-bit stored values ``0 … 4095`` for ``[-π, π)``. Siemens stores
phase images as 0 … 4095 with RescaleSlope 2 and RescaleIntercept −4096, so that the rescaled
values run −4096 … 4094 (dcm2niix copies the pair into the NIfTI ``scl_slope``/``scl_inter``:
rordenlab/dcm2niix issue 406; the same range in nipreps/fmriprep pull request 1359). ``"auto"``
takes the units that the data's own tags state (the caller passes them as ``declared``: that
rescale pair in DICOM or NIfTI); without such tags it takes radians for values within ±π and the
scanner's range for signed values that reach beyond ±1000·π (which no other known convention
does), and refuses anything else, naming ``--phase-units``: phase images stored 0 … 4095 whose
rescale values were lost read as scanner units give phases in [0, π) only, a silent error
(T1H2O off by about 500 ms), and without the tags the range alone cannot tell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError

__all__ = ["PAIRS", "PHASE_UNITS", "ImportedSeries", "combine_parts", "nifti_rescale_units", "parse_axes",
           "phase_radians", "read_matlab", "read_nifti", "read_numpy"]

#: Two-file (or two-variable) forms of a complex series.
PAIRS = ("magnitude-phase", "real-imag")
#: Variable names recognized in .npz/.mat files for each part.
_PART_NAMES = {"series": ("series", "data", "img", "image", "images"), "magnitude": ("magnitude", "mag", "abs"),
               "phase": ("phase", "pha", "angle"), "real": ("real", "re"), "imag": ("imag", "imaginary", "im")}
_SCANNER_PHASE_HALF_RANGE = 4096.0  # Siemens phase images: −4096 … 4095 ↔ −π … π
_UINT12_TOP = 4095.0  # Siemens' stored phase values 0 … 4095 (before RescaleSlope 2, RescaleIntercept −4096)
#: Units of phase images (``--phase-units``); ``auto`` decides from the tags, else the value range.
PHASE_UNITS = ("auto", "radians", "scanner", "uint12")
_UNITS_SAID = "radians: ±π; scanner: −4096…4096 for −π…π; uint12: 0…4095 for −π…π"


@dataclass
class ImportedSeries:
    """A series read from outside: complex64 ``(slices, frames, y, x)``, the RAS+ affine of
    ``(x, y, slice)`` (``None`` when the file has no geometry), the files it came from, notes on
    how it was read (kind, axis order, phase units, ...; kept in the scan's attributes) and the
    seconds per stage (not kept: the same input gives the same scan file)."""

    series: np.ndarray
    affine: np.ndarray | None
    sources: list[str]
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def parse_axes(spec: str, shape: tuple[int, ...], frames: int, where: str) -> tuple[int, ...]:
    """The permutation that takes an array of ``shape`` stored in axis order ``spec`` to
    ``(z, t, y, x)`` (a missing ``z`` is added by the caller as length 1): a tuple of source axes
    in the order z (or -1), t, y, x.

    Refuses an order that cannot be right: unknown or repeated names, a rank that differs from
    the array's, or a ``t`` axis whose length is not the sequence's frame count.
    """
    names = [a.strip().lower() for a in spec.split(",") if a.strip()]
    if any(n not in "xyzt" or len(n) != 1 for n in names) or len(set(names)) != len(names):
        raise MrfreconError(f"{where}: --axes {spec!r}: expected distinct names from x, y, z, t (e.g. x,y,t or t,z,y,x)")
    if not {"x", "y", "t"} <= set(names):
        raise MrfreconError(f"{where}: --axes {spec!r}: x, y and t are required (z is optional)")
    if len(names) != len(shape):
        raise MrfreconError(f"{where}: --axes {spec!r} names {len(names)} axes, but the array has shape {shape}")
    t = names.index("t")
    if shape[t] != frames:
        having = [names[i] for i, n in enumerate(shape) if n == frames]
        hint = (f"; axis {', '.join(having)} has {frames}" if having else f"; no axis has the sequence's {frames} frames")
        raise MrfreconError(f"{where}: --axes {spec!r} puts t on an axis of length {shape[t]}, but the sequence has "
                            f"{frames} frames{hint}")
    return (names.index("z") if "z" in names else -1, t, names.index("y"), names.index("x"))


def _to_internal(a: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    z, t, y, x = perm
    if z < 0:
        return np.transpose(a, (t, y, x))[None]
    return np.transpose(a, (z, t, y, x))


def phase_radians(phase: np.ndarray, units: str, where: str,
                  declared: tuple[str | None, str] | None = None) -> tuple[np.ndarray, dict[str, str]]:
    """Phase values in radians.

    Parameters
    ----------
    phase
        Real phase values, any shape.
    units
        One of :data:`PHASE_UNITS`; ``"auto"`` takes ``declared``, else decides from the range.
    where
        The file(s), for messages.
    declared
        ``(units, what states them)`` from the data's own tags, e.g. ``("scanner", "RescaleSlope 2,
        RescaleIntercept -4096")``; ``(None, what was found)`` for tags that state no known unit;
        ``None`` when there are no such tags.

    Returns
    -------
    radians, notes
        The phase in radians (same shape, float64) and ``{"phase_units": ..., "phase_units_from": ...}``.

    Raises
    ------
    MrfreconError
        Units the values do not fit, or (``auto``) a range that fits no unit unambiguously.
    """
    if units not in PHASE_UNITS:
        raise MrfreconError(f"phase units: expected one of {', '.join(PHASE_UNITS)}, got {units!r}")
    phase = np.asarray(phase, dtype=np.float64)
    lo = float(np.nanmin(phase)) if phase.size else 0.0
    hi = float(np.nanmax(phase)) if phase.size else 0.0
    top = max(abs(lo), abs(hi))
    if units != "auto":
        source = "--phase-units"
    elif declared is not None and declared[0] is not None:
        units, source = declared[0], declared[1]
    elif top <= np.pi * (1 + 1e-4):
        units, source = "radians", "value range within ±π"
    elif lo < 0 and 1000 * np.pi < top <= _SCANNER_PHASE_HALF_RANGE + 1:
        # signed and beyond ±1000π: neither radians, milliradians nor unsigned stored values
        units, source = "scanner", "value range beyond ±1000π within ±4096"
    else:
        hint = (" (0…4095 is Siemens' stored range whose RescaleSlope 2 / RescaleIntercept -4096 are missing: "
                "uint12, if that is what was lost)" if lo >= 0 and hi <= _UINT12_TOP + 0.5 else "")
        said = declared[1] if declared is not None else "no tag that states their units"
        raise MrfreconError(f"{where}: phase: values {lo:g}…{hi:g} and {said}{hint}; "
                            f"say which with --phase-units ({_UNITS_SAID})")
    fits = {"radians": -np.pi * (1 + 1e-4) - 1e-6 <= lo and hi <= np.pi * (1 + 1e-4) + 1e-6,
            "scanner": -_SCANNER_PHASE_HALF_RANGE - 1 <= lo and hi <= _SCANNER_PHASE_HALF_RANGE + 1,
            "uint12": -0.5 <= lo and hi <= _UINT12_TOP + 0.5}[units]
    if not fits:
        raise MrfreconError(f"{where}: phase: values {lo:g}…{hi:g} do not fit phase units {units} "
                            f"(from {source}; {_UNITS_SAID})")
    if units == "scanner":
        phase = phase * (np.pi / _SCANNER_PHASE_HALF_RANGE)
    elif units == "uint12":  # the Siemens rescale (2·v − 4096), then the scanner's range
        phase = (2.0 * phase - _SCANNER_PHASE_HALF_RANGE) * (np.pi / _SCANNER_PHASE_HALF_RANGE)
    return phase, {"phase_units": units, "phase_units_from": source}


def combine_parts(a: np.ndarray, b: np.ndarray, pair: str, where: str, phase_units: str = "auto",
                  phase_declared: tuple[str | None, str] | None = None) -> tuple[np.ndarray, dict]:
    """One complex array from two real ones: ``pair`` is ``"magnitude-phase"`` (phase in
    ``phase_units``; ``phase_declared``: the units the data's tags state, see
    :func:`phase_radians`) or ``"real-imag"``. Returns the array and notes."""
    if pair not in PAIRS:
        raise MrfreconError(f"pair: expected one of {', '.join(PAIRS)}, got {pair!r}")
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise MrfreconError(f"{where}: the two parts differ in shape: {a.shape} vs {b.shape}")
    for arr, name in ((a, pair.split("-")[0]), (b, pair.split("-")[1])):
        if np.iscomplexobj(arr):
            raise MrfreconError(f"{where}: {name}: expected real values, found complex ({arr.dtype})")
        if not np.issubdtype(arr.dtype, np.number):
            raise MrfreconError(f"{where}: {name}: expected numbers, found dtype {arr.dtype}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    notes: dict[str, Any] = {"pair": pair}
    if pair == "magnitude-phase":
        if np.nanmin(a) < 0:
            raise MrfreconError(f"{where}: magnitude: negative values (min {np.nanmin(a):g}); is this a real part? (pair real-imag)")
        ph, more = phase_radians(b, phase_units, where, phase_declared)
        notes.update(more)
        out = a * np.exp(1j * ph)
    else:
        out = a + 1j * b
    return out, notes


def _check_complex(x: np.ndarray, where: str) -> np.ndarray:
    """Refuse magnitude-only data (real dtype, or no imaginary part anywhere) and NaN/inf."""
    if not np.issubdtype(x.dtype, np.number) or x.dtype.kind == "b":
        raise MrfreconError(f"{where}: expected a complex image series, found dtype {x.dtype}")
    if not np.iscomplexobj(x) or not np.any(x.imag):
        raise MrfreconError(f"{where}: magnitude-only series ({x.dtype}, no phase): the dictionary's fingerprints are "
                            "complex and their phase carries the off-resonance and the water–fat shift; give a complex "
                            "series, magnitude + phase, or real + imaginary parts")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise MrfreconError(f"{where}: contains NaN or infinite samples (first at index {tuple(int(i) for i in bad)})")
    return x


def _finish(arr: np.ndarray, axes: str, frames: int, where: str) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = _check_complex(np.asarray(arr), where)
    perm = parse_axes(axes, arr.shape, frames, where)
    return np.ascontiguousarray(_to_internal(arr, perm)).astype(np.complex64), perm


def _need_axes(axes: str | None, shape: tuple[int, ...], where: str) -> str:
    if axes is None:
        raise MrfreconError(f"{where}: an array of shape {shape} carries no axis order: declare it with --axes "
                            "(e.g. x,y,t or x,y,z,t or t,z,y,x)")
    return axes


# ------------------------------------------------------------------------------------ NIfTI
def _nifti_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    if not path.exists():
        raise MrfreconError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises several types for bad files
        raise MrfreconError(f"{path}: not a readable NIfTI image ({e})") from None
    return np.asarray(data), np.asarray(img.affine, dtype=np.float64)


def _nifti_axes(shape: tuple[int, ...], axes: str | None) -> str:
    """NIfTI's own order unless declared: (x, y, z, t), or (x, y, t) for a 3-D image."""
    if axes is not None:
        return axes
    return "x,y,t" if len(shape) == 3 else "x,y,z,t"


def nifti_rescale_units(path: Path) -> tuple[str, str] | None:
    """``("scanner", ...)`` when a NIfTI file's ``scl_slope``/``scl_inter`` are Siemens' phase
    rescale (2, −4096), else ``None`` (other scalings state no unit)."""
    import nibabel as nib

    try:  # nibabel moves scl_slope/scl_inter from a loaded header into the data's proxy
        proxy = nib.load(str(path)).dataobj
        slope, inter = getattr(proxy, "slope", None), getattr(proxy, "inter", None)
    except Exception:  # read errors are reported by the data reader
        return None
    if slope is not None and inter is not None and np.isclose(slope, 2.0) and np.isclose(inter, -4096.0):
        return "scanner", f"{path.name}: scl_slope 2, scl_inter -4096 (Siemens' phase rescale)"
    return None


def _spatial_affine(file_affine: np.ndarray, names: list[str]) -> np.ndarray:
    """The affine of the internal (x, y, slice) from a NIfTI affine of the file's spatial axes in
    storage order (i, j, k = the non-t axes in order)."""
    spatial = [n for n in names if n != "t"]
    aff = np.eye(4)
    aff[:3, 3] = file_affine[:3, 3]
    for col, n in enumerate("xyz"):
        if n in spatial:
            aff[:3, col] = file_affine[:3, spatial.index(n)]
    if "z" not in spatial:  # one slice: its normal, 1 mm long (the file states no thickness)
        nrm = np.cross(aff[:3, 0], aff[:3, 1])
        aff[:3, 2] = nrm / (np.linalg.norm(nrm) or 1.0)
    return aff


def read_nifti(path: str | os.PathLike[str], second: str | os.PathLike[str] | None = None, *, frames: int,
               pair: str = "magnitude-phase", axes: str | None = None, phase_units: str = "auto",
               phase_declared: tuple[str | None, str] | None = None) -> ImportedSeries:
    """A complex NIfTI series, or a pair of real ones (``second``: phase or imaginary part).

    The phase file's own ``scl_slope`` 2 and ``scl_inter`` −4096 (Siemens' rescale, copied by
    dcm2niix) state scanner units; else ``phase_declared`` (from a JSON sidecar,
    :mod:`mrfrecon.io.sidecars`) may state them (:func:`phase_radians`)."""
    path = Path(path)
    data, aff = _nifti_data(path)
    sources = [str(path)]
    notes: dict[str, Any] = {"kind": "nifti"}
    where = str(path)
    if second is not None:
        data2, aff2 = _nifti_data(Path(second))
        if not np.allclose(aff, aff2, atol=1e-3):
            raise MrfreconError(f"{second}: its affine differs from that of {path}: the two parts must share one geometry")
        if pair == "magnitude-phase":  # the header's own rescale first, then what a sidecar says
            phase_declared = nifti_rescale_units(Path(second)) or phase_declared
        data, more = combine_parts(data, data2, pair, f"{path} + {second}", phase_units, phase_declared)
        notes.update(more)
        sources.append(str(second))
        where = f"{path} + {second}"
    spec = _nifti_axes(data.shape, axes)
    series, _ = _finish(data, spec, frames, where)
    names = [a.strip().lower() for a in spec.split(",")]
    notes["axes"] = spec
    return ImportedSeries(series, _spatial_affine(aff, names), sources, notes)


# ------------------------------------------------------------------------------------ NumPy / MATLAB
def _pick(arrays: dict[str, np.ndarray], where: str, pair: str | None, phase_units: str) -> tuple[np.ndarray, dict]:
    """One complex array from the variables of an .npz/.mat file: the only array, a variable
    named like ``series``, or a magnitude/phase or real/imag pair of variables."""
    low = {k.lower(): k for k in arrays}

    def find(part: str) -> str | None:
        return next((low[n] for n in _PART_NAMES[part] if n in low), None)

    if len(arrays) == 1 and pair is None:
        return next(iter(arrays.values())), {"variable": next(iter(arrays))}
    if (name := find("series")) is not None and pair is None:
        return arrays[name], {"variable": name}
    for p, (u, v) in (("magnitude-phase", ("magnitude", "phase")), ("real-imag", ("real", "imag"))):
        a, b = find(u), find(v)
        if a is not None and b is not None and pair in (None, p):
            arr, notes = combine_parts(arrays[a], arrays[b], p, where, phase_units)
            return arr, {**notes, "variables": [a, b]}
    raise MrfreconError(f"{where}: cannot tell which variable is the series: found {', '.join(sorted(arrays)) or 'none'}; "
                        "expected one array, or one named series, or magnitude + phase, or real + imag")


def read_numpy(path: str | os.PathLike[str], *, frames: int, axes: str | None = None, pair: str | None = None,
               phase_units: str = "auto") -> ImportedSeries:
    """A series from ``.npy`` (one complex array) or ``.npz`` (see :func:`_pick`), with ``axes``."""
    path = Path(path)
    if not path.exists():
        raise MrfreconError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise MrfreconError(f"{path}: not a readable NumPy file ({e})") from None
    notes: dict[str, Any] = {"kind": "numpy"}
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
        arr, more = _pick(arrays, str(path), pair, phase_units)
        notes.update(more)
    else:
        arr = loaded
    spec = _need_axes(axes, np.shape(arr), str(path))
    series, _ = _finish(arr, spec, frames, str(path))
    notes["axes"] = spec
    return ImportedSeries(series, None, [str(path)], notes)


def _mat_v73(path: Path) -> dict[str, np.ndarray]:
    """Variables of a MATLAB v7.3 file (HDF5): arrays in MATLAB's axis order (HDF5 reverses it)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for k, ds in f.items():
            if not isinstance(ds, h5py.Dataset) or k.startswith("#"):
                continue
            a = ds[()]
            if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):  # MATLAB complex
                a = a["real"] + 1j * a["imag"]
            out[k] = np.asarray(a).T
    return out


def read_matlab(path: str | os.PathLike[str], *, frames: int, axes: str | None = None, pair: str | None = None,
                phase_units: str = "auto") -> ImportedSeries:
    """A series from a MATLAB ``.mat`` file: v5 through SciPy, v7.3 (HDF5) through h5py."""
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise MrfreconError(f"{path}: no such file")
    notes: dict[str, Any] = {"kind": "matlab"}
    try:
        raw = scipy.io.loadmat(str(path))
        arrays = {k: np.asarray(v) for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
        notes["mat_version"] = "5"
    except NotImplementedError:  # SciPy's answer to a v7.3 file
        try:
            arrays = _mat_v73(path)
        except OSError as e:
            raise MrfreconError(f"{path}: a MATLAB v7.3 file that HDF5 cannot read ({e})") from None
        notes["mat_version"] = "7.3"
    except (ValueError, OSError, TypeError) as e:
        raise MrfreconError(f"{path}: not a readable MATLAB file ({e})") from None
    arrays = {k: v for k, v in arrays.items() if v.dtype.kind in "fciu" and v.ndim >= 2}
    arr, more = _pick(arrays, str(path), pair, phase_units)
    notes.update(more)
    spec = _need_axes(axes, np.shape(arr), str(path))
    series, _ = _finish(arr, spec, frames, str(path))
    notes["axes"] = spec
    return ImportedSeries(series, None, [str(path)], notes)
