"""Matching with uncertainty: the SD of every matched map, for fingerprint lists and image series.

::

    from mrfrecon.uncertainty import match_with_uncertainty
    maps = match_with_uncertainty(fp, dictionary)        # match's maps + sd_t1h2o, ..., flag_t1h2o, ..., sigma
    sds = match_uncertainty(fp, dictionary, maps)        # the SDs of maps you already have

The SD is :func:`~mrfrecon.uncertainty.fisher.crb_sd` at the matched parameters with the noise
level estimated from the data (``sigma="residual"``, default; ``"background"`` for an image
series; or a number), times a calibration scale per map when a
:class:`~mrfrecon.uncertainty.calibration.Calibration` is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..dictionary import Dictionary
from ..errors import MrfreconError
from ..matching import match
from .calibration import Calibration
from .fisher import crb_sd, noise_from_background, noise_from_residual, pair_residual, pool_noise, temporal_rank

__all__ = ["SIGMA_METHODS", "match_uncertainty", "match_with_uncertainty", "parse_sigma", "scan_match_uncertainty"]

#: how the noise level can be found: from matching's residual per voxel, or from an image's background
SIGMA_METHODS = ("residual", "background")
#: in-plane window over which an image's residual noise level is pooled (measured: docs/UNCERTAINTY.md)
POOL = 3


def parse_sigma(text: str) -> str | float:
    """A noise-level choice from the command line: ``residual``, ``background`` or a number > 0."""
    t = str(text).strip().lower()
    if t in SIGMA_METHODS:
        return t
    try:
        v = float(t)
    except ValueError:
        raise MrfreconError(f"--noise: expected {' or '.join(SIGMA_METHODS)} or a noise SD > 0, got {text!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise MrfreconError(f"--noise: the noise SD must be a finite number > 0, got {text!r}")
    return v


def _check_sigma(sigma: str | float) -> None:
    if isinstance(sigma, str):
        if sigma not in SIGMA_METHODS:
            raise MrfreconError(f"sigma: expected {' or '.join(SIGMA_METHODS)} or a noise SD > 0, got {sigma!r}")
        return
    try:
        v = float(sigma)
    except (TypeError, ValueError):
        raise MrfreconError(f"sigma: expected {' or '.join(SIGMA_METHODS)} or a noise SD > 0, got {sigma!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise MrfreconError(f"sigma: the noise SD must be a finite number > 0, got {sigma!r}")


def _apply(sd: dict[str, np.ndarray], calibration: Calibration | None, method: str) -> dict[str, np.ndarray]:
    if calibration is None:
        return sd
    return calibration.apply(sd, method)


def match_uncertainty(
    fingerprints: np.ndarray,
    dictionary: Dictionary,
    maps: Mapping[str, np.ndarray],
    *,
    sigma: str | float = "residual",
    rank: int | None = None,
    calibration: Calibration | None = None,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """SDs of matched maps of a list (or array) of fingerprints.

    Parameters
    ----------
    fingerprints
        complex ``(..., frames)``: what was matched.
    dictionary
        The dictionary it was matched with.
    maps
        :func:`~mrfrecon.matching.match`'s output for ``fingerprints`` (shape ``(...)``; needs
        ``t1h2o``, ``ff``, ``b1``, ``df``, ``t1fat``, ``pd``, ``residual``, ``valid``).
    sigma
        ``"residual"`` (per voxel, :func:`~mrfrecon.uncertainty.fisher.noise_from_residual`) or
        the noise SD per frame (complex, in the fingerprints' units). ``"background"`` needs an
        image: :func:`scan_match_uncertainty`.
    rank
        Temporal dimensions of the data (default: counted, :func:`~mrfrecon.uncertainty.fisher.temporal_rank`).
    calibration
        Scales per map (method ``"matching"``), or None for the bound as it is.

    Returns
    -------
    dict
        ``sd_<map>`` float32 and ``flag_<map>`` uint8 of shape ``(...)`` for t1h2o, ff, b1, df,
        t1fat, pd (units of the maps), and ``sigma`` float32 ``(...)`` (the noise SD used).
    """
    _check_sigma(sigma)
    if isinstance(sigma, str) and sigma == "background":
        raise MrfreconError("sigma: 'background' needs an image series (scan_match_uncertainty); a list of "
                            "fingerprints has no background: use 'residual' or give the noise SD")
    x = np.asarray(fingerprints)
    shape = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    m = {k: np.asarray(maps[k]).reshape(-1) for k in ("t1h2o", "ff", "b1", "df", "t1fat", "pd", "residual")}
    n = flat.shape[0]
    valid = np.asarray(maps.get("valid", np.ones(shape, bool)), bool).reshape(-1)
    if any(v.size != n for v in m.values()) or valid.size != n:
        raise MrfreconError(f"maps: expected the fingerprints' shape {shape} for every map")
    if isinstance(sigma, str):
        r = rank if rank is not None else temporal_rank(flat[valid]) if valid.any() else flat.shape[-1]
        sig = noise_from_residual(flat, pair_residual(flat, dictionary, m), rank=r)
    else:
        sig = np.full(n, float(sigma))
    out = crb_sd(dictionary, {**m, "valid": valid}, sig, device=device)
    out = _apply(out, calibration, "matching")
    out = {k: v.reshape(shape) for k, v in out.items()}
    out["sigma"] = np.where(valid, sig, 0.0).astype(np.float32).reshape(shape)
    return out


def match_with_uncertainty(fingerprints: np.ndarray, dictionary: Dictionary, *, sigma: str | float = "residual",
                           calibration: Calibration | None = None, **match_kw) -> dict[str, np.ndarray]:
    """:func:`~mrfrecon.matching.match` and :func:`match_uncertainty` in one call: the maps plus
    ``sd_<map>``, ``flag_<map>`` and ``sigma`` (all of the fingerprints' leading shape)."""
    _check_sigma(sigma)
    maps = match(fingerprints, dictionary, **match_kw)
    return {**maps, **match_uncertainty(fingerprints, dictionary, maps, sigma=sigma, calibration=calibration,
                                        device=match_kw.get("device"))}


def scan_match_uncertainty(
    series: np.ndarray,
    foreground: np.ndarray,
    dictionary: Dictionary,
    maps: Mapping[str, np.ndarray],
    *,
    sigma: str | float = "residual",
    pool: int = POOL,
    calibration: Calibration | None = None,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """SDs of the matched maps of an image series.

    Parameters
    ----------
    series
        complex ``(slices, frames, y, x)``.
    foreground
        bool ``(slices, y, x)``: the voxels matched.
    maps
        Matched maps ``(slices, y, x)`` (:func:`mrfrecon.cohort.reference_maps` with ``residual`` and ``valid``).
    sigma
        ``"residual"`` (default: per voxel, pooled over ``pool × pool`` in-plane neighbours),
        ``"background"`` (one level from the voxels outside the foreground, robust), or the SD.

    Returns
    -------
    dict
        ``sd_<map>`` float32, ``flag_<map>`` uint8 and ``sigma`` float32, each ``(slices, y, x)``,
        0 outside the foreground.
    """
    _check_sigma(sigma)
    fg = np.asarray(foreground, bool)
    if series.ndim != 4 or series.shape[0] != fg.shape[0] or series.shape[2:] != fg.shape[1:]:
        raise MrfreconError(f"series {series.shape} and foreground {fg.shape}: expected (slices, frames, y, x) and (slices, y, x)")
    fp = np.moveaxis(series, 1, -1)[fg]
    sel = {k: np.asarray(maps[k])[fg] for k in ("t1h2o", "ff", "b1", "df", "t1fat", "pd", "residual")}
    valid = np.asarray(maps["valid"], bool)[fg] if "valid" in maps else np.ones(fp.shape[0], bool)
    if isinstance(sigma, str) and sigma == "background":
        sig = np.full(fp.shape[0], noise_from_background(series, fg))
    elif isinstance(sigma, str):
        r = temporal_rank(fp[valid]) if valid.any() else fp.shape[-1]
        img = np.zeros(fg.shape)
        img[fg] = noise_from_residual(fp, pair_residual(fp, dictionary, sel), rank=r)
        sig = pool_noise(img, fg & _full(valid, fg), pool)[fg]
    else:
        sig = np.full(fp.shape[0], float(sigma))
    got = crb_sd(dictionary, {**sel, "valid": valid}, sig, device=device)
    got = _apply(got, calibration, "matching")
    got["sigma"] = np.where(valid, sig, 0.0).astype(np.float32)
    out = {}
    for k, v in got.items():
        full = np.zeros(fg.shape, v.dtype)
        full[fg] = v
        out[k] = full
    return out


def _full(values: np.ndarray, fg: np.ndarray) -> np.ndarray:
    out = np.zeros(fg.shape, values.dtype)
    out[fg] = values
    return out
