"""The trivial baselines every comparison table carries (DESIGN.md, "Comparisons that can decide").

A network only learns something if it beats what needs no learning:

- ``constant``: the training split's mean of each target map, everywhere in the foreground —
  what a network that ignores its input would converge to (T1H2O averaged over its evaluation
  mask, foreground ∧ FF < 0.65, the other maps over the foreground);
- ``matching``: the dictionary-matching reference maps themselves (evaluated against the
  ground truth; against the reference they are the reference);
- ``matching-box3``, ``matching-box5``: the reference maps averaged over a 3 × 3 or 5 × 5
  window inside the foreground (normalized convolution: background voxels neither enter nor
  receive the average), per slice;
- ``matching-median5``: the median of the 5 × 5 window inside the foreground, per slice — an
  edge-aware smoother (a median keeps a step edge between two regions wider than half the
  window where a box average blurs it; Tukey 1977, Huang et al. 1979).

::

    from mrfrecon.experiments.baselines import constant_values, baseline_maps

    const = constant_values(index.paths("train"), against="reference")  # {"t1h2o": …, "ff": …, "b1": …}
    maps = baseline_maps("matching-box3", scan, const)                 # {map: (slices, y, x)}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from ..errors import MrfreconError
from ..io import Scan, load_scan
from ..metrics import masks_for
from .common import MAPS

__all__ = ["BASELINES", "SMOOTHERS", "baseline_maps", "box_in_mask", "constant_values", "median_in_mask"]

#: Smoothers of the reference maps: name → (kind, window size in pixels).
SMOOTHERS = {"matching-box3": ("box", 3), "matching-box5": ("box", 5), "matching-median5": ("median", 5)}
BASELINES = ("constant", "matching", *SMOOTHERS)


def _slices(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise MrfreconError(f"baselines: expected maps of shape (y, x) or (slices, y, x), got {a.shape}")
    return a


def box_in_mask(values: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` over the ``size × size`` window of each voxel, counting only voxels
    inside ``mask``; 0 outside ``mask``. ``values``, ``mask``: (y, x) or (slices, y, x), each
    slice filtered on its own. Returns float32 of the same shape."""
    v, m = _slices(values).astype(np.float64), _slices(mask).astype(bool)
    out = np.zeros(v.shape, np.float32)
    for z in range(v.shape[0]):
        w = m[z].astype(np.float64)
        num = ndimage.uniform_filter(v[z] * w, size=size, mode="constant")
        den = ndimage.uniform_filter(w, size=size, mode="constant")
        with np.errstate(invalid="ignore", divide="ignore"):
            out[z] = np.where(m[z], num / np.maximum(den, 1e-12), 0.0)
    return out.reshape(np.shape(values))


def median_in_mask(values: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Median of ``values`` over the ``size × size`` window of each voxel, counting only voxels
    inside ``mask``; 0 outside ``mask``. Shapes as :func:`box_in_mask`."""
    if size % 2 != 1:
        raise MrfreconError(f"median window: expected an odd size, got {size}")
    v, m = _slices(values).astype(np.float64), _slices(mask).astype(bool)
    out = np.zeros(v.shape, np.float32)
    r = size // 2
    for z in range(v.shape[0]):
        ys, xs = np.nonzero(m[z])
        if ys.size == 0:
            continue
        padded = np.pad(np.where(m[z], v[z], np.nan), r, constant_values=np.nan)
        win = sliding_window_view(padded, (size, size))[ys, xs]  # (voxels, size, size)
        out[z][ys, xs] = np.nanmedian(win.reshape(ys.size, -1), axis=1)
    return out.reshape(np.shape(values))


def constant_values(train_scans: Sequence[str | os.PathLike[str]], against: str,
                    maps: Sequence[str] = MAPS) -> dict[str, float]:
    """The mean of each map over the training scans (``against``: ``"reference"`` or
    ``"ground-truth"`` maps), pooled over voxels: T1H2O over foreground ∧ FF < 0.65 (the FF of
    the same maps), every other map over the foreground."""
    sums = {m: 0.0 for m in maps}
    counts = {m: 0 for m in maps}
    for p in train_scans:
        scan = load_scan(p, series=False)
        src = scan.reference if against == "reference" else scan.maps
        missing = [m for m in maps if m not in src]
        if missing:
            raise MrfreconError(f"{p}: no {against} map(s) {', '.join(missing)} for the constant baseline")
        masks = masks_for(src.get("ff"), scan.foreground, maps=maps)
        for m in maps:
            sel = masks.get(m, scan.foreground)
            sums[m] += float(np.asarray(src[m], np.float64)[sel].sum())
            counts[m] += int(sel.sum())
    empty = [m for m in maps if counts[m] == 0]
    if empty:
        raise MrfreconError(f"constant baseline: the training scans have no voxels in the mask of {', '.join(empty)}")
    return {m: sums[m] / counts[m] for m in maps}


def baseline_maps(name: str, scan: Scan, constant: Mapping[str, float] | None = None,
                  maps: Sequence[str] = MAPS) -> dict[str, np.ndarray]:
    """The maps of baseline ``name`` (:data:`BASELINES`) for ``scan``: float32 (slices, y, x),
    0 in the background. ``constant``: the values of the ``constant`` baseline
    (:func:`constant_values`); the other baselines use ``scan.reference``."""
    fg = scan.foreground
    if name == "constant":
        if constant is None:
            raise MrfreconError("baseline constant: no training means given")
        return {m: np.where(fg, np.float32(constant[m]), np.float32(0)) for m in maps}
    missing = [m for m in maps if m not in scan.reference]
    if missing:
        raise MrfreconError(f"{scan.attrs.get('subject', 'scan')}: no reference map(s) {', '.join(missing)} "
                            f"for baseline {name}")
    if name == "matching":
        return {m: np.where(fg, np.asarray(scan.reference[m], np.float32), 0).astype(np.float32) for m in maps}
    if name not in SMOOTHERS:
        raise MrfreconError(f"baseline: expected one of {', '.join(BASELINES)}, got {name!r}")
    kind, size = SMOOTHERS[name]
    f = box_in_mask if kind == "box" else median_in_mask
    return {m: f(scan.reference[m], fg, size) for m in maps}
