"""JSON sidecars beside NIfTI series (dcm2niix's BIDS sidecars, BIDS raw data): which part a file
is, its echo time, and what its phase units are.

dcm2niix writes ``name.json`` beside ``name.nii[.gz]`` (rordenlab/dcm2niix,
``console/nii_dicom_batch.cpp``): ``EchoTime`` in seconds (the DICOM value / 1000), ``ImageType``
as the DICOM Image Type values with ``MAGNITUDE``/``PHASE``/``REAL``/``IMAGINARY`` appended when it
detected that part (e.g. ``["ORIGINAL", "PRIMARY", "P", "ND", "PHASE"]``), and for Philips data
``PhilipsRescaleSlope``, ``PhilipsRescaleIntercept``, ``PhilipsScaleSlope``. It copies the pixel
values losslessly and the DICOM rescale into the NIfTI ``scl_slope``/``scl_inter`` (issues 406,
493), so a Siemens phase file carries ``scl_slope`` 2 and ``scl_inter`` −4096
(:func:`mrfrecon.io.series.nifti_rescale_units`); the sidecar itself states no phase unit. BIDS
states one for ``part-phase`` files: ``Units`` ``"rad"`` or ``"arbitrary"`` (the ``part`` entity,
``src/schema/objects/entities.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from .dicom_enhanced import component_of

__all__ = ["check_sidecars", "read_sidecar", "sidecar_component", "sidecar_path"]

_PHILIPS = ("PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope")


def sidecar_path(nifti: str | Path) -> Path:
    """``name.json`` for ``name.nii`` or ``name.nii.gz``."""
    p = Path(nifti)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def read_sidecar(nifti: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The sidecar of a NIfTI file and its content, ``None`` when there is none."""
    js = sidecar_path(nifti)
    if not js.is_file():
        return None
    try:
        doc = json.loads(js.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MrfreconError(f"{js}: not a readable JSON sidecar ({e})") from None
    if not isinstance(doc, dict):
        raise MrfreconError(f"{js}: expected a JSON object (a sidecar), found {type(doc).__name__}")
    return js, doc


def sidecar_component(doc: dict[str, Any]) -> str | None:
    """``magnitude``/``phase``/``real``/``imag`` from a sidecar's ``ImageType``, ``None`` if it does not say."""
    it = doc.get("ImageType")
    return component_of(None, it) if isinstance(it, list | str) else None


def check_sidecars(first: Path, second: Path | None, pair: str,
                   echo_times_ms: tuple[float, ...] | None) -> tuple[tuple[str | None, str] | None, dict[str, Any]]:
    """Check a series' sidecars against what the files are given as, and read the phase units.

    Parameters
    ----------
    first, second
        The series' file, and the other part's (``None`` for a complex series in one file).
    pair
        ``magnitude-phase`` or ``real-imag``.
    echo_times_ms
        The sequence's TEs in ms; a sidecar ``EchoTime`` (s) outside them is refused.

    Returns
    -------
    declared, notes
        The phase units the sidecar states (``("radians", ...)`` for BIDS ``Units: "rad"``,
        ``(None, ...)`` for Philips scaling, which states no known unit; else ``None``) and notes
        for the scan's attributes (sidecars read, echo time).
    """
    parts = ("magnitude", "phase") if pair == "magnitude-phase" else ("real", "imag")
    files = [(first, parts[0] if second is not None else None)] + ([(second, parts[1])] if second is not None else [])
    notes: dict[str, Any] = {}
    declared: tuple[str | None, str] | None = None
    for path, expect in files:
        found = read_sidecar(path)
        if found is None:
            continue
        js, doc = found
        notes.setdefault("sidecars", []).append(str(js))
        te = doc.get("EchoTime")
        if te is not None:
            if isinstance(te, bool) or not isinstance(te, int | float) or not np.isfinite(te):
                raise MrfreconError(f"{js}: EchoTime {te!r}: expected one number in seconds")
            ms = float(te) * 1000.0  # BIDS and dcm2niix: seconds
            if echo_times_ms is not None and not any(abs(ms - t) < 0.01 for t in echo_times_ms):
                raise MrfreconError(f"{js}: EchoTime {te:g} s ({ms:g} ms) is none of the sequence's echo times "
                                    f"({', '.join(f'{t:g}' for t in echo_times_ms)} ms)")
            notes["echo_time_ms"] = ms
        comp = sidecar_component(doc)
        if expect is not None and comp is not None and comp != expect:
            shown = ", ".join(map(str, doc["ImageType"])) if isinstance(doc["ImageType"], list) else doc["ImageType"]
            raise MrfreconError(f"{path}: its sidecar {js.name} has ImageType [{shown}], a {comp} image, but the file "
                                f"is given as the {expect} part")
        if expect == "phase":
            if str(doc.get("Units", "")).lower() == "rad":
                declared = ("radians", f"{js.name}: Units rad")
            elif any(k in doc for k in _PHILIPS):
                shown = ", ".join(f"{k} {doc[k]}" for k in _PHILIPS if k in doc)
                declared = (None, f"{js.name}: Philips scaling ({shown}) states no known phase units")
    return declared, notes
