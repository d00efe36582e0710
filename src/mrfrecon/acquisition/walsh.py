"""Coil sensitivities from measured coil images by Walsh's adaptive method.

Walsh, Gmitro and Marcellin, "Adaptive reconstruction of phased array MR imagery", MRM
43:682-690 (2000): at every pixel the coil covariance of the signal in a small neighbourhood,
``R = Σ_q x_q x_qᴴ`` (``x_q`` the coil values at pixel ``q``), has as its dominant eigenvector the
direction of the coil sensitivities there (the signal is rank one across coils, the noise
spreads over all eigenvectors). The eigenvector is unit-norm (``Σ_c |S_c|² = 1``, the
convention of :mod:`mrfrecon.acquisition.coils`) and its phase is referred to the coil of most
energy, so the combination ``Σ_c conj(S_c)·x_c`` keeps the object's own phase evolution across
frames (what matching needs) up to that coil's phase.
"""

from __future__ import annotations

import numpy as np

from ..errors import MrfreconError

__all__ = ["walsh_sensitivities"]


def walsh_sensitivities(images: np.ndarray, *, window: int = 7) -> np.ndarray:
    """Sensitivities ``(..., coils, ny, nx)`` complex64 from coil images of the same shape (e.g.
    the time-averaged image of every spoke), with a ``window × window`` neighbourhood."""
    x = np.asarray(images)
    if x.ndim < 3 or not np.iscomplexobj(x):
        raise MrfreconError(f"images: expected complex (..., coils, ny, nx), got {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        raise MrfreconError("images: contains NaN or infinite values")
    if window < 1 or window % 2 == 0:
        raise MrfreconError(f"window: expected an odd size ≥ 1, got {window}")
    from scipy.ndimage import uniform_filter

    lead, (nc, ny, nx) = x.shape[:-3], x.shape[-3:]
    flat = x.reshape(-1, nc, ny, nx).astype(np.complex128)
    out = np.empty(flat.shape, np.complex64)
    for n, im in enumerate(flat):
        cov = im[:, None] * im[None].conj()  # (coils, coils, ny, nx)
        size = (1, 1, window, window)
        cov = uniform_filter(cov.real, size, mode="nearest") + 1j * uniform_filter(cov.imag, size, mode="nearest")
        _, vecs = np.linalg.eigh(np.moveaxis(cov, (0, 1), (-2, -1)))  # ascending eigenvalues
        v = vecs[..., -1]  # (ny, nx, coils), unit norm
        ref = int(np.argmax((np.abs(im) ** 2).sum(axis=(1, 2))))
        phase = v[..., ref] / np.maximum(np.abs(v[..., ref]), 1e-30)
        out[n] = np.moveaxis(v * phase.conj()[..., None], -1, 0)
    return out.reshape(*lead, nc, ny, nx)
