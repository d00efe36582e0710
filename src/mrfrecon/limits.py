"""Physical ranges and size limits that every input is checked against at the boundary.

One place for the numbers, so that a sequence file, a dictionary grid, a scan's stored maps, NIfTI
maps and a checkpoint's map ranges are all held to the same physics. The ranges are wide on purpose
(they refuse what cannot be a human tissue or a scanner protocol, not what is merely unusual):

* T1 of water and fat: (0, 10 000] ms. Human tissues at 1.5-7 T lie well inside (muscle ≈ 1.1-1.4 s,
  CSF ≈ 4-4.5 s at 3 T; fat ≈ 0.3-0.4 s; Bojorquez et al., MRI 35:69, 2017).
* FF: [0, 1] (a fraction of the proton density).
* B1 (flip-angle scale): (0, 3]; clinical B1+ maps span about 0.3-1.6 (MRF-WF dictionaries use
  0.3-1.0, Marty & Carlier, MRM 83:621, 2020).
* Δf: [−1000, 1000] Hz: off-resonance of tissue water at 3 T after shimming is tens of Hz; even the
  fat-water shift (≈ −434 Hz at 3 T) stays well inside.
* PD: ≥ 0 and finite, a plain scale.
* Sequence timing: flip angles [0°, 180°] (an inversion is 180°); TE ≥ 0 and TE < TR (the echo
  falls inside its repetition); TR ≤ 10 s, TI ≤ 10 s, recovery ≤ 60 s; phases and angle increments
  within ±360°.
* Sizes: at most 50 000 spokes (MRF sequences play hundreds to a few thousand; MRF-WF 1400), 100
  repetitions, 10 000 values per dictionary axis, 500 000 000 atom-frames per dictionary (4 GB as
  complex64).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np

from .errors import MrfreconError

#: (low, high, low_open, unit) per map; a map value must lie in [low, high] (or (low, high]).
MAP_LIMITS: dict[str, tuple[float, float, bool, str]] = {
    "t1h2o": (0.0, 10_000.0, True, "ms"),
    "t1fat": (0.0, 10_000.0, True, "ms"),
    "ff": (0.0, 1.0, False, ""),
    "b1": (0.0, 3.0, True, ""),
    "df": (-1000.0, 1000.0, False, "Hz"),
    "pd": (0.0, math.inf, False, ""),
}

FLIP_MAX_DEG = 180.0
TR_MAX_MS = 10_000.0
TI_MAX_MS = 10_000.0
RECOVERY_MAX_MS = 60_000.0
ANGLE_MAX_DEG = 360.0
MAX_SPOKES = 50_000
MAX_REPETITIONS = 100
MAX_AXIS_VALUES = 10_000
MAX_ATOM_FRAMES = 500_000_000


def _fmt_range(lo: float, hi: float, lo_open: bool, unit: str) -> str:
    u = f" {unit}" if unit else ""
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}]{u}"


def check_map(name: str, values: np.ndarray, where: str, mask: np.ndarray | None = None) -> None:
    """Refuse a map ``values`` with non-finite entries or, where ``mask`` is true (everywhere when
    ``mask`` is None), values outside :data:`MAP_LIMITS` [``name``]. ``where`` prefixes the message
    (e.g. ``"scan.h5: maps/ff"``). Maps without limits (``valid``, labels) are checked for finiteness only."""
    v = np.asarray(values)
    if v.dtype.kind in "fc" and not np.isfinite(v).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(v))[0])
        raise MrfreconError(f"{where}: contains NaN or infinite values (first at index {idx})")
    if name not in MAP_LIMITS or v.dtype.kind not in "fiu":
        return
    lo, hi, lo_open, unit = MAP_LIMITS[name]
    sel = v if mask is None else v[np.broadcast_to(np.asarray(mask, bool), v.shape)]
    bad = ((sel <= lo) if lo_open else (sel < lo)) | (sel > hi)
    if bad.any():
        where_in = "" if mask is None else " in the foreground"
        raise MrfreconError(f"{where}: value {float(sel[bad].flat[0]):g} outside the physical range "
                            f"{_fmt_range(lo, hi, lo_open, unit)}{where_in}")


def check_maps(maps: Mapping[str, np.ndarray], where: str, foreground: np.ndarray | None = None) -> None:
    """:func:`check_map` for every map of ``maps``; ``t1h2o``, ``t1fat`` and ``b1`` are held to their
    open lower bound only inside ``foreground`` (0 is the background value), the rest everywhere."""
    for k, v in maps.items():
        if k in ("t1h2o", "t1fat", "b1") and foreground is not None:
            lo, hi, _, _ = MAP_LIMITS[k]
            arr = np.asarray(v)
            check_map(k, arr, f"{where}/{k}", foreground)
            # background: 0 (not simulated / not matched) or a value in range
            outside = arr[~np.broadcast_to(np.asarray(foreground, bool), arr.shape)]
            if outside.size and ((outside < 0) | (outside > hi)).any():
                raise MrfreconError(f"{where}/{k}: background value {float(outside[(outside < 0) | (outside > hi)][0]):g} "
                                    f"outside [0, {hi:g}]")
        else:
            check_map(k, v, f"{where}/{k}")


def check_finite_number(value: float, where: str, lo: float, hi: float, *, lo_open: bool = False, unit: str = "") -> float:
    """Return ``float(value)`` if it is finite and within the range, else raise naming ``where``."""
    v = float(value)
    if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or v > hi:
        raise MrfreconError(f"{where}: expected a finite number in {_fmt_range(lo, hi, lo_open, unit)}, got {value!r}")
    return v


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping (``MemAvailable`` of /proc/meminfo on Linux), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: float, what: str) -> None:
    """Refuse, before allocating, a computation needing ``nbytes`` of memory when the machine has
    less available: the message gives both in GiB and says what to make smaller."""
    avail = available_memory_bytes()
    if avail is not None and nbytes > avail:
        raise MrfreconError(f"{what}: needs about {nbytes / 2**30:.1f} GiB of memory, but only "
                            f"{avail / 2**30:.1f} GiB are available")
