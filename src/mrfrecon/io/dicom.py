"""DICOM magnitude and phase images of an MRF series → complex ``(slices, frames, y, x)``.

Classic images (MR Image Storage, one frame per file) and multi-frame images (Enhanced MR Image
Storage as Siemens XA scanners write it, Legacy Converted Enhanced MR Image Storage as highdicom
writes it; magnitude and phase in two files or mixed in one) are read frame by frame into one kind
of record (:mod:`mrfrecon.io.dicom_enhanced`, which cites where the functional groups keep each
attribute), then assembled alike.

Which image is which (DICOM PS3.3): ``ComplexImageComponent`` (0008,9208) when present
(MAGNITUDE, PHASE, REAL, IMAGINARY), else the third value of ``ImageType`` (0008,0008) or of a
frame's ``FrameType`` (0008,9007), ``M`` or ``P`` on Siemens scanners (``MAGNITUDE``/``PHASE``
also accepted). Where it is: slices are the distinct positions of ``ImagePositionPatient``
(0020,0032) along the normal of ``ImageOrientationPatient`` (0020,0037), ordered by that position.
Frames at one position are ordered by the acquisition's own counter, the first that every image
has: ``TemporalPositionIndex`` (0020,9128, a multi-frame image's Frame Content), else
``TemporalPositionIdentifier`` (0020,0100), else ``AcquisitionNumber`` (0020,0012; a frame's
``FrameAcquisitionNumber`` 0020,9156) when it differs between frames, else the order of storage
(``InstanceNumber`` 0020,0013, then the frame number within a file). Geometry: columns along the
first ``ImageOrientationPatient`` vector spaced by ``PixelSpacing[1]``, rows along the second
spaced by ``PixelSpacing[0]`` (PS3.3 C.7.6.2.1.1 and 10.7.1.3), slices by the positions
(``SliceThickness`` for one slice); the LPS+ patient frame turned into RAS+.

Pixel values are ``stored · RescaleSlope + RescaleIntercept`` (a multi-frame image's Pixel Value
Transformation). Phase units (:func:`mrfrecon.io.series.phase_radians`): phase images that all
carry RescaleSlope 2 and RescaleIntercept −4096 (Siemens' convention: stored 0 … 4095 →
−4096 … 4094 ↔ −π … π) are in the scanner's range; without rescale values the range alone must
decide, and 0 … 4095 is refused unless ``--phase-units`` says what it is.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from .dicom_enhanced import Frame, classic_frame, is_multiframe, multiframe_frames
from .geometry import lps_to_ras
from .series import ImportedSeries, _check_complex, combine_parts

__all__ = ["is_dicom", "read_dicom"]

# Counters that order frames in time, in order of preference (see the module's docstring).
_ORDER = ("TemporalPositionIndex", "TemporalPositionIdentifier", "AcquisitionNumber", "InstanceNumber")


def is_dicom(path: Path) -> bool:
    """A DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and is_dicom(q))
        elif p.is_file():
            out.append(p)
        else:
            raise MrfreconError(f"{p}: no such file or folder")
    if not out:
        raise MrfreconError(f"{', '.join(map(str, paths))}: no DICOM files found")
    return out


def _read_frames(f: Path) -> list[Frame]:
    """The frames of one file (one for a classic image)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(f))
    except Exception as e:  # pydicom raises several types for bad files
        raise MrfreconError(f"{f}: not a readable DICOM file ({e})") from None
    if "PixelData" not in ds:
        raise MrfreconError(f"{f}: no PixelData (not an image)")
    try:
        pix = np.asarray(ds.pixel_array)
    except Exception as e:
        raise MrfreconError(f"{f}: pixel data cannot be decoded ({e})") from None
    if is_multiframe(ds):
        return multiframe_frames(ds, f, pix.reshape(-1, *pix.shape[-2:]))
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise MrfreconError(f"{f}: {int(ds.NumberOfFrames)} frames but no Shared/Per-Frame Functional Groups "
                            "(5200,9229)/(5200,9230) that place them: expected classic single-frame MR images or "
                            "Enhanced / Legacy Converted Enhanced MR images")
    return [classic_frame(ds, f, pix)]


def _order_by(frames: list[Frame], where: str) -> str:
    """The first counter of :data:`_ORDER` that every frame has (AcquisitionNumber only if it varies)."""
    for name in _ORDER[:-1]:
        vals = [fr.order.get(name) for fr in frames]
        if all(v is not None for v in vals) and (name != "AcquisitionNumber" or len(set(vals)) > 1):
            return name
    if any(fr.order.get("InstanceNumber") is None for fr in frames):
        raise MrfreconError(f"{where}: InstanceNumber missing: cannot order the frames")
    return "InstanceNumber"


def _show(key: Any) -> str:
    if isinstance(key, tuple):  # (InstanceNumber, frame number within the file; 0 for a classic image)
        return f"{key[0]}" + (f" frame {key[1]}" if key[1] else "")
    return f"{key}"


def _phase_declared(frames: list[Frame]) -> tuple[str | None, str] | None:
    """The phase units the phase images' rescale values state (see :func:`mrfrecon.io.series.phase_radians`)."""
    rs = {fr.rescale for fr in frames if fr.component == "phase"}
    if not rs or rs == {None}:
        return None
    if all(r is not None and np.isclose(r[0], 2.0) and np.isclose(r[1], -4096.0) for r in rs):
        # Siemens: stored 0…4095, rescaled −4096…4094 ↔ −π…π (rordenlab/dcm2niix issue 406)
        return "scanner", "RescaleSlope 2, RescaleIntercept -4096 of the phase images (Siemens' convention)"
    shown = ", ".join(sorted("none" if r is None else f"{r[0]:g}/{r[1]:g}" for r in rs))
    return None, f"the phase images' RescaleSlope/RescaleIntercept {shown} state no known phase units"


def read_dicom(paths: list[str | os.PathLike[str]], *, frames: int, phase_units: str = "auto",
               echo_times_ms: tuple[float, ...] | None = None) -> ImportedSeries:
    """Read an MRF series from DICOM files or folders.

    Parameters
    ----------
    paths
        Files or folders: classic images, multi-frame images, magnitude and phase together or apart.
    frames
        The sequence's frame count; every slice must have that many of each part.
    phase_units
        ``auto``, ``radians``, ``scanner`` or ``uint12`` (:data:`mrfrecon.io.series.PHASE_UNITS`).
    echo_times_ms
        The sequence's TEs in ms; an image's echo time (``EchoTime``, or a frame's
        ``EffectiveEchoTime``) outside them is refused.

    Returns
    -------
    ImportedSeries
        complex64 ``(slices, frames, rows, columns)`` and the RAS+ affine of ``(column, row, slice)``.
    """
    files = _files([Path(p) for p in paths])
    where = str(files[0]) if len(files) == 1 else str(files[0].parent)
    images: list[Frame] = [fr for f in files for fr in _read_frames(f)]
    for im in images:
        te = im.echo_ms
        if te is not None and echo_times_ms is not None and not any(abs(te - t) < 0.01 for t in echo_times_ms):
            field = "EchoTime" if im.index is None else "echo time (MREchoSequence > EffectiveEchoTime or EchoTime)"
            raise MrfreconError(f"{im.name}: {field} {te:g} ms is none of the sequence's echo times "
                                f"({', '.join(f'{t:g}' for t in echo_times_ms)} ms)")
    ref = images[0]
    for im in images[1:]:
        for key, what in (("iop", "ImageOrientationPatient"), ("spacing", "PixelSpacing")):
            if not np.allclose(getattr(im, key), getattr(ref, key), atol=1e-4):
                raise MrfreconError(f"{im.name}: {what} {getattr(im, key).tolist()} differs from {ref.name}'s "
                                    f"{getattr(ref, key).tolist()}: mixed geometry in one series")
        if im.pixels.shape != ref.pixels.shape:
            raise MrfreconError(f"{im.name}: {im.pixels.shape[0]} × {im.pixels.shape[1]} pixels, but {ref.name} has "
                                f"{ref.pixels.shape[0]} × {ref.pixels.shape[1]}: mixed geometry in one series")
    comps = {im.component for im in images}
    if comps == {"magnitude"}:
        raise MrfreconError(f"{where}: magnitude images only (no phase): the dictionary's fingerprints are "
                            "complex and their phase carries the off-resonance and the water–fat shift; add the "
                            "phase images of the series")
    if comps not in ({"magnitude", "phase"}, {"real", "imag"}):
        raise MrfreconError(f"{where}: found {', '.join(sorted(comps))} images; expected magnitude and "
                            "phase (or real and imaginary) images of one series")
    row, col = ref.iop[:3], ref.iop[3:]
    normal = np.cross(row, col)
    pos = np.array([float(im.ipp @ normal) for im in images])
    slice_pos = np.unique(np.round(pos, 3))
    tag = _order_by(images, where)
    groups: dict[tuple[int, str], dict[Any, Frame]] = defaultdict(dict)
    in_stack: dict[tuple[Path, str, int], Frame] = {}
    for im, p in zip(images, pos, strict=True):
        k = int(np.argmin(np.abs(slice_pos - p)))
        # Frame Content's InStackPositionNumber (C.7.6.16.2.2) names a plane within a stack: the same
        # number must mean the same position, or the file contradicts itself
        if (isp := im.order.get("InStackPositionNumber")) is not None:
            other = in_stack.setdefault((im.file, im.order.get("StackID", ""), isp), im)
            if abs(float(other.ipp @ normal) - p) > 1e-3:
                stack = im.order.get("StackID")
                raise MrfreconError(f"{im.name}: InStackPositionNumber {isp} of stack {stack!r} is at "
                                    f"{p:g} mm along the slice normal, but {other.name} with the same number is at "
                                    f"{float(other.ipp @ normal):g} mm: the Frame Content and Plane Position "
                                    "functional groups disagree")
        g = groups[(k, im.component)]
        frame_key = im.order[tag]
        if frame_key in g:
            raise MrfreconError(f"{im.name}: duplicated frame: {tag} {_show(frame_key)} at slice position "
                                f"{slice_pos[k]:g} mm is also {g[frame_key].name}")
        g[frame_key] = im
    if tag == "InstanceNumber":  # storage order: the parts pair up by rank, not by number
        groups = defaultdict(dict, {gk: {r: g[fk] for r, fk in enumerate(sorted(g))} for gk, g in groups.items()})
    parts = sorted(comps, key=lambda c: ("magnitude", "real", "phase", "imag").index(c))
    ny, nx = ref.pixels.shape
    arrays = {c: np.zeros((slice_pos.size, frames, ny, nx)) for c in parts}
    for k in range(slice_pos.size):
        keys = None
        for c in parts:
            g = groups.get((k, c), {})
            if len(g) != frames:
                raise MrfreconError(f"{where}: slice at {slice_pos[k]:g} mm has {len(g)} {c} frames, but the "
                                    f"sequence has {frames} (missing or extra images)")
            ks = sorted(g)
            if keys is not None and ks != keys:
                raise MrfreconError(f"{where}: slice at {slice_pos[k]:g} mm: the {c} images' {tag}s differ "
                                    "from the other part's")
            keys = ks
            for t, fk in enumerate(ks):
                arrays[c][k, t] = g[fk].pixels
    pair = "magnitude-phase" if parts[0] == "magnitude" else "real-imag"
    declared = _phase_declared(images) if pair == "magnitude-phase" else None
    series, notes = combine_parts(arrays[parts[0]], arrays[parts[1]], pair, where, phase_units, declared)
    series = _check_complex(series, where).astype(np.complex64)
    # geometry: LPS+ affine of (column, row, slice), then RAS+
    first = min(images, key=lambda im: float(im.ipp @ normal))
    aff = np.eye(4)
    aff[:3, 0] = row * ref.spacing[1]
    aff[:3, 1] = col * ref.spacing[0]
    if slice_pos.size > 1:
        gaps = np.diff(slice_pos)
        if not np.allclose(gaps, gaps.mean(), rtol=0.01, atol=1e-3):
            raise MrfreconError(f"{where}: slice positions {slice_pos.tolist()} mm are not evenly spaced: "
                                "mixed geometry in one series")
        aff[:3, 2] = normal * float(gaps.mean())
    else:
        aff[:3, 2] = normal * (ref.thickness or 1.0)
    aff[:3, 3] = first.ipp
    multi = sum(im.index == 1 for im in images)
    notes.update(kind="dicom", frame_order=tag, images=len(images), files=len(files), multiframe_files=multi)
    return ImportedSeries(series, lps_to_ras @ aff, [str(p) for p in paths], notes)
