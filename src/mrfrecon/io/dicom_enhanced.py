"""The frames of DICOM MR images, classic or multi-frame, as one kind of record.

A classic MR image (MR Image Storage) is one frame whose attributes sit at the top level. A
multi-frame image (Enhanced MR Image Storage, e.g. Siemens XA; Legacy Converted Enhanced MR Image
Storage, e.g. highdicom's converter) keeps each frame's attributes in functional groups (DICOM
PS3.3 C.7.6.16): the Shared Functional Groups Sequence (5200,9229) holds one item for all frames,
the Per-Frame Functional Groups Sequence (5200,9230) one item per frame, and a macro present in
the per-frame item wins over the shared one. The macros read here (Table A.36-2 lists them for
Enhanced MR, Table A.71-2 for Legacy Converted Enhanced MR), by PS3.3 section and sequence tag:

- Pixel Measures, C.7.6.16.2.1 (0028,9110): PixelSpacing (0028,0030), SliceThickness (0018,0050);
- Frame Content, C.7.6.16.2.2 (0020,9111; per frame only): TemporalPositionIndex (0020,9128),
  StackID (0020,9056), InStackPositionNumber (0020,9057), FrameAcquisitionNumber (0020,9156),
  DimensionIndexValues (0020,9157);
- Plane Position (Patient), C.7.6.16.2.3 (0020,9113): ImagePositionPatient (0020,0032);
- Plane Orientation (Patient), C.7.6.16.2.4 (0020,9116): ImageOrientationPatient (0020,0037);
- Pixel Value Transformation, C.7.6.16.2.9 (0028,9145): RescaleIntercept (0028,1052),
  RescaleSlope (0028,1053); required for MONOCHROME2 Enhanced MR, optional in Legacy Converted;
- MR Image Frame Type, C.8.13.5.1 (0018,9226): FrameType (0008,9007), ComplexImageComponent
  (0008,9208);
- MR Echo, C.8.13.5.4 (0018,9114): EffectiveEchoTime (0018,9082), ms;
- Unassigned Shared / Per-Frame Converted Attributes, C.7.6.16.2.25.1 / .2 (0020,9170 /
  0020,9171): what a legacy converter kept of the classic images' other attributes
  (TemporalPositionIdentifier, InstanceNumber, EchoTime, ...).

Dimension Index Values (0020,9157) are read through the Dimension Index Sequence (0020,9222) of
the Multi-frame Dimension Module (C.7.6.17): each value is the index along the dimension whose
Dimension Index Pointer (0020,9165) names an attribute. They give the temporal index only where the
frame lacks the attribute itself, since vendors have written the pointers in another order than the
values (rordenlab/dcm2niix issue 809).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError

__all__ = ["Frame", "classic_frame", "component_of", "is_multiframe", "multiframe_frames", "numbers"]

_COMPONENT = {"MAGNITUDE": "magnitude", "M": "magnitude", "PHASE": "phase", "P": "phase",
              "REAL": "real", "R": "real", "IMAGINARY": "imag", "I": "imag"}
# Temporal attributes a Dimension Index Pointer may name (their index orders the frames in time).
_TEMPORAL_POINTERS = {0x00209128: "TemporalPositionIndex", 0x00200100: "TemporalPositionIdentifier",
                      0x0020930D: "TemporalPositionTimeOffset"}


@dataclass
class Frame:
    """One 2-D image of a series: a classic DICOM file, or one frame of a multi-frame file.

    ``iop``: ImageOrientationPatient (6,), row then column direction cosines (LPS+); ``ipp``:
    ImagePositionPatient (3,) in mm (LPS+); ``spacing``: PixelSpacing (row spacing, column spacing)
    in mm; ``thickness``: SliceThickness in mm (0 when absent); ``pixels``: ``(rows, columns)``
    float64 after the rescale; ``rescale``: the (slope, intercept) the file gives, ``None`` when it
    gives none; ``echo_ms``: the echo time in ms, ``None`` when absent; ``order``: the counters that
    may order frames in time (``None`` values are absent ones)."""

    file: Path
    index: int | None
    component: str
    iop: np.ndarray
    ipp: np.ndarray
    spacing: np.ndarray
    thickness: float
    pixels: np.ndarray
    rescale: tuple[float, float] | None
    echo_ms: float | None
    order: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file, and the frame number (1-based) within a multi-frame file."""
        return str(self.file) if self.index is None else f"{self.file} frame {self.index}"


def numbers(value: Any, what: str, where: str, n: int | None = None) -> np.ndarray:
    """``value`` (a DICOM DS/IS value or multi-value) as float64 numbers; ``n`` values if given."""
    if value is None:
        raise MrfreconError(f"{where}: {what}: missing (needed for the geometry)")
    try:
        vals = [value] if isinstance(value, str | int | float) else list(value)
        a = np.asarray([float(x) for x in vals])
    except (TypeError, ValueError):
        raise MrfreconError(f"{where}: {what}: not numbers ({value!r})") from None
    if n is not None and a.size != n:
        raise MrfreconError(f"{where}: {what}: expected {n} values, found {a.size}")
    return a


def component_of(complex_component: Any, image_type: Any) -> str | None:
    """``magnitude``/``phase``/``real``/``imag`` from a ComplexImageComponent (0008,9208) value
    (MAGNITUDE, PHASE, REAL, IMAGINARY; MIXED says nothing of one frame), else from an ImageType
    (0008,0008) or FrameType (0008,9007): Value 3 first (``M``/``P`` on Siemens scanners), then any
    value; ``None`` when neither tells."""
    cic = str(complex_component or "").upper()
    if cic in _COMPONENT:
        return _COMPONENT[cic]
    it = [str(v).upper() for v in (image_type or [])] if not isinstance(image_type, str) else [image_type.upper()]
    for v in it[2:3] + it:
        if v in _COMPONENT:
            return _COMPONENT[v]
    return None


def _rescale(holder: Any) -> tuple[float, float] | None:
    slope, inter = getattr(holder, "RescaleSlope", None), getattr(holder, "RescaleIntercept", None)
    if slope is None and inter is None:
        return None
    return float(slope if slope not in (None, "") else 1.0), float(inter if inter not in (None, "") else 0.0)


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def is_multiframe(ds: Any) -> bool:
    """A dataset with functional groups (enhanced or legacy converted multi-frame)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def classic_frame(ds: Any, path: Path, pixels: np.ndarray) -> Frame:
    """The one frame of a classic (single-frame) image; ``pixels`` the stored values ``(rows, columns)``."""
    where = str(path)
    comp = component_of(getattr(ds, "ComplexImageComponent", None), getattr(ds, "ImageType", None))
    if comp is None:
        shown = "\\".join(str(v) for v in (getattr(ds, "ImageType", None) or [])) or "(none)"
        raise MrfreconError(f"{path}: ImageType {shown}: cannot tell magnitude from phase "
                            "(expected M/P or MAGNITUDE/PHASE, or a ComplexImageComponent)")
    rescale = _rescale(ds)
    slope, inter = rescale or (1.0, 0.0)
    te = getattr(ds, "EchoTime", None)
    return Frame(path, None, comp,
                 numbers(getattr(ds, "ImageOrientationPatient", None), "ImageOrientationPatient", where, 6),
                 numbers(getattr(ds, "ImagePositionPatient", None), "ImagePositionPatient", where, 3),
                 numbers(getattr(ds, "PixelSpacing", None), "PixelSpacing", where, 2),
                 float(getattr(ds, "SliceThickness", 0) or 0), pixels.astype(np.float64) * slope + inter, rescale,
                 float(te) if te not in (None, "") else None,
                 {"TemporalPositionIdentifier": _int_or_none(getattr(ds, "TemporalPositionIdentifier", None)),
                  "AcquisitionNumber": _int_or_none(getattr(ds, "AcquisitionNumber", None)),
                  "InstanceNumber": (_int_or_none(getattr(ds, "InstanceNumber", None)), 0)
                  if getattr(ds, "InstanceNumber", None) not in (None, "") else None})


class _Groups:
    """The functional group macros of one frame: its per-frame item first, then the shared one."""

    def __init__(self, per_frame: Any, shared: Any) -> None:
        self.holders = [h for h in (per_frame, shared) if h is not None]

    def item(self, sequence: str) -> Any:
        """The (single) item of a macro's sequence, or ``None`` when neither group has it."""
        for h in self.holders:
            seq = getattr(h, sequence, None)
            if seq:
                return seq[0]
        return None

    def value(self, sequence: str, attribute: str) -> Any:
        """An attribute of a macro, ``None`` when absent (empty values count as absent)."""
        for h in self.holders:
            seq = getattr(h, sequence, None)
            if seq:
                v = getattr(seq[0], attribute, None)
                if v not in (None, ""):
                    return v
        return None


def _temporal_dimension(ds: Any) -> tuple[int, str] | None:
    """Position in DimensionIndexValues of a temporal dimension, and its attribute's name."""
    for i, item in enumerate(getattr(ds, "DimensionIndexSequence", None) or []):
        ptr = getattr(item, "DimensionIndexPointer", None)
        if ptr is not None and int(ptr) in _TEMPORAL_POINTERS:
            return i, _TEMPORAL_POINTERS[int(ptr)]
    return None


def multiframe_frames(ds: Any, path: Path, pixels: np.ndarray) -> list[Frame]:
    """The frames of a multi-frame image, each with its geometry, component, rescale, echo time and
    temporal counters from the functional groups.

    Parameters
    ----------
    ds
        The pydicom dataset (Enhanced or Legacy Converted Enhanced MR).
    path
        Its file, for messages.
    pixels
        The stored values, ``(frames, rows, columns)``.

    Raises
    ------
    MrfreconError
        Fewer or more per-frame items than frames, or a frame whose geometry, component or pixels
        cannot be found in its per-frame or the shared groups (one line: file, frame, field, what
        was expected).
    """
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if pixels.shape[0] != n:
        raise MrfreconError(f"{path}: pixel data hold {pixels.shape[0]} frames, but NumberOfFrames (0028,0008) is {n}")
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per is None or len(per) != n:
        have = "missing" if per is None else f"{len(per)} items"
        raise MrfreconError(f"{path}: PerFrameFunctionalGroupsSequence (5200,9230): {have}, expected one item per "
                            f"frame ({n}, NumberOfFrames) with at least the Frame Content and Plane Position macros "
                            "(DICOM PS3.3 C.7.6.16, Table A.36-2)")
    shared_seq = getattr(ds, "SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    temporal_dim = _temporal_dimension(ds)
    top_component = getattr(ds, "ComplexImageComponent", None)
    top_type = getattr(ds, "ImageType", None)
    top_inst = _int_or_none(getattr(ds, "InstanceNumber", None)) or 0
    frames: list[Frame] = []
    for j in range(n):
        g = _Groups(per[j], shared)
        where = f"{path} frame {j + 1}"

        def need(sequence: str, attribute: str, count: int, macro: str, tag: str) -> np.ndarray:
            v = g.value(sequence, attribute)
            if v is None:  # a classic attribute left at the top level is still the frame's
                v = getattr(ds, attribute, None)
            if v is None:
                raise MrfreconError(f"{where}: {sequence} {tag} > {attribute}: missing in the per-frame and shared "
                                    f"functional groups (expected {count} values for every frame, {macro})")
            return numbers(v, f"{sequence} > {attribute}", where, count)

        iop = need("PlaneOrientationSequence", "ImageOrientationPatient", 6, "PS3.3 C.7.6.16.2.4", "(0020,9116)")
        ipp = need("PlanePositionSequence", "ImagePositionPatient", 3, "PS3.3 C.7.6.16.2.3", "(0020,9113)")
        spacing = need("PixelMeasuresSequence", "PixelSpacing", 2, "PS3.3 C.7.6.16.2.1", "(0028,9110)")
        thickness = g.value("PixelMeasuresSequence", "SliceThickness")
        comp = component_of(g.value("MRImageFrameTypeSequence", "ComplexImageComponent"),
                            g.value("MRImageFrameTypeSequence", "FrameType"))
        comp = comp or component_of(top_component, top_type)
        if comp is None:
            raise MrfreconError(f"{where}: MRImageFrameTypeSequence (0018,9226): no ComplexImageComponent or FrameType "
                                "that tells magnitude from phase, and none at the top level (expected MAGNITUDE/PHASE, "
                                "or M/P as Value 3, PS3.3 C.8.13.5.1)")
        pvt = g.item("PixelValueTransformationSequence")
        rescale = _rescale(pvt) if pvt is not None else None
        rescale = rescale or _rescale(ds)
        slope, inter = rescale or (1.0, 0.0)
        te = g.value("MREchoSequence", "EffectiveEchoTime")
        if te is None:  # legacy converted: the classic EchoTime among the unassigned attributes
            te = g.value("UnassignedPerFrameConvertedAttributesSequence", "EchoTime")
        if te is None:
            te = g.value("UnassignedSharedConvertedAttributesSequence", "EchoTime") or getattr(ds, "EchoTime", None)
        content = g.item("FrameContentSequence")
        tpi = _int_or_none(getattr(content, "TemporalPositionIndex", None)) if content is not None else None
        div = getattr(content, "DimensionIndexValues", None) if content is not None else None
        if tpi is None and temporal_dim is not None and div is not None:
            vals = [div] if isinstance(div, int) else list(div)
            if temporal_dim[0] < len(vals):
                tpi = _int_or_none(vals[temporal_dim[0]])
        unassigned = g.item("UnassignedPerFrameConvertedAttributesSequence")
        tpid = _int_or_none(getattr(unassigned, "TemporalPositionIdentifier", None)) if unassigned is not None else None
        tpid = tpid if tpid is not None else _int_or_none(getattr(ds, "TemporalPositionIdentifier", None))
        acq = _int_or_none(getattr(content, "FrameAcquisitionNumber", None)) if content is not None else None
        inst = _int_or_none(getattr(unassigned, "InstanceNumber", None)) if unassigned is not None else None
        frames.append(Frame(
            path, j + 1, comp, iop, ipp, spacing, float(thickness or 0), pixels[j].astype(np.float64) * slope + inter,
            rescale, float(te) if te not in (None, "") else None,
            {"TemporalPositionIndex": tpi, "TemporalPositionIdentifier": tpid,
             "AcquisitionNumber": acq if acq is not None else _int_or_none(getattr(ds, "AcquisitionNumber", None)),
             # the classic image's number where a converter kept it, else the file's and the frame's
             "InstanceNumber": (inst, 0) if inst is not None else (top_inst, j + 1),
             "StackID": str(getattr(content, "StackID", "") or "") if content is not None else "",
             "InStackPositionNumber": _int_or_none(getattr(content, "InStackPositionNumber", None))
             if content is not None else None}))
    return frames
