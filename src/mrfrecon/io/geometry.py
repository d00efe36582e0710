"""Where a scan's voxels are in the patient: a RAS affine for the array axes ``(x, y, slice)``.

mrfrecon holds images as ``(slices, frames, y, x)``; their geometry is the 4 × 4 affine that maps
the voxel index ``(x, y, slice)`` (column, row, slice; 0-based) to millimetres in the patient's
RAS+ frame: +x towards the patient's Right, +y Anterior, +z Superior (the NIfTI/nibabel world
frame; DICOM's patient frame is LPS+, i.e. x and y negated).

Orientations are written as axis codes, one letter per array axis ``(x, y, slice)`` naming the
direction in which the index *increases* (the convention of ``nibabel.aff2axcodes``): the
simulated phantoms have columns running from the patient's right to the left, rows from
anterior to posterior (the radiological view, :mod:`mrfrecon.phantoms.phantom`) and slices
stated here as inferior → superior: codes ``("L", "P", "S")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MrfreconError

__all__ = ["SIMULATED_AXCODES", "affine_axcodes", "affine_from_axcodes", "check_affine", "lps_to_ras"]

#: Orientation of the simulated scans: x → patient's left, y → posterior, slice → superior.
SIMULATED_AXCODES = ("L", "P", "S")

_DIRS = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}

#: DICOM patient coordinates (LPS+) → RAS+ (DICOM PS3.3 C.7.6.2.1.1: x to the patient's left,
#: y posterior, z head).
lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_axcodes(voxel_mm: Sequence[float], shape_xyz: Sequence[int],
                        axcodes: Sequence[str] = SIMULATED_AXCODES) -> np.ndarray:
    """A RAS affine for voxels of ``voxel_mm`` (x, y, slice, mm) along ``axcodes``, centred on the
    volume's middle (world origin at the centre of the field of view).

    Raises :class:`MrfreconError` for codes that are not one of each of R/L, A/P, S/I.
    """
    codes = tuple(str(c).upper() for c in axcodes)
    if len(codes) != 3 or any(c not in _DIRS for c in codes) or len({_DIRS[c][0] for c in codes}) != 3:
        raise MrfreconError(f"orientation: expected three axis codes, one of each of R/L, A/P, S/I (e.g. LPS), got {''.join(codes)!r}")
    aff = np.zeros((4, 4))
    aff[3, 3] = 1.0
    for col, (c, size) in enumerate(zip(codes, voxel_mm, strict=True)):
        row, sign = _DIRS[c]
        aff[row, col] = sign * float(size)
    centre = (np.asarray(shape_xyz, float) - 1) / 2
    aff[:3, 3] = -aff[:3, :3] @ centre
    return aff


def affine_axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    """The axis codes of an affine (the dominant world direction of each voxel axis)."""
    out = []
    for col in range(3):
        v = np.asarray(affine, float)[:3, col]
        row = int(np.argmax(np.abs(v)))
        out.append("RAS"[row] if v[row] > 0 else "LPI"[row])
    return tuple(out)  # type: ignore[return-value]


def check_affine(affine: object, where: str) -> np.ndarray:
    """A finite 4 × 4 affine with an invertible 3 × 3 part and last row (0, 0, 0, 1)."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise MrfreconError(f"{where}: affine: expected a finite 4 × 4 matrix, got shape {a.shape}")
    if not np.allclose(a[3], (0, 0, 0, 1)) or abs(np.linalg.det(a[:3, :3])) < 1e-9:
        raise MrfreconError(f"{where}: affine: not an invertible voxel-to-world transform")
    return a
