"""Foreground (tissue) mask of an image series, for series that come without one.

Method: the root-mean-square magnitude over the frames, ``e = sqrt(mean_t |s_t|²)`` per voxel
(every frame's signal, so no single frame's contrast null hides a tissue); a threshold chosen by
Otsu's method (Otsu 1979, IEEE Trans. SMC 9:62; :func:`skimage.filters.threshold_otsu`) on
``log e`` — the log separates the noise-and-streak floor from the tissue whose signal spans a
decade between fat, muscle and partial-volume edges — then, per slice, holes inside the tissue
filled (:func:`scipy.ndimage.binary_fill_holes`: vessels and voxels beside cortical bone have
little signal but lie inside the limb). The paper thresholded an anatomical (out-of-phase)
image instead (Balsiger et al., MIDL 2019, sec. 2.3); an MRF series has none, its RMS image
plays that role.

Measured against the simulated ground truth (``pd > 0``) by ``tests/test_importers.py`` and
recorded in ``docs/IMPORT.md``: the voxels it misses are partial-volume skin voxels of little
proton density; muscle voxels are kept.
"""

from __future__ import annotations

import numpy as np

from ..errors import MrfreconError

__all__ = ["estimate_foreground"]


def estimate_foreground(series: np.ndarray) -> np.ndarray:
    """bool ``(slices, y, x)``: voxels with tissue signal in ``series`` complex ``(slices, frames, y, x)``."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    s = np.asarray(series)
    if s.ndim != 4:
        raise MrfreconError(f"series: expected (slices, frames, y, x), got shape {s.shape}")
    e = np.sqrt(np.mean(np.abs(s) ** 2, axis=1, dtype=np.float64))
    top = float(e.max()) if e.size else 0.0
    if top <= 0 or not np.isfinite(top):
        raise MrfreconError("series: no signal anywhere (all zero): cannot estimate a foreground")
    log_e = np.log(np.maximum(e, top * 1e-6))
    if float(log_e.max() - log_e.min()) < 1e-9:
        raise MrfreconError("series: the same signal in every voxel: cannot estimate a foreground")
    fg = log_e > threshold_otsu(log_e)
    return np.stack([ndi.binary_fill_holes(sl) for sl in fg])
