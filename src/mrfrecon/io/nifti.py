"""Maps out as NIfTI files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path


def export_nifti(maps: dict[str, np.ndarray], out_dir: str | os.PathLike[str], *, voxel_mm: tuple[float, float, float] = (1.0, 1.0, 8.0),
                 prefix: str = "") -> list[Path]:
    """Write each map ``(slices, y, x)`` as ``<prefix><name>.nii.gz`` (x, y, slice order, RAS-like
    affine with the voxel size in mm), atomically. Returns the paths written."""
    import nibabel as nib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    affine = np.diag([voxel_mm[0], voxel_mm[1], voxel_mm[2], 1.0])
    for name, v in maps.items():
        vol = np.transpose(np.asarray(v, np.float32), (2, 1, 0))  # (x, y, slice)
        img = nib.Nifti1Image(vol, affine)
        img.header.set_xyzt_units("mm")
        target = out / f"{prefix}{name}.nii.gz"
        with atomic_path(target) as tmp:
            # nibabel chooses the compression from the file name: save under a .nii.gz name, then move
            named = Path(str(tmp) + ".nii.gz")
            nib.save(img, str(named))
            os.replace(named, tmp)
        written.append(target)
    return written
