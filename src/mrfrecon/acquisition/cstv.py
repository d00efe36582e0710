"""KWIC + compressed sensing with total variation (CS-TV): the paper's frame reconstruction.

Balsiger et al. (MIDL 2019, sect. 2.1) reconstructed their series with "view sharing with a
k-space weighted image contrast filter with 55 spokes, and compressed sensing with total
variation (Marty et al., 2018a,b)". This module implements a standard formulation of that
second step, in the low-rank temporal subspace of the MRF signals:

Model. The per-spoke image series is ``series[s] = Σ_k B[s, k]·x_k`` with K coefficient images
``x_k`` and a temporal basis ``B (spokes, K)`` (subspace reconstruction of MRF: Zhao et al.,
"Improved magnetic resonance fingerprinting reconstruction with low-rank and subspace
modeling", MRM 79:933-942, 2018; Assländer et al., "Low rank alternating direction method of
multipliers reconstruction for MR fingerprinting", MRM 79:83-96, 2018). The basis is *not* the
one the acquisition simulated with: it is the SVD of fingerprints drawn over the whole
dictionary range (:func:`recon_basis`), as it would be for measured data, so that simulated
data do not hand the reconstruction its own subspace. Coil ``c`` with sensitivity ``S_c`` sees
``y[c, s] = F_s(S_c · Σ_k B[s, k]·x_k)``, ``F_s`` the NUFFT of spoke ``s``.

Problem. ``min_x ½ Σ_{c,s,m} w_{s,m} |(A x)_{c,s,m} − y_{c,s,m}|² + λ·TV(x)``, with ``w`` the
density compensation of the KWIC reconstruction over all spokes (ramp filter × angular width,
:func:`~mrfrecon.acquisition.kwic.kwic_weights`; a diagonal preconditioner that makes the normal
operator close to the identity) scaled by the number of spokes, and the isotropic, vectorial TV
``TV(x) = Σ_pixels sqrt(Σ_k |∇_x x_k|² + |∇_y x_k|²)`` (Rudin, Osher & Fatemi, Physica D
60:259-268, 1992; for radial MRI: Block, Uecker & Frahm, "Undersampled radial MRI with multiple
coils. Iterative image reconstruction using a total variation constraint", MRM 57:1086-1098,
2007). ``λ = weight × s`` where ``s`` is the 99th percentile of ``sqrt(Σ_k |x0_k|²)`` over the
slice (``weight`` is dimensionless; its default was chosen against ground truth, see
docs/SIMULATION.md).

Algorithm. The primal-dual method of Condat ("A primal-dual splitting method for convex
optimization involving Lipschitzian, proximable and linear composite terms", JOTA 158:460-479,
2013) and Vũ (Adv. Comput. Math. 38:667-681, 2013) — Chambolle–Pock's algorithm with the data
term taken by its gradient — with steps ``τ = 1/L``, ``σ = L/16`` (``1/τ − σ‖∇‖² ≥ L/2``, with
``‖∇‖² ≤ 8``), ``L`` the norm of the normal operator found by power iteration. Start: the KWIC
series projected onto the subspace (``x0 = pinv(B_frames)·kwic``), so that "kwic-tv" is KWIC
followed by CS-TV. Stop: when the relative change ``‖x_{n+1} − x_n‖ / ‖x_{n+1}‖ < tol`` or after
``iterations``. Divergence (a non-finite iterate, or an objective above 1.5 × its starting
value) raises :class:`~mrfrecon.errors.MrfreconError`: no scan is written.

Normal operator. ``AᴴWA`` is applied without NUFFTs, as a Toeplitz convolution (Wajer &
Pruessmann, ISMRM 2001; Fessler et al., IEEE TSP 53:3393-3408, 2005; for subspaces: Mani et
al., MRM 2015, and T2 shuffling, Tamir et al., MRM 77:180-195, 2017): with
``T_{kk'}(p) = Σ_{s,m} w_{s,m}·conj(B[s,k])·B[s,k']·exp(+i k_{s,m}·p)`` on the ``2ny × 2nx``
grid of differences, ``(AᴴWA x)_k = Σ_c conj(S_c)·Σ_{k'} T_{kk'} * (S_c x_{k'})``: per coil
and iteration 2K FFTs of ``2ny × 2nx`` and K² products. The kernels depend only on the
trajectory, the weights and the basis, so they are computed once per scan geometry (K(K+1)/2
type-1 NUFFTs; ``T_{k'k}`` is the Hermitian partner of ``T_{kk'}``).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..errors import MrfreconError
from ..sequence import Sequence
from ._checks import as_complex, check_traj, positive_int
from .kwic import KwicWeights, kwic_reconstruct, kwic_weights
from .lowrank import lowrank_series
from .nufft import Nufft2D

__all__ = ["CsTvOptions", "ToeplitzNormal", "recon_basis", "cstv_reconstruct", "subspace_adjoint", "gradient",
           "gradient_adjoint", "RECONS"]

#: frame reconstructions offered by :func:`mrfrecon.cohort.acquire` and ``mrfrecon simulate --recon``
RECONS = ("kwic", "kwic-tv")

# dictionary range of the clinical MRF-WF grid (DESIGN.md, "Dictionary grid used clinically"):
# the fingerprints a reconstruction subspace must represent
_BASIS_RANGES = {"t1h2o": (550.0, 2300.0), "t1fat": (225.0, 475.0), "b1": (0.3, 1.0), "df": (-120.0, 120.0),
                 "ff": (0.0, 1.0)}


@dataclass(frozen=True)
class CsTvOptions:
    """Settings of the CS-TV reconstruction (validated on construction).

    Attributes
    ----------
    weight
        TV weight relative to the 99th percentile of the starting coefficient magnitude (> 0).
        Measured against ground truth (frame NRMSE, image SNR 10, one coil; docs/SIMULATION.md):
        best near 0.04 at 350² and 234² (1–1.5 mm pixels), near 0.02 at 96² (3.6 mm).
    iterations
        Most primal-dual iterations (≥ 1).
    tol
        Stop when the relative change of the coefficients falls below it (> 0).
    rank
        Rank of the reconstruction subspace (≥ 1).
    """

    weight: float = 0.04
    iterations: int = 40
    tol: float = 2e-3
    rank: int = 8

    def __post_init__(self) -> None:
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise MrfreconError(f"tv_weight: expected a finite number > 0, got {w!r}")
        positive_int(self.iterations, "tv_iterations")
        t = self.tol
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise MrfreconError(f"tv_tol: expected a finite number > 0, got {t!r}")
        positive_int(self.rank, "tv_rank")


@functools.lru_cache(maxsize=4)
def _recon_basis_cached(seq_json: str, rank: int, n_atoms: int, seed: int) -> np.ndarray:
    from ..physics import simulate  # physics is heavier (torch); imported when needed

    seq = Sequence.from_json(seq_json)
    rng = np.random.default_rng(seed)
    p = {k: rng.uniform(lo, hi, n_atoms) for k, (lo, hi) in _BASIS_RANGES.items()}
    x = simulate(seq, p["t1h2o"], p["t1fat"], p["b1"], p["df"], p["ff"], 1.0, per_spoke=True)
    basis, _ = lowrank_series(x, rank=rank)
    return basis


def recon_basis(sequence: Sequence, rank: int = 8, *, n_atoms: int = 2000, seed: int = 0) -> np.ndarray:
    """Temporal basis ``(spokes, rank)`` complex64 of the reconstruction subspace.

    The leading right singular vectors of ``n_atoms`` per-spoke water–fat fingerprints (PD 1)
    drawn uniformly over the clinical dictionary range (T1H2O 550–2300 ms, fat T1 225–475 ms,
    B1 0.3–1.0, Δf ±120 Hz, FF 0–1), reproducible for a seed; cached per sequence.
    Columns are orthonormal: ``series[s] = Σ_k basis[s, k]·x_k``.
    """
    rank = positive_int(rank, "rank")
    return _recon_basis_cached(sequence.to_json(), rank, positive_int(n_atoms, "n_atoms"), int(seed)).copy()


# ---------------------------------------------------------------------------------------------
# finite differences (TV)
# ---------------------------------------------------------------------------------------------


def gradient(x: np.ndarray) -> np.ndarray:
    """Forward differences of images ``(..., ny, nx)`` → ``(..., 2, ny, nx)`` (y then x), zero
    at the last row/column (Neumann boundary)."""
    g = np.zeros((*x.shape[:-2], 2, *x.shape[-2:]), dtype=x.dtype)
    g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def gradient_adjoint(g: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`gradient` (minus the divergence): ``(..., 2, ny, nx)`` → ``(..., ny, nx)``."""
    gy, gx = g[..., 0, :, :], g[..., 1, :, :]
    out = np.zeros(g.shape[:-3] + g.shape[-2:], dtype=g.dtype)
    out[..., :-1, :] -= gy[..., :-1, :]
    out[..., 1:, :] += gy[..., :-1, :]
    out[..., :, :-1] -= gx[..., :, :-1]
    out[..., :, 1:] += gx[..., :, :-1]
    return out


def _tv(x: np.ndarray) -> float:
    g = gradient(x)
    return float(np.sqrt((np.abs(g) ** 2).sum(axis=(0, 1))).sum())


# ---------------------------------------------------------------------------------------------
# normal operator
# ---------------------------------------------------------------------------------------------


class ToeplitzNormal:
    """``AᴴWA`` of the subspace radial model as FFT convolutions (module docstring).

    Parameters
    ----------
    traj
        ``(spokes, samples, 2)`` in radians/pixel.
    weights
        Data weights ``(spokes, samples)`` (≥ 0).
    basis
        ``(spokes, K)`` temporal basis.
    shape
        Image shape ``(ny, nx)``.
    eps, nthreads
        finufft precision and threads of the one-off kernel computation.
    """

    def __init__(self, traj: np.ndarray, weights: np.ndarray, basis: np.ndarray, shape: tuple[int, int], *,
                 eps: float = 1e-4, nthreads: int | None = None) -> None:
        t = check_traj(traj)
        b = as_complex(basis, "basis", 2, "(spokes, K)")
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != t.shape[:2] or b.shape[0] != t.shape[0]:
            raise MrfreconError(f"weights/basis: expected {t.shape[:2]} and ({t.shape[0]}, K), got {w.shape}, {b.shape}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.k = b.shape[1]
        ny, nx = self.shape
        pairs = [(i, j) for i in range(self.k) for j in range(i, self.k)]
        self.pairs = pairs
        op = Nufft2D((2 * ny, 2 * nx), t.reshape(-1, 2), eps=eps, nthreads=nthreads, max_batch=6)
        strengths = np.empty((len(pairs), t.shape[0], t.shape[1]), dtype=np.complex64)
        for n, (i, j) in enumerate(pairs):
            strengths[n] = (np.conj(b[:, i]) * b[:, j])[:, None] * w
        kern = op.adjoint(strengths.reshape(len(pairs), -1))  # (pairs, 2ny, 2nx), lag p at index p + n
        del strengths
        # circular arrangement (lag 0 at index 0) and its spectrum
        self.spectra = scipy.fft.fft2(np.fft.ifftshift(kern, axes=(-2, -1)), axes=(-2, -1), workers=1).astype(np.complex64)

    def apply_plain(self, x: np.ndarray) -> np.ndarray:
        """``Σ_k' T_{kk'} * x_{k'}`` for coefficient images ``(K, ny, nx)`` (one coil of ones)."""
        ny, nx = self.shape
        # pruned FFTs: the zero-padded half of the rows needs no row transform, and only the
        # first ny rows of the result are transformed back (≈ 25 % fewer operations each way)
        u = scipy.fft.fft(scipy.fft.fft(x, n=2 * nx, axis=-1, workers=1), n=2 * ny, axis=-2, workers=1)
        v = np.zeros_like(u)
        tmp = np.empty_like(u[0])
        for n, (i, j) in enumerate(self.pairs):
            m = self.spectra[n]
            v[i] += np.multiply(m, u[j], out=tmp)
            if j != i:
                v[j] += np.multiply(np.conj(m), u[i], out=tmp)
        back = scipy.fft.ifft(v, axis=-2, workers=1)[:, :ny]
        return scipy.fft.ifft(back, axis=-1, workers=1)[:, :, :nx].astype(np.complex64)

    def apply(self, x: np.ndarray, sens: np.ndarray | None = None) -> np.ndarray:
        """``AᴴWA x`` for ``x (K, ny, nx)`` with sensitivities ``(coils, ny, nx)`` (None: one coil of ones)."""
        if sens is None:
            return self.apply_plain(x)
        out = np.zeros_like(x)
        for s_c in sens:
            out += np.conj(s_c)[None] * self.apply_plain(s_c[None] * x)
        return out

    def norm(self, iterations: int = 15, seed: int = 0) -> float:
        """Largest eigenvalue of the coil-free operator (power iteration), a bound of the
        operator's norm for any sensitivities with ``Σ_c |S_c|² ≤ 1``; computed once."""
        key = (iterations, seed)
        if getattr(self, "_norm_cache", None) is None:
            self._norm_cache: dict = {}
        if key not in self._norm_cache:
            self._norm_cache[key] = self._power_iteration(iterations, seed)
        return self._norm_cache[key]

    def _power_iteration(self, iterations: int, seed: int) -> float:
        rng = np.random.default_rng(seed)
        v = (rng.standard_normal((self.k, *self.shape)) + 1j * rng.standard_normal((self.k, *self.shape))).astype(np.complex64)
        lam = 0.0
        for _ in range(iterations):
            v /= np.linalg.norm(v)
            w = self.apply_plain(v)
            lam = float(np.vdot(v, w).real)
            v = w
        return lam


# ---------------------------------------------------------------------------------------------
# reconstruction
# ---------------------------------------------------------------------------------------------


def subspace_adjoint(op: Nufft2D, kspace: np.ndarray, basis: np.ndarray, weights: np.ndarray | None = None,
                     sens: np.ndarray | None = None) -> np.ndarray:
    """``AᴴW y``: coefficient images ``(K, ny, nx)`` from one slice's k-space ``(coils, spokes, samples)``.

    The adjoint of :func:`~mrfrecon.acquisition.kspace.simulate_kspace` (with ``W = 1``):
    ``Σ_c conj(S_c)·Σ_{s,m} conj(B[s, k])·w_{s,m}·y_{c,s,m}·exp(+i k_{s,m}·r)``. ``op`` holds the
    trajectory's points (all spokes), ``sens`` is ``(coils, ny, nx)`` or None (one coil of ones).
    """
    b = np.asarray(basis)
    w = np.ones(kspace.shape[1:], np.float32) if weights is None else weights
    bw = np.conj(b).T[:, :, None] * w[None]  # (K, spokes, samples)
    out = np.zeros((b.shape[1], *op.shape), dtype=np.complex64)
    for c in range(kspace.shape[0]):
        z = op.adjoint((bw * kspace[c][None]).reshape(b.shape[1], -1))  # (K, ny, nx)
        out += z if sens is None else np.conj(sens[c])[None] * z
    return out


#: normal operators of recent geometries: scans of one cohort share trajectory, weights and basis,
#: so the kernels (10 s at 350²) and the norm estimate (5 s) are made once per process
_NORMALS: dict[tuple, ToeplitzNormal] = {}


def _normal_for(t: np.ndarray, w: np.ndarray, b: np.ndarray, shape: tuple[int, int], eps: float,
                nthreads: int | None) -> ToeplitzNormal:
    key = (hashlib.sha1(t.tobytes()).hexdigest(), hashlib.sha1(w.tobytes()).hexdigest(),
           hashlib.sha1(b.tobytes()).hexdigest(), tuple(shape), float(eps))
    if key not in _NORMALS:
        while len(_NORMALS) >= 2:
            _NORMALS.pop(next(iter(_NORMALS)))
        _NORMALS[key] = ToeplitzNormal(t, w, b, shape, eps=eps, nthreads=nthreads)
    return _NORMALS[key]


def _data_weights(t: np.ndarray) -> np.ndarray:
    """KWIC density compensation of all spokes together × the number of spokes ``(spokes, samples)``."""
    n = t.shape[0]
    return kwic_weights(t, n, n).weights[0] * np.float32(n)


def cstv_reconstruct(
    kspace: np.ndarray,
    traj: np.ndarray,
    sequence: Sequence,
    *,
    options: CsTvOptions | None = None,
    basis: np.ndarray | None = None,
    coils: np.ndarray | None = None,
    start: np.ndarray | None = None,
    window: int = 55,
    weights: KwicWeights | None = None,
    normal: ToeplitzNormal | None = None,
    eps: float = 1e-4,
    nthreads: int | None = None,
    info: dict | None = None,
) -> np.ndarray:
    """KWIC + CS-TV reconstruction of the MRF image series (module docstring).

    Parameters
    ----------
    kspace
        complex ``(slices, coils, spokes, samples)``.
    traj
        ``(spokes, samples, 2)`` radians/pixel.
    sequence
        The MRF sequence (frames of ``spokes_per_frame`` spokes).
    options
        :class:`CsTvOptions` (TV weight, iterations, tolerance, subspace rank).
    basis
        Reconstruction basis ``(spokes, K)``; default :func:`recon_basis` of the sequence.
    coils
        Sensitivities ``(coils, ny, nx)`` or ``(slices, coils, ny, nx)`` with ``Σ|S|² = 1``;
        None for one coil (required when there are several coils).
    start
        KWIC series ``(slices, frames, ny, nx)`` to start from; default: computed here.
    window, weights
        KWIC window (spokes) and precomputed KWIC weights for the start.
    normal
        Precomputed :class:`ToeplitzNormal` for this trajectory and basis (reuse across scans).
    eps, nthreads
        finufft precision and threads.
    info
        If given, filled with the iterations, final relative change and objective per slice.

    Returns
    -------
    numpy.ndarray
        complex64 ``(slices, frames, ny, nx)``: frame means of the per-spoke series.
    """
    opts = options if options is not None else CsTvOptions()
    y = as_complex(kspace, "kspace", 4, "(slices, coils, spokes, samples)")
    t = check_traj(traj)
    n_slices, n_coils, n_spokes, n_samples = y.shape
    if (n_spokes, n_samples) != t.shape[:2] or n_spokes != sequence.spokes:
        raise MrfreconError(f"kspace: {n_spokes} spokes of {n_samples} samples do not match traj {t.shape[:2]} "
                            f"and the sequence's {sequence.spokes} spokes")
    sens = None
    if coils is not None:
        sens = as_complex(np.asarray(coils)[None] if np.ndim(coils) == 3 else coils, "coils", 4,
                          "(coils, ny, nx) or (slices, coils, ny, nx)")
        if sens.shape[1] != n_coils or sens.shape[0] not in (1, n_slices):
            raise MrfreconError(f"coils: expected ({n_coils}, ny, nx) sensitivities for the kspace's coils, got {sens.shape}")
        shape = tuple(sens.shape[-2:])
    elif n_coils > 1:
        raise MrfreconError("coils: several coils need their sensitivities for CS-TV")
    else:
        shape = (n_samples // 2, n_samples // 2)
    b = recon_basis(sequence, opts.rank) if basis is None else as_complex(basis, "basis", 2, "(spokes, K)")
    if b.shape[0] != n_spokes:
        raise MrfreconError(f"basis: has {b.shape[0]} spokes, kspace {n_spokes}")
    k = b.shape[1]
    w = _data_weights(t)
    if normal is None:
        normal = _normal_for(t, w, b, shape, eps, nthreads)  # type: ignore[arg-type]
    lip = 1.2 * normal.norm()  # margin: power iteration approaches the norm from below
    if not (np.isfinite(lip) and lip > 0):
        raise MrfreconError("cstv: the normal operator has no positive norm (empty trajectory or weights)")
    tau, sigma = 1.0 / lip, lip / 16.0
    bf = b.reshape(sequence.frames, sequence.spokes_per_frame, k).mean(axis=1)  # (frames, K)
    pinv = np.linalg.pinv(bf.astype(np.complex128)).astype(np.complex64)  # (K, frames)
    if start is None:
        start = kwic_reconstruct(y, t, sequence, window=window, coils=sens, matrix=shape, weights=weights,
                                 eps=eps, nthreads=nthreads)
    op = Nufft2D(shape, t.reshape(-1, 2), eps=eps, nthreads=nthreads, max_batch=64)  # type: ignore[arg-type]
    out = np.empty((n_slices, sequence.frames, *shape), dtype=np.complex64)
    per_slice = []
    for sl in range(n_slices):
        s_sl = None if sens is None else sens[0 if sens.shape[0] == 1 else sl]
        # Aᴴ W y: K × coils type-1 NUFFTs over all samples
        rhs = subspace_adjoint(op, y[sl], b, w, s_sl)
        c0 = 0.5 * float(np.sum(w[None] * np.abs(y[sl]) ** 2))
        x = np.einsum("kf,fyx->kyx", pinv, start[sl]).astype(np.complex64)
        mag = np.sqrt((np.abs(x) ** 2).sum(axis=0))
        lam = float(opts.weight * np.percentile(mag, 99))
        if not lam > 0:
            raise MrfreconError("kspace: the starting image is zero; CS-TV has nothing to reconstruct")
        p = np.zeros((k, 2, *shape), dtype=np.complex64)
        nx_ = normal.apply(x, s_sl)

        def objective(xv: np.ndarray, nxv: np.ndarray) -> float:
            return 0.5 * float(np.vdot(xv, nxv).real) - float(np.vdot(xv, rhs).real) + c0 + lam * _tv(xv)

        obj0 = objective(x, nx_)
        history = [obj0]
        change = np.inf
        it = 0
        for it in range(1, opts.iterations + 1):
            x_new = x - tau * (nx_ - rhs + gradient_adjoint(p))
            q = p + sigma * gradient(2 * x_new - x)
            norm_q = np.sqrt((np.abs(q) ** 2).sum(axis=(0, 1), keepdims=True))
            p = (q / np.maximum(1.0, norm_q / lam)).astype(np.complex64)
            change = float(np.linalg.norm(x_new - x) / max(np.linalg.norm(x_new), 1e-30))
            x = x_new.astype(np.complex64)
            nx_ = normal.apply(x, s_sl)
            obj = objective(x, nx_)
            history.append(obj)
            if not (np.isfinite(obj) and np.isfinite(change)) or obj > 1.5 * abs(obj0):
                raise MrfreconError(f"cstv: diverged on slice {sl} at iteration {it} (objective {obj:.4g}, "
                                    f"start {obj0:.4g}); no series was produced")
            if change < opts.tol:
                break
        out[sl] = np.einsum("fk,kyx->fyx", bf, x)
        per_slice.append({"iterations": it, "relative_change": change, "objective_start": obj0,
                          "objective_end": history[-1], "lambda": lam})
    if info is not None:
        info.update(recon="kwic-tv", tv_weight=opts.weight, tv_rank=int(k), tv_lipschitz=float(lip),
                    tv_slices=per_slice)
    return out
