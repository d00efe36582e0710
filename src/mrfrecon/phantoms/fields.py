"""Smooth random fields in millimetres, and the B1 and Δf fields of a phantom.

All fields are defined on millimetre grids that do not depend on the matrix size, then sampled
at the pixel centres by linear interpolation: the same seed gives the same subject at any
matrix (only the rasterization changes).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .tissues import DICTIONARY_RANGES

__all__ = ["FieldBank", "draw_b1_params", "b1_field", "draw_df_params", "df_field", "df_skin_term"]


def _interp_weights(coords_mm: np.ndarray, origin_mm: float, step_mm: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index and weight of the right neighbour, for linear interpolation from a
    regular grid (``origin_mm + i·step_mm``, ``i < n``) to ``coords_mm``."""
    t = np.clip((coords_mm - origin_mm) / step_mm, 0.0, n - 1.000001)
    i0 = np.floor(t).astype(np.int64)
    return i0, (t - i0).astype(np.float32)


class FieldBank:
    """Draws smooth, unit-variance Gaussian random fields sampled at the pixel centres.

    Parameters
    ----------
    rng
        Generator the white noise is drawn from; each :meth:`field` call consumes it, so the
        order of calls is part of the phantom's definition.
    x_mm, y_mm
        Pixel-centre coordinates, shapes ``(W,)`` and ``(H,)``, mm.
    n_slices, slice_mm
        Number of slices and their spacing (mm); fields are correlated along z.
    fov_mm
        Extent of the millimetre grid the fields live on (centred on 0).
    """

    def __init__(self, rng: np.random.Generator, x_mm: np.ndarray, y_mm: np.ndarray,
                 n_slices: int, slice_mm: float, fov_mm: float) -> None:
        self.rng = rng
        self.x_mm, self.y_mm = x_mm, y_mm
        self.n_slices, self.slice_mm, self.fov_mm = n_slices, slice_mm, fov_mm
        self._interp: dict[float, tuple] = {}

    def field(self, sigma_mm: float, sigma_z_mm: float = 12.0) -> np.ndarray:
        """One field of shape ``(slices, H, W)``, float32, zero mean and unit SD (over the grid).

        ``sigma_mm`` is the in-plane Gaussian correlation width, ``sigma_z_mm`` the one along z.
        """
        # grid step: fine enough for the Gaussian (≥ 1.25 samples per sigma), never below 1 mm
        step = float(np.clip(sigma_mm / 1.25, 1.0, 8.0))
        n = int(np.ceil(self.fov_mm / step)) + 3
        origin = -0.5 * (n - 1) * step
        noise = self.rng.standard_normal((self.n_slices, n, n), dtype=np.float32)
        sz = sigma_z_mm / self.slice_mm if self.n_slices > 1 else 0.0
        f = ndimage.gaussian_filter(noise, (sz, sigma_mm / step, sigma_mm / step), mode="reflect", truncate=3.0)
        f -= f.mean()
        f /= max(float(f.std()), 1e-12)
        if step not in self._interp:
            self._interp[step] = (_interp_weights(self.y_mm, origin, step, n), _interp_weights(self.x_mm, origin, step, n))
        (iy, fy), (ix, fx) = self._interp[step]
        # separable linear interpolation by gathers (cheaper than dense matrices, no BLAS threads)
        rows = f[:, iy, :] * (1.0 - fy)[None, :, None] + f[:, iy + 1, :] * fy[None, :, None]
        return rows[:, :, ix] * (1.0 - fx) + rows[:, :, ix + 1] * fx


# ---------------------------------------------------------------------------------------------
# B1 (transmit field efficacy)
# ---------------------------------------------------------------------------------------------


def draw_b1_params(rng: np.random.Generator) -> dict:
    """Subject-level parameters of the B1 field (a.u.).

    Measured MRF-WF B1 maps of both thighs at 3 T are smooth, with gradients from left to right
    and from anterior to posterior across the field of view (the standing-wave pattern of the
    body coil at 128 MHz over a load the size of both limbs); DESIGN.md's published patient
    slice has median 0.70 and 5th–95th percentiles 0.45–0.90 over the foreground. The field is a
    plane (a level at the field's centre, linear LR/AP gradients), a symmetric LR curvature (the
    limbs' outer or inner sides darker) and a smooth random part; no radially symmetric dip.
    """
    sx, sy = rng.choice([-1.0, 1.0], 2)
    return {
        "level": float(rng.uniform(0.62, 0.78)),        # B1 at the centre of the field of view
        "grad_x": float(sx * rng.uniform(0.06, 0.30)),  # change across the half field of view
        "grad_y": float(sy * rng.uniform(0.10, 0.34)),
        "curv_x": float(rng.uniform(-0.16, 0.10)),      # × (x / half FOV)²
        "grad_z": float(rng.uniform(-0.02, 0.02)),      # per 10 mm along the stack
        "noise": float(rng.uniform(0.03, 0.06)),        # SD of the smooth random part
    }


def b1_field(p: dict, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """B1 map ``(slices, H, W)`` float32, clipped to the dictionary range 0.3–1.0.

    ``x_mm``, ``y_mm`` are pixel-centre coordinates (mm; y grows posteriorly), ``z_mm`` the
    slice positions and ``noise`` a smooth unit-variance field ``(slices, H, W)``.
    """
    half = 175.0
    x = x_mm[None, None, :] / half
    y = y_mm[None, :, None] / half
    z = z_mm[:, None, None]
    b = p["level"] + p["grad_x"] * x + p["grad_y"] * y + p["curv_x"] * x * x + p["grad_z"] * z / 10.0
    b = b + p["noise"] * noise
    lo, hi = DICTIONARY_RANGES["b1"]
    return np.clip(b, lo, hi).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Δf (off-resonance)
# ---------------------------------------------------------------------------------------------


def draw_df_params(rng: np.random.Generator) -> dict:
    """Subject-level parameters of the off-resonance field (Hz).

    DESIGN.md: Δf mostly −40…+90 Hz over the foreground, up to ±120 Hz at the skin (the
    susceptibility step at the tissue/air boundary).
    """
    return {
        "offset": float(rng.uniform(0.0, 50.0)),
        "grad_x": float(rng.uniform(-40.0, 40.0)),  # Hz across the half field of view
        "grad_y": float(rng.uniform(-25.0, 25.0)),
        "grad_z": float(rng.uniform(-3.0, 3.0)),    # Hz per 10 mm
        "noise": float(rng.uniform(4.0, 10.0)),
        "skin_amp": float(rng.uniform(40.0, 100.0)),  # up to ±120 Hz at the skin with the rest
        "skin_decay_mm": float(rng.uniform(4.0, 8.0)),
        "skin_phase": float(rng.uniform(0.0, 2.0 * np.pi)),
    }


def df_field(p: dict, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Smooth part of Δf ``(slices, H, W)`` in Hz (float32, not yet clipped)."""
    half = 175.0
    x = x_mm[None, None, :]
    y = y_mm[None, :, None]
    z = z_mm[:, None, None]
    d = p["offset"] + p["grad_x"] * x / half + p["grad_y"] * y / half + p["grad_z"] * z / 10.0
    return (d + p["noise"] * noise).astype(np.float32)


def df_skin_term(p: dict, depth_mm: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Off-resonance near the skin/air boundary, Hz.

    ``depth_mm`` is the signed distance below the skin (negative in air) and ``theta`` the polar
    angle around the limb. The term is largest at the surface and decays on both sides; its
    sign alternates around the limb like the field of a magnetized cylinder (cos 2θ).
    """
    return (p["skin_amp"] * np.exp(-np.abs(depth_mm) / p["skin_decay_mm"])
            * np.cos(2.0 * theta + p["skin_phase"])).astype(np.float32)
