"""Raw multi-coil radial data before reconstruction: readout oversampling, noise prewhitening,
coil compression.

Three linear steps that the raw-data path (:mod:`mrfrecon.io.ismrmrd`) applies to measured
k-space ``(slices, coils, spokes, samples)`` before coil sensitivities and view sharing. None of
them is part of the simulation, which produces white, uncompressed, twofold oversampled data.

Readout oversampling
--------------------
A spoke of ``f·N`` samples spaced ``2π/(f·N)`` radians/pixel (sample ``f·N // 2`` at the k-space
centre, :mod:`.trajectory`) is the 1-D Fourier transform of the object's projection over ``f``
times the field of view. :func:`remove_readout_oversampling` transforms it back to the
projection, keeps the central ``N`` samples and transforms forward again, divided by ``√f`` so that
each retained sample keeps its value (the result is exactly the samples ``f·j`` of the original
spoke when the projection lies inside the central field of view). The reader keeps the
oversampled samples by default (the project's own convention, measured in docs/IMPORT.md);
removal halves the NUFFT points when speed matters more.

Noise prewhitening
------------------
Noise-only samples ``n`` (``(coils, samples)``, the ``ACQ_IS_NOISE_MEASUREMENT`` acquisitions of an
ISMRMRD file) give the coil noise covariance ``Ψ = n nᴴ / samples`` (zero-mean noise: no mean is
estimated, so dividing by the sample count is unbiased). With the Cholesky factor ``Ψ = L Lᴴ``
(``L`` lower triangular) the prewhitening matrix ``W = L⁻¹`` makes the noise of ``W x`` white with
unit variance: ``W Ψ Wᴴ = I`` (Roemer et al., "The NMR phased array", MRM 16:192-225, 1990;
Pruessmann et al., "Advances in sensitivity encoding with arbitrary k-space trajectories", MRM
46:638-651, 2001, appendix; Gadgetron's ``NoiseAdjustGadget`` uses the same inverse Cholesky
factor). Noise variance per sample is proportional to the receiver bandwidth, i.e. inversely
proportional to the dwell time, so noise sampled with dwell ``t_n`` and data with dwell ``t_a``
(ISMRMRD ``sample_time_us``) need the extra factor ``√(t_a / t_n)`` (:func:`dwell_time_scale`).
Gadgetron multiplies further by ``√(2 · relativeReceiverNoiseBandwidth)`` (0.793 in
siemens_to_ismrmrd's parameter map) to express images in SNR units after its own oversampling
removal; a global factor changes neither matching (PD absorbs it) nor CS-TV (its weight is
relative to the image), so it is not applied here.

Coil compression
----------------
After whitening, the left singular vectors of the coil data ``X`` ``(coils, samples)`` order the
coil space by signal energy over noise; the first ``K`` of them form ``K`` virtual coils
``Uₖᴴ X`` (Buehrer et al., "Array compression for MRI with large coil arrays", MRM 57:1131-1139,
2007; Huang et al., "A software channel compression technique for faster reconstruction with
many channels", MRI 26:133-141, 2008). They are computed from the ``coils × coils`` Gram matrix
``X Xᴴ`` (eigenvalues = squared singular values), one matrix per slice. Being orthonormal rows,
the compression keeps white noise white.

The automatic choice (:func:`choose_virtual_coils`) counts *signal* energy: every component
carries the same noise energy ``p`` (``samples × σ²``; ``samples`` for whitened data), so a
plain energy fraction ``Σᵢ≤ₖ sᵢ² / Σ sᵢ²`` is dominated by noise with many coils (measured with 24
coils at frame SNR 10: 98 % of the energy needs 14 virtual coils, while 4 already reproduce the
24-coil series to 0.2 %). The criterion is the smallest ``K`` with
``Σᵢ≤ₖ (sᵢ² − p)₊ ≥ energy · Σᵢ (sᵢ² − p)₊`` with ``p`` the upper edge of the noise eigenvalues
(:func:`noise_edge`). Noise-only eigenvalues do not all equal ``samples × σ²``: they spread over
``σ²·samples·(1 ± √(coils/samples))²`` (Marchenko & Pastur, Math. USSR-Sbornik 1:457-483, 1967);
at 24 coils and 1400 × 128 samples that is ±2.3 %, and 20 noise components above a floor taken at
their lower end add 0.08 % of the signal energy, enough to pull the choice from 4 to 15 coils
(measured). The edge is therefore taken at the top of that spread, from the smallest eigenvalue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MrfreconError

__all__ = [
    "CoilCompression",
    "apply_coil_matrix",
    "choose_virtual_coils",
    "coil_compression",
    "coil_gram",
    "dwell_time_scale",
    "noise_edge",
    "noise_covariance",
    "prewhitening_matrix",
    "remove_readout_oversampling",
]

#: Signal-energy fraction kept by the automatic virtual-coil choice (measured: docs/IMPORT.md).
AUTO_ENERGY = 0.999

_CHUNK = 1 << 18  # samples per Gram block: bounds the temporary copies at paper size


def remove_readout_oversampling(kspace: np.ndarray, factor: int) -> np.ndarray:
    """Remove ``factor``-fold readout oversampling from radial spokes (last axis).

    Parameters
    ----------
    kspace
        complex ``(..., samples)``, ``samples = factor · N``, the k-space centre at ``samples // 2``
        (the convention of :func:`~mrfrecon.acquisition.trajectory.radial_trajectory`).
    factor
        Integer oversampling factor ≥ 1 (1 returns the input as complex64).

    Returns
    -------
    numpy.ndarray
        complex64 ``(..., N)`` with the centre at ``N // 2``: the samples of the projection
        cropped to the central ``N`` of its ``factor · N`` points, at k-space spacing
        ``2π / N`` radians/pixel (``radial_trajectory(..., oversampling=1)``).
    """
    k = np.asarray(kspace)
    if not np.iscomplexobj(k) or k.ndim < 1:
        raise MrfreconError(f"kspace: expected complex (..., samples), got {k.dtype} {k.shape}")
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise MrfreconError(f"factor: expected an integer ≥ 1, got {factor!r}")
    n = k.shape[-1]
    if n % factor:
        raise MrfreconError(f"kspace: {n} samples per readout is not a multiple of the oversampling {factor}")
    if factor == 1:
        return k.astype(np.complex64, copy=False)
    m = n // factor
    # centred transforms: ifftshift puts sample n//2 (k = 0) first, fftshift brings it back
    proj = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=-1), axis=-1, norm="ortho"), axes=-1)
    lo = n // 2 - m // 2
    proj = proj[..., lo:lo + m]
    out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(proj, axes=-1), axis=-1, norm="ortho"), axes=-1)
    out /= np.sqrt(factor)  # orthonormal transforms of n and m points: √(n/m) per sample
    return out.astype(np.complex64)


def noise_covariance(noise: np.ndarray) -> np.ndarray:
    """Coil noise covariance ``Ψ = n nᴴ / samples`` of noise-only samples.

    Parameters
    ----------
    noise
        complex ``(coils, samples)``, samples of all noise acquisitions side by side.

    Returns
    -------
    numpy.ndarray
        complex128 ``(coils, coils)``, Hermitian; per-sample variances on the diagonal.
    """
    x = np.asarray(noise)
    if x.ndim != 2 or not np.iscomplexobj(x):
        raise MrfreconError(f"noise: expected complex (coils, samples), got {x.dtype} {x.shape}")
    if x.shape[1] < x.shape[0]:
        raise MrfreconError(f"noise: {x.shape[1]} samples for {x.shape[0]} coils: at least as many samples as "
                            f"coils are needed for a covariance")
    if not np.isfinite(x).all():
        raise MrfreconError("noise: contains NaN or infinite samples")
    gram = np.zeros((x.shape[0], x.shape[0]), np.complex128)
    for a in range(0, x.shape[1], _CHUNK):
        b = x[:, a:a + _CHUNK].astype(np.complex128)
        gram += b @ b.conj().T
    gram /= x.shape[1]
    return (gram + gram.conj().T) / 2


def prewhitening_matrix(covariance: np.ndarray) -> np.ndarray:
    """``W = L⁻¹`` with ``Ψ = L Lᴴ`` (Cholesky), so that ``W Ψ Wᴴ = I``.

    Parameters
    ----------
    covariance
        Hermitian positive definite ``(coils, coils)`` noise covariance.

    Returns
    -------
    numpy.ndarray
        complex128 ``(coils, coils)``, lower triangular: whitened data ``W @ x`` for ``x``
        ``(coils, samples)``.
    """
    from scipy.linalg import solve_triangular

    psi = np.asarray(covariance, np.complex128)
    if psi.ndim != 2 or psi.shape[0] != psi.shape[1]:
        raise MrfreconError(f"covariance: expected a square (coils, coils) matrix, got shape {psi.shape}")
    if not np.isfinite(psi).all():
        raise MrfreconError("covariance: contains NaN or infinite values")
    d = np.real(np.diag(psi))
    if (d <= 0).any():
        raise MrfreconError(f"covariance: channel {int(np.flatnonzero(d <= 0)[0])} has no noise (variance "
                            f"{d.min():g}): a dead or disconnected channel")
    try:
        low = np.linalg.cholesky(psi)
    except np.linalg.LinAlgError:
        raise MrfreconError("covariance: not positive definite (channels are linear combinations of each other: "
                            "copied or combined channels)") from None
    return solve_triangular(low, np.eye(psi.shape[0], dtype=np.complex128), lower=True)


def dwell_time_scale(acquisition_dwell_us: float, noise_dwell_us: float) -> float:
    """``√(t_a / t_n)``: the factor that gives the prewhitened data unit noise variance per sample
    when the noise was sampled with dwell ``t_n`` and the data with ``t_a`` (µs, ISMRMRD
    ``sample_time_us``; noise variance ∝ bandwidth ∝ 1/dwell). 1 when either is unknown (≤ 0)."""
    ta, tn = float(acquisition_dwell_us), float(noise_dwell_us)
    if not (np.isfinite(ta) and np.isfinite(tn)) or ta <= 0 or tn <= 0:
        return 1.0
    return float(np.sqrt(ta / tn))


def coil_gram(data: np.ndarray) -> np.ndarray:
    """Gram matrix ``X Xᴴ`` of coil data ``(coils, ...)`` (every trailing axis is samples),
    accumulated in complex128 over blocks of samples.

    Returns
    -------
    numpy.ndarray
        complex128 ``(coils, coils)``, Hermitian.
    """
    x = np.asarray(data)
    if x.ndim < 2 or not np.iscomplexobj(x):
        raise MrfreconError(f"data: expected complex (coils, samples...), got {x.dtype} {x.shape}")
    x = x.reshape(x.shape[0], -1)
    gram = np.zeros((x.shape[0], x.shape[0]), np.complex128)
    for a in range(0, x.shape[1], _CHUNK):
        b = x[:, a:a + _CHUNK]
        gram += (b @ b.conj().T).astype(np.complex128)
    return (gram + gram.conj().T) / 2


def noise_edge(eigenvalues: np.ndarray, samples: int, noise_variance: float | None = None) -> float:
    """Upper edge of the noise-only eigenvalues of a coil Gram matrix (module docstring).

    ``σ²·samples·(1 + r)²`` with ``r = 2·√(coils / samples)`` — twice the Marchenko-Pastur value
    for independent samples, because the receiver's anti-aliasing filter correlates neighbouring
    samples of an oversampled readout. ``σ²·samples`` is taken from the smallest eigenvalue as the
    lower edge, ``λ_min / (1 − r)²`` (the smallest component of an array of many coils is noise; of
    a small array whose every component carries signal it overestimates the edge, dropping
    components that hold little signal), and not above ``noise_variance · samples`` when the
    per-sample noise variance is known (whitened data: 1).

    Parameters
    ----------
    eigenvalues
        ``(coils,)`` of ``X Xᴴ`` (squared singular values), any order.
    samples
        Samples per coil in ``X``.
    noise_variance
        Per-sample noise variance when known, else None.
    """
    lam = np.asarray(eigenvalues, np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.isfinite(lam).all():
        raise MrfreconError(f"eigenvalues: expected a non-empty finite 1-D array, got shape {lam.shape}")
    if samples < 1:
        raise MrfreconError(f"samples: expected ≥ 1, got {samples}")
    r = min(2.0 * np.sqrt(lam.size / samples), 0.5)
    level = max(float(lam.min()), 0.0) / (1.0 - r) ** 2
    if noise_variance is not None:
        level = min(level, float(noise_variance) * samples)
    return level * (1.0 + r) ** 2


def choose_virtual_coils(singular_values: np.ndarray, energy: float = AUTO_ENERGY, noise_power: float | None = None) -> int:
    """Smallest ``K`` with ``Σᵢ≤ₖ (sᵢ² − p)₊ ≥ energy · Σᵢ (sᵢ² − p)₊`` (module docstring).

    Parameters
    ----------
    singular_values
        ``(coils,)`` descending, of the coil data ``(coils, samples)``.
    energy
        Fraction of the signal energy to keep, in (0, 1].
    noise_power
        ``p``: the squared singular value of a noise-only component (samples × per-sample noise
        variance); None takes the smallest ``sᵢ²``.
    """
    s = np.asarray(singular_values, np.float64)
    if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all() or (s < 0).any():
        raise MrfreconError(f"singular_values: expected a non-empty 1-D array of non-negative values, got {s!r}")
    if isinstance(energy, bool) or not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise MrfreconError(f"energy: expected a fraction in (0, 1], got {energy!r}")
    lam = s ** 2
    p = float(lam.min()) if noise_power is None else float(noise_power)
    sig = np.clip(lam - p, 0.0, None)
    total = np.cumsum(sig)
    if total[-1] <= 0:
        return 1
    return int(min(s.size, np.searchsorted(total / total[-1], energy - 1e-12) + 1))


@dataclass(frozen=True)
class CoilCompression:
    """Virtual coils of one slice.

    Attributes
    ----------
    matrix
        complex128 ``(virtual, coils)``: virtual-coil data ``matrix @ x`` for (whitened) coil data
        ``x`` ``(coils, samples)``; orthonormal rows (the leading left singular vectors, conjugated).
    singular_values
        float64 ``(coils,)``, descending: those of the coil data.
    noise_power
        The noise energy of one component that the signal energy is counted above.
    """

    matrix: np.ndarray
    singular_values: np.ndarray
    noise_power: float = 0.0

    @property
    def virtual_coils(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def energy(self) -> float:
        """Fraction of the data's energy ``Σᵢ≤ₖ sᵢ² / Σ sᵢ²`` that the virtual coils keep."""
        e = self.singular_values ** 2
        return float(e[: self.virtual_coils].sum() / e.sum()) if e.sum() > 0 else 1.0

    @property
    def signal_energy(self) -> float:
        """Fraction of the signal energy ``Σᵢ≤ₖ (sᵢ² − p)₊ / Σ (sᵢ² − p)₊`` kept."""
        e = np.clip(self.singular_values ** 2 - self.noise_power, 0.0, None)
        return float(e[: self.virtual_coils].sum() / e.sum()) if e.sum() > 0 else 1.0


def coil_compression(gram: np.ndarray, virtual_coils: int | None = None, *, energy: float = AUTO_ENERGY,
                     noise_power: float | None = None) -> CoilCompression:
    """SVD coil compression from the Gram matrix ``X Xᴴ`` of the coil data (:func:`coil_gram`).

    Parameters
    ----------
    gram
        Hermitian ``(coils, coils)``, of whitened data when there is a noise measurement.
    virtual_coils
        Number of virtual coils ``K`` (1 … coils); None chooses it by ``energy``
        (:func:`choose_virtual_coils`).
    energy, noise_power
        Signal-energy fraction of the automatic choice and the noise floor it is counted above
        (None: the smallest eigenvalue).

    Returns
    -------
    CoilCompression
        ``matrix = Uₖᴴ`` with ``U`` the eigenvectors of ``gram`` by descending eigenvalue, i.e. the
        left singular vectors of ``X``; singular values ``√λ``. Each vector's phase is fixed so
        that its largest component is real and positive (the SVD leaves it free).
    """
    g = np.asarray(gram, np.complex128)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or not np.isfinite(g).all():
        raise MrfreconError(f"gram: expected a finite square (coils, coils) matrix, got shape {g.shape}")
    lam, vec = np.linalg.eigh((g + g.conj().T) / 2)
    lam, vec = np.clip(lam[::-1], 0.0, None), vec[:, ::-1]
    s = np.sqrt(lam)
    n = g.shape[0]
    p = float(lam.min()) if noise_power is None else float(noise_power)
    if virtual_coils is None:
        k = choose_virtual_coils(s, energy, p)
    else:
        if isinstance(virtual_coils, bool) or not isinstance(virtual_coils, (int, np.integer)) or not 1 <= virtual_coils <= n:
            raise MrfreconError(f"virtual_coils: expected an integer 1 … {n} (the number of coils), got {virtual_coils!r}")
        k = int(virtual_coils)
    u = vec[:, :k]
    big = np.abs(u).argmax(axis=0)
    ph = u[big, np.arange(k)]
    u = u * (np.abs(ph) / np.where(ph == 0, 1, ph))[None]
    return CoilCompression(np.ascontiguousarray(u.conj().T), s, p)


def apply_coil_matrix(kspace: np.ndarray, matrices: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """``y_s = A_s x_s`` for every slice: coil data ``(slices, coils, ...)`` through per-slice
    matrices ``(slices, out, coils)`` (or one ``(out, coils)`` for all slices).

    ``inplace`` (square matrices, C-contiguous complex64 data) overwrites ``kspace`` block by
    block instead of allocating the result: prewhitening 24 coils of a paper-size scan would
    otherwise hold a second 0.9 GiB copy.

    Returns
    -------
    numpy.ndarray
        complex64 ``(slices, out, ...)`` (``kspace`` itself when ``inplace``).
    """
    k = np.asarray(kspace)
    a = np.asarray(matrices)
    if k.ndim < 3 or not np.iscomplexobj(k):
        raise MrfreconError(f"kspace: expected complex (slices, coils, ...), got {k.dtype} {k.shape}")
    if a.ndim == 2:
        a = np.broadcast_to(a, (k.shape[0], *a.shape))
    if a.ndim != 3 or a.shape[0] != k.shape[0] or a.shape[2] != k.shape[1]:
        raise MrfreconError(f"matrices: shape {a.shape} does not fit k-space {k.shape} (slices, out, coils)")
    if inplace and not (a.shape[1] == a.shape[2] and k.dtype == np.complex64 and k.flags.c_contiguous
                        and k.flags.writeable):
        raise MrfreconError("inplace: needs square matrices and writable C-contiguous complex64 k-space")
    out = k if inplace else np.empty((k.shape[0], a.shape[1], *k.shape[2:]), np.complex64)
    for s in range(k.shape[0]):
        x = k[s].reshape(k.shape[1], -1)
        y = out[s].reshape(a.shape[1], -1)  # views: out is C-contiguous
        m = a[s].astype(np.complex64)
        for c0 in range(0, x.shape[1], _CHUNK):
            y[:, c0:c0 + _CHUNK] = m @ x[:, c0:c0 + _CHUNK]  # the product is a temporary: safe in place
    return out
