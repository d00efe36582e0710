"""Calibration of SD maps against ground truth: coverage, rank correlation, reliability, a fitted scale.

An SD is calibrated when the truth falls inside ``estimate ± 1.96·SD`` for 95 % of the voxels
(Gaussian errors) and useful when a larger SD means a larger error (Spearman's ρ between SD and
|error| over voxels). Both are measured inside the scoring masks of the maps (T1H2O: foreground
∧ FF < 0.65, Balsiger et al. 2019; T1fat: foreground ∧ FF ≥ 0.5, where fat dominates; the others:
foreground), with FF from the ground truth.

A miscalibrated SD is rescaled by one factor per map and method, fitted on validation scans so
that the coverage of ±1.96·SD is 95 % (``k = q95(|error|/SD) / 1.96``: a quantile, robust to the
heavy tails an RMS-based factor would chase). The factors live in a small JSON file
(:class:`Calibration`, ``mrfrecon.sd-calibration/1``) with what they were fitted on and the
coverage before and after.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_write_text
from ..errors import MrfreconError

__all__ = ["CALIBRATION_FORMAT", "METHODS", "SCORED_MAPS", "Calibration", "coverage", "fit_scale", "reliability",
           "scoring_masks", "spearman", "summarize"]

CALIBRATION_FORMAT = "mrfrecon.sd-calibration/1"
#: whose SDs a calibration can scale: matching's, an ensemble's combined SD (with the data-consistency
#: check) and an ensemble's spread alone
METHODS = ("matching", "ensemble", "ensemble-spread")
#: maps scored against ground truth (PD has no common scale between simulation and matching)
SCORED_MAPS = ("t1h2o", "ff", "b1", "df", "t1fat")
Z95 = 1.959963984540054


def scoring_masks(ff_true: np.ndarray, foreground: np.ndarray, maps: Iterable[str] = SCORED_MAPS) -> dict[str, np.ndarray]:
    """Mask of the voxels scored per map (see the module docstring); bool, the foreground's shape."""
    from ..io.scan import T1H2O_FF_LIMIT

    fg = np.asarray(foreground, bool)
    ff = np.asarray(ff_true)
    rule = {"t1h2o": fg & (ff < T1H2O_FF_LIMIT), "t1fat": fg & (ff >= 0.5)}
    return {k: rule.get(k, fg) for k in maps}


def coverage(abs_error: np.ndarray, sd: np.ndarray, z: float = Z95) -> float:
    """Fraction of voxels with ``|error| ≤ z·SD``."""
    e, s = np.asarray(abs_error, np.float64), np.asarray(sd, np.float64)
    return float(np.mean(e <= z * s)) if e.size else float("nan")


def spearman(abs_error: np.ndarray, sd: np.ndarray) -> float:
    """Spearman's rank correlation between SD and |error| (nan for fewer than 3 voxels or a constant input)."""
    from scipy.stats import spearmanr

    e, s = np.asarray(abs_error, np.float64), np.asarray(sd, np.float64)
    if e.size < 3 or np.ptp(e) == 0 or np.ptp(s) == 0:
        return float("nan")
    return float(spearmanr(s, e).statistic)


def fit_scale(abs_error: np.ndarray, sd: np.ndarray, target: float = 0.95) -> float:
    """Factor ``k`` such that ``|error| ≤ 1.96·k·SD`` holds for the fraction ``target`` of voxels."""
    e, s = np.asarray(abs_error, np.float64), np.asarray(sd, np.float64)
    ok = s > 0
    if ok.sum() < 20:
        raise MrfreconError(f"calibration: {int(ok.sum())} voxels with an SD > 0, at least 20 needed to fit a scale")
    return float(np.quantile(e[ok] / s[ok], target) / Z95)


def reliability(abs_error: np.ndarray, sd: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability diagram: voxels in ``bins`` equal-count bins of SD.

    Returns
    -------
    (predicted, observed, count)
        Per bin: the RMS of the SDs, the RMS error, the number of voxels. Calibrated: observed = predicted.
    """
    e, s = np.asarray(abs_error, np.float64), np.asarray(sd, np.float64)
    order = np.argsort(s, kind="stable")
    parts = [p for p in np.array_split(order, min(bins, max(1, e.size))) if p.size]
    pred = np.array([math.sqrt(np.mean(s[p] ** 2)) for p in parts])
    obs = np.array([math.sqrt(np.mean(e[p] ** 2)) for p in parts])
    return pred, obs, np.array([p.size for p in parts])


def summarize(abs_error: np.ndarray, sd: np.ndarray) -> dict[str, float]:
    """``coverage`` (±1.96 SD), ``spearman``, ``rmse``, ``rms_sd``, ``k95`` (the scale that would make coverage 95 %), ``n``."""
    e, s = np.asarray(abs_error, np.float64), np.asarray(sd, np.float64)
    ok = s > 0
    return {"coverage": coverage(e, s), "spearman": spearman(e, s), "rmse": float(np.sqrt(np.mean(e**2))) if e.size else float("nan"),
            "rms_sd": float(np.sqrt(np.mean(s**2))) if s.size else float("nan"),
            "k95": float(np.quantile(e[ok] / s[ok], 0.95) / Z95) if ok.sum() else float("nan"), "n": int(e.size)}


@dataclass
class Calibration:
    """Scales of SD maps per method and map, with what they were fitted on.

    Attributes
    ----------
    scales
        ``{method: {map: k}}``; a map or method not listed keeps its SD (k = 1).
    info
        JSON-ready record: data, split, noise estimate, coverage before and after, ...
    """

    scales: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        where = str(self.path) if self.path else "calibration"
        if not isinstance(self.scales, Mapping):
            raise MrfreconError(f"{where}: scales: expected a table of methods")
        for method, table in self.scales.items():
            if method not in METHODS:
                raise MrfreconError(f"{where}: scales: unknown method {method!r}; methods are {', '.join(METHODS)}")
            if not isinstance(table, Mapping):
                raise MrfreconError(f"{where}: scales/{method}: expected a table of maps")
            for m, k in table.items():
                if m not in SCORED_MAPS + ("pd",):
                    raise MrfreconError(f"{where}: scales/{method}: unknown map {m!r}")
                if isinstance(k, bool) or not isinstance(k, int | float) or not (math.isfinite(k) and k > 0):
                    raise MrfreconError(f"{where}: scales/{method}/{m}: expected a finite number > 0, got {k!r}")

    def scale(self, method: str, name: str) -> float:
        """The factor of map ``name`` for ``method`` (1 when not calibrated)."""
        return float(self.scales.get(method, {}).get(name, 1.0))

    def apply(self, sd: Mapping[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
        """``sd`` with every ``sd_<map>`` multiplied by its scale (other entries unchanged)."""
        out = dict(sd)
        for k, v in sd.items():
            if k.startswith("sd_"):
                out[k] = (np.asarray(v) * np.float32(self.scale(method, k[3:]))).astype(np.asarray(v).dtype)
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON file atomically."""
        path = Path(path)
        doc = {"format": CALIBRATION_FORMAT, "mrfrecon_version": __version__, "scales": self.scales, **self.info}
        atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read and validate a calibration file."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise MrfreconError(f"{path}: cannot read the calibration file ({e.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MrfreconError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise MrfreconError(f"{path}: format: expected {CALIBRATION_FORMAT!r}, found {found!r}")
        info = {k: v for k, v in doc.items() if k not in ("format", "scales")}
        return cls(doc.get("scales", {}), info, path)
