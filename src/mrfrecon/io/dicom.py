"""DICOM magnitude and phase images of an MRF series → complex ``(slices, frames, y, x)``.

Which image is which (DICOM PS3.3): ``ComplexImageComponent`` (0008,9208) when present
(MAGNITUDE, PHASE, REAL, IMAGINARY), else the third value of ``ImageType`` (0008,0008), ``M`` or
``P`` on Siemens scanners (``MAGNITUDE``/``PHASE`` also accepted). Where it is: slices are the
distinct positions of ``ImagePositionPatient`` (0020,0032) along the normal of
``ImageOrientationPatient`` (0020,0037), ordered by that position. Frames at one position are
ordered by the acquisition's own counter: ``TemporalPositionIdentifier`` (0020,0100) when every
image has one, else ``AcquisitionNumber`` (0020,0012) when it differs between frames, else
``InstanceNumber`` (0020,0013). Geometry: columns along the first ``ImageOrientationPatient``
vector spaced by ``PixelSpacing[1]``, rows along the second spaced by ``PixelSpacing[0]``
(PS3.3 C.7.6.2.1.1 and 10.7.1.3), slices by the positions (``SliceThickness`` for one slice);
the LPS+ patient frame turned into RAS+.

Pixel values are ``stored · RescaleSlope + RescaleIntercept``; phase in radians or in the
scanner's integer range (:mod:`mrfrecon.io.series`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from .geometry import lps_to_ras
from .series import ImportedSeries, _check_complex, combine_parts

__all__ = ["is_dicom", "read_dicom"]

_COMPONENT = {"MAGNITUDE": "magnitude", "M": "magnitude", "PHASE": "phase", "P": "phase",
              "REAL": "real", "R": "real", "IMAGINARY": "imag", "I": "imag"}


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


def _component(ds: Any, path: Path) -> str:
    cic = getattr(ds, "ComplexImageComponent", None)
    if cic and str(cic).upper() in _COMPONENT:
        return _COMPONENT[str(cic).upper()]
    it = [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]
    for v in it[2:3] + it:
        if v in _COMPONENT:
            return _COMPONENT[v]
    shown = "\\".join(it) or "(none)"
    raise MrfreconError(f"{path}: ImageType {shown}: cannot tell magnitude from phase "
                        "(expected M/P or MAGNITUDE/PHASE, or a ComplexImageComponent)")


def _num(ds: Any, tag: str, path: Path, n: int | None = None) -> np.ndarray:
    v = getattr(ds, tag, None)
    if v is None:
        raise MrfreconError(f"{path}: {tag}: missing (needed for the geometry)")
    try:
        vals = [v] if isinstance(v, str | int | float) else list(v)
        a = np.asarray([float(x) for x in vals])
    except (TypeError, ValueError):
        raise MrfreconError(f"{path}: {tag}: not numbers ({v!r})") from None
    if n is not None and a.size != n:
        raise MrfreconError(f"{path}: {tag}: expected {n} values, found {a.size}")
    return a


def read_dicom(paths: list[str | os.PathLike[str]], *, frames: int, phase_units: str = "auto",
               echo_times_ms: tuple[float, ...] | None = None) -> ImportedSeries:
    """Read an MRF series from DICOM files or folders (magnitude and phase images together or
    in separate folders). ``echo_times_ms``: the sequence's TEs; an ``EchoTime`` outside them is
    refused."""
    import pydicom

    files = _files([Path(p) for p in paths])
    images: list[dict[str, Any]] = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
        except Exception as e:  # pydicom raises several types for bad files
            raise MrfreconError(f"{f}: not a readable DICOM file ({e})") from None
        if "PixelData" not in ds:
            raise MrfreconError(f"{f}: no PixelData (not an image)")
        iop = _num(ds, "ImageOrientationPatient", f, 6)
        ipp = _num(ds, "ImagePositionPatient", f, 3)
        spacing = _num(ds, "PixelSpacing", f, 2)
        te = getattr(ds, "EchoTime", None)
        if te is not None and echo_times_ms is not None and not any(abs(float(te) - t) < 0.01 for t in echo_times_ms):
            raise MrfreconError(f"{f}: EchoTime {float(te):g} ms is none of the sequence's echo times "
                                f"({', '.join(f'{t:g}' for t in echo_times_ms)} ms)")
        try:
            pix = ds.pixel_array.astype(np.float64)
        except Exception as e:
            raise MrfreconError(f"{f}: pixel data cannot be decoded ({e})") from None
        pix = pix * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
        images.append({"file": f, "component": _component(ds, f), "iop": iop, "ipp": ipp, "spacing": spacing,
                       "shape": pix.shape, "pixels": pix, "thickness": float(getattr(ds, "SliceThickness", 0) or 0),
                       "tpi": getattr(ds, "TemporalPositionIdentifier", None),
                       "acq": getattr(ds, "AcquisitionNumber", None), "inst": getattr(ds, "InstanceNumber", None)})
    ref = images[0]
    for im in images[1:]:
        for key, what in (("iop", "ImageOrientationPatient"), ("spacing", "PixelSpacing")):
            if not np.allclose(im[key], ref[key], atol=1e-4):
                raise MrfreconError(f"{im['file']}: {what} {im[key].tolist()} differs from {ref['file']}'s "
                                    f"{ref[key].tolist()}: mixed geometry in one series")
        if im["shape"] != ref["shape"]:
            raise MrfreconError(f"{im['file']}: {im['shape'][0]} × {im['shape'][1]} pixels, but {ref['file']} has "
                                f"{ref['shape'][0]} × {ref['shape'][1]}: mixed geometry in one series")
    comps = {im["component"] for im in images}
    if comps == {"magnitude"}:
        raise MrfreconError(f"{files[0].parent}: magnitude images only (no phase): the dictionary's fingerprints are "
                            "complex and their phase carries the off-resonance and the water–fat shift; add the "
                            "phase images of the series")
    if comps not in ({"magnitude", "phase"}, {"real", "imag"}):
        raise MrfreconError(f"{files[0].parent}: found {', '.join(sorted(comps))} images; expected magnitude and "
                            "phase (or real and imaginary) images of one series")
    row, col = ref["iop"][:3], ref["iop"][3:]
    normal = np.cross(row, col)
    pos = np.array([float(im["ipp"] @ normal) for im in images])
    slice_pos = np.unique(np.round(pos, 3))
    # order frames by the acquisition's counter
    key_name = "tpi" if all(im["tpi"] is not None for im in images) else (
        "acq" if all(im["acq"] is not None for im in images) and len({im["acq"] for im in images}) > 1 else "inst")
    if any(im[key_name] is None for im in images):
        raise MrfreconError(f"{files[0].parent}: InstanceNumber missing: cannot order the frames")
    tag = {"tpi": "TemporalPositionIdentifier", "acq": "AcquisitionNumber", "inst": "InstanceNumber"}[key_name]
    groups: dict[tuple[int, str], dict[int, dict]] = defaultdict(dict)
    for im, p in zip(images, pos, strict=True):
        k = int(np.argmin(np.abs(slice_pos - p)))
        g = groups[(k, im["component"])]
        frame_key = int(im[key_name])
        if frame_key in g:
            raise MrfreconError(f"{im['file']}: duplicated frame: {tag} {frame_key} at slice position {slice_pos[k]:g} mm "
                                f"is also {g[frame_key]['file']}")
        g[frame_key] = im
    parts = sorted(comps, key=lambda c: ("magnitude", "real", "phase", "imag").index(c))
    ny, nx = ref["shape"]
    arrays = {c: np.zeros((slice_pos.size, frames, ny, nx)) for c in parts}
    for k in range(slice_pos.size):
        keys = None
        for c in parts:
            g = groups.get((k, c), {})
            if len(g) != frames:
                raise MrfreconError(f"{files[0].parent}: slice at {slice_pos[k]:g} mm has {len(g)} {c} frames, but the "
                                    f"sequence has {frames} (missing or extra images)")
            ks = sorted(g)
            if keys is not None and ks != keys:
                raise MrfreconError(f"{files[0].parent}: slice at {slice_pos[k]:g} mm: the {c} images' {tag}s differ "
                                    "from the other part's")
            keys = ks
            for t, fk in enumerate(ks):
                arrays[c][k, t] = g[fk]["pixels"]
    pair = "magnitude-phase" if parts[0] == "magnitude" else "real-imag"
    series, notes = combine_parts(arrays[parts[0]], arrays[parts[1]], pair, str(files[0].parent), phase_units)
    series = _check_complex(series, str(files[0].parent)).astype(np.complex64)
    # geometry: LPS+ affine of (column, row, slice), then RAS+
    first = min(images, key=lambda im: float(im["ipp"] @ normal))
    aff = np.eye(4)
    aff[:3, 0] = row * ref["spacing"][1]
    aff[:3, 1] = col * ref["spacing"][0]
    if slice_pos.size > 1:
        gaps = np.diff(slice_pos)
        if not np.allclose(gaps, gaps.mean(), rtol=0.01, atol=1e-3):
            raise MrfreconError(f"{files[0].parent}: slice positions {slice_pos.tolist()} mm are not evenly spaced: "
                                "mixed geometry in one series")
        aff[:3, 2] = normal * float(gaps.mean())
    else:
        aff[:3, 2] = normal * (ref["thickness"] or 1.0)
    aff[:3, 3] = first["ipp"]
    notes.update(kind="dicom", frame_order=tag, images=len(images))
    return ImportedSeries(series, lps_to_ras @ aff, [str(p) for p in paths], notes)
