"""Matching's uncertainty: the Cramér–Rao bound of the two-component model at the matched parameters.

Model (Marty & Carlier, MRM 2020; :mod:`mrfrecon.physics.signal`): a voxel's fingerprint is
``s = PD·e^{iφ}·[(1 − FF)·w(T1H2O, B1, Δf) + FF·f(T1fat, B1, Δf)] + n`` with complex Gaussian
noise ``n`` of SD ``σ`` per frame (``E|n_t|² = σ²``, real and imaginary parts each ``σ²/2``).
With the real parameters ``θ = (T1H2O, FF, B1, Δf, T1fat, PD, φ, ψ)`` and the Jacobian
``J = ∂s/∂θ`` (frames × 8, complex), the Fisher information is ``F = (2/σ²)·Re(JᴴJ)`` and the
Cramér–Rao bound on any unbiased estimator's covariance is ``F⁻¹`` (for MRF: Zhao et al.,
"Optimal experiment design for magnetic resonance fingerprinting: Cramér–Rao bound meets spin
dynamics", IEEE TMI 38:844–861, 2019). ``ψ`` is the phase of the fat component relative to the
water's (0 at the estimate): matching chooses its atom pair with two free complex amplitudes
(:mod:`mrfrecon.matching`), so its T1s, B1 and Δf carry the uncertainty of that fit. Measured
against Monte-Carlo noise draws (tests/test_uncertainty.py), the bound without ψ was 4–25 %
below matching's SD, with it within ±11 %.

Two additions make it a usable error bar for every voxel:

* **A weak prior.** Where a parameter does not reach the data (T1fat when FF → 0, T1H2O when
  FF → 1, everything when PD → 0) ``F`` is singular and the plain bound infinite. The bound used
  is the Bayesian (van Trees) form ``(F + Λ)⁻¹`` with ``Λ`` the precision of a Gaussian of the
  SD of a uniform guess over the dictionary's range (``span/√12``; FF ``1/√12``; φ ``π/√3``);
  see Gill & Levit, "Applications of the van Trees inequality: a Bayesian Cramér–Rao bound",
  Bernoulli 1:59–79, 1995. Where the data determine a parameter, ``Λ`` changes nothing; where
  they do not, the SD is that of the guess and the voxel is flagged :data:`UNDETERMINED`.
  Every SD is finite by construction.
* **The grid.** Matched T1H2O, T1fat, B1 and Δf lie on the dictionary grid, so their error also
  holds the rounding to the grid: a uniform error of variance ``step²/12`` per grid axis,
  carried into the other parameters by the same linearization (fixing one parameter off its
  optimum by δ moves the others, re-fitted, by ``−F_oo⁻¹F_ok·δ``).

The Jacobian is the signal model's: per distinct (T1, B1, Δf) of a species, the longitudinal
amplitudes at the value and at ``T1 (1 ± 10⁻⁴)``, ``B1 (1 ± 10⁻⁴)`` (central differences, float64,
vectorized in torch) and the off-resonance derivative in closed form (``∂/∂Δf`` of
``exp(i2πΔf·TE)`` is ``i2π·TE`` times the signal); the FF, PD and φ columns are closed forms too.
Matching works on the dictionary's compressed frames; the bound uses all frames. When the series
lies in a smaller temporal subspace (KWIC + CS-TV keeps rank 8 of 175), the Jacobian projected on
it gave the same SDs to < 1 % on the study preset's scans (docs/UNCERTAINTY.md), so all frames
are used; the subspace's rank sets the residual's degrees of freedom (:func:`temporal_rank`).

The noise level: :func:`noise_from_residual` (per voxel, the default: it holds the
reconstruction's artefacts as well as the noise), :func:`noise_from_background`, or given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from ..dictionary import Dictionary
from ..errors import MrfreconError
from ..physics import longitudinal_amplitudes, species_phasors
from ..runtime import thread_policy

__all__ = ["CONTRADICTED", "GRID_PARAMS", "NOT_ESTIMATED", "PARAMS", "SD_MAPS", "UNDETERMINED", "component_columns",
           "crb_sd", "gram_matrices", "noise_from_background", "noise_from_residual", "pair_residual", "pool_noise", "prior_sd",
           "temporal_rank"]

#: the real parameters, in the order of the Fisher matrix: the model's seven and the fat component's
#: phase relative to water's, which matching fits too (its two complex amplitudes)
PARAMS = ("t1h2o", "ff", "b1", "df", "t1fat", "pd", "phase", "fat_phase")
_NP = len(PARAMS)
#: maps that get an SD (same names and units as the maps: ms, fraction, a.u., Hz, ms, a.u.)
SD_MAPS = ("t1h2o", "ff", "b1", "df", "t1fat", "pd")
#: parameters that matching takes from the dictionary grid
GRID_PARAMS = ("t1h2o", "b1", "df", "t1fat")
_GRID_AXIS = {"t1h2o": "t1h2o_ms", "b1": "b1", "df": "df_hz", "t1fat": "t1fat_ms"}

#: flag bits (uint8) beside every SD map
UNDETERMINED = 1  # the data barely constrain the parameter: SD ≥ half the SD of a uniform guess over the grid
CONTRADICTED = 2  # a network's maps: the measured series contradicts them (data consistency)
NOT_ESTIMATED = 4  # no estimate (a fingerprint that was not matched): SD is the uniform guess's

#: relative step of the central differences in T1 and B1 (float64: truncation ~1e-8, rounding ~1e-12)
_REL_STEP = 1e-4
#: voxels per block of the Gram and inversion work (bounds memory to ~ block × 8 × frames × 16 B)
_BLOCK = 2048


def prior_sd(dictionary: Dictionary) -> dict[str, float]:
    """SD of a uniform guess over the dictionary's range per parameter (``span/√12``; FF
    ``1/√12``; phase ``π/√3`` rad; PD none). Units of the maps."""
    g = dictionary.grid
    out = {k: float(np.ptp(getattr(g, _GRID_AXIS[k]))) / math.sqrt(12.0) for k in GRID_PARAMS}
    # a single-valued axis: the data cannot move the parameter; a small SD keeps the algebra regular
    for k, ax in _GRID_AXIS.items():
        if out[k] == 0.0:
            out[k] = 1e-6 * max(1.0, abs(float(getattr(g, ax)[0])))
    out["ff"] = 1.0 / math.sqrt(12.0)
    out["phase"] = math.pi / math.sqrt(3.0)
    return out


def _grid_step(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Local spacing of a sorted grid axis at ``values`` (the mean of the two neighbouring steps)."""
    if axis.size < 2:
        return np.zeros_like(values, dtype=np.float64)
    steps = np.diff(axis)
    local = np.empty(axis.size)
    local[0], local[-1] = steps[0], steps[-1]
    local[1:-1] = 0.5 * (steps[:-1] + steps[1:])
    i = np.clip(np.searchsorted(axis, values), 0, axis.size - 1)
    i0 = np.clip(i - 1, 0, axis.size - 1)
    nearest = np.where(np.abs(axis[i0] - values) < np.abs(axis[i] - values), i0, i)
    return local[nearest]


def _nearest(axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest value of a sorted axis for each of ``values``."""
    v = np.asarray(values, np.float64).reshape(-1)
    i = np.clip(np.searchsorted(axis, v), 0, axis.size - 1)
    i0 = np.clip(i - 1, 0, axis.size - 1)
    return np.where(np.abs(axis[i0] - v) <= np.abs(axis[i] - v), i0, i)


def _frame_constant_te(dictionary: Dictionary) -> bool:
    """True when every frame's spokes share one TE (MRF-WF): a frame is then its phasor times the
    mean of its spokes' amplitudes, and the Gram matrix of a voxel does not depend on Δf."""
    seq = dictionary.sequence
    te = np.asarray(seq.te_ms).reshape(seq.frames, seq.spokes_per_frame)
    return bool((te == te[:, :1]).all())


def _spoke_amplitudes(dictionary: Dictionary, t1_ms: np.ndarray, b1: np.ndarray, device: torch.device,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Longitudinal amplitudes per spoke and their derivatives by T1 (per ms) and B1 (central
    differences): ``(m, 3, spokes)`` for the pairs ``(t1_ms[i], b1[i])``, float64 results. In
    float64 the step is 1e-4 relative; in float32 (the grid's table: half the time) 1e-3, whose
    truncation (~1e-7) and rounding (~1e-4 relative) errors move an SD by far less than 0.1 %."""
    seq = dictionary.sequence
    t1 = torch.as_tensor(np.asarray(t1_ms, np.float64).reshape(-1), device=device, dtype=dtype)
    b = torch.as_tensor(np.asarray(b1, np.float64).reshape(-1), device=device, dtype=dtype)
    step = _REL_STEP if dtype == torch.float64 else 1e-3
    ht, hb = step * t1, step * b
    return torch.stack([
        longitudinal_amplitudes(seq, t1, b),
        (longitudinal_amplitudes(seq, t1 + ht, b) - longitudinal_amplitudes(seq, t1 - ht, b)) / (2 * ht[:, None]),
        (longitudinal_amplitudes(seq, t1, b + hb) - longitudinal_amplitudes(seq, t1, b - hb)) / (2 * hb[:, None]),
    ], 1).to(torch.float64)


def component_columns(dictionary: Dictionary, species: str, t1_ms: np.ndarray, b1: np.ndarray, df_hz: np.ndarray,
                      device: torch.device | None = None) -> torch.Tensor:
    """One species' fingerprint and its derivatives per unit PD, for each (T1, B1, Δf), spoke by spoke.

    Parameters
    ----------
    species
        ``"water"`` or ``"fat"`` (T2 and fat spectrum from the dictionary).
    t1_ms, b1, df_hz
        1-D float arrays ``(m,)``: T1 in ms, flip-angle scale, off-resonance in Hz.

    Returns
    -------
    torch.Tensor
        complex128 ``(m, 4, frames)``: the frames of ``x``, ``∂x/∂T1`` (per ms), ``∂x/∂B1`` and
        ``∂x/∂Δf`` (per Hz).
    """
    dev = device or torch.device("cpu")
    seq = dictionary.sequence
    t2 = dictionary.t2h2o_ms if species == "water" else dictionary.t2fat_ms
    f, k = seq.frames, seq.spokes_per_frame
    t1_ms, b1, df_hz = (np.asarray(a, np.float64).reshape(-1) for a in (t1_ms, b1, df_hz))
    te = torch.as_tensor(2.0 * math.pi * seq.te_ms * 1e-3, device=dev, dtype=torch.float64)
    cols = torch.empty((t1_ms.size, 4, f), dtype=torch.complex128, device=dev)
    for a in range(0, t1_ms.size, 256):
        sl = slice(a, a + 256)
        am = _spoke_amplitudes(dictionary, t1_ms[sl], b1[sl], dev)
        pp = species_phasors(seq, torch.as_tensor(df_hz[sl], device=dev), species, t2_ms=t2, fat=dictionary.fat_model)[:, None, :]
        c = torch.cat([am * pp, am[:, :1] * pp * (1j * te)], 1)
        cols[sl] = c.reshape(c.shape[0], 4, f, k).mean(-1)
    return cols


def _amplitude_frames(dictionary: Dictionary, species: str, t1_ms: np.ndarray, b1: np.ndarray,
                      device: torch.device) -> torch.Tensor:
    """Frame means of :func:`_spoke_amplitudes`, float64 ``(m, 3, frames)``. Pairs on the
    dictionary grid come from a table of the whole grid, computed once per dictionary and device
    (a folder of scans, a calibration: every scan after the first reuses it)."""
    seq = dictionary.sequence
    g = dictionary.grid
    t1_axis = g.t1h2o_ms if species == "water" else g.t1fat_ms
    t1_ms, b1 = np.asarray(t1_ms, np.float64), np.asarray(b1, np.float64)
    it, ib = _nearest(t1_axis, t1_ms), _nearest(g.b1, b1)
    # matched maps hold grid values rounded to float32: the same atoms
    if np.allclose(t1_axis[it], t1_ms, rtol=1e-6, atol=0) and np.allclose(g.b1[ib], b1, rtol=1e-6, atol=0):
        key = f"uncertainty:amplitudes:{species}:{device}"
        if key not in dictionary._cache:
            tt, bb = np.meshgrid(t1_axis, g.b1, indexing="ij")
            amps = _spoke_amplitudes(dictionary, tt.ravel(), bb.ravel(), device, torch.float32)
            dictionary._cache[key] = amps.reshape(amps.shape[0], 3, seq.frames, seq.spokes_per_frame).mean(-1)
        table = dictionary._cache[key]
        return table[torch.as_tensor(it * g.b1.size + ib, device=device)]
    amps = _spoke_amplitudes(dictionary, t1_ms, b1, device)
    return amps.reshape(amps.shape[0], 3, seq.frames, seq.spokes_per_frame).mean(-1)


def gram_matrices(dictionary: Dictionary, t1h2o: np.ndarray, t1fat: np.ndarray, b1: np.ndarray, df: np.ndarray,
                  device: torch.device | None = None) -> torch.Tensor:
    """Gram matrices ``G = UᴴU`` of ``U = [w, ∂w/∂T1, ∂w/∂B1, ∂w/∂Δf, f, ∂f/∂T1, ∂f/∂B1, ∂f/∂Δf]``
    over all frames.

    Parameters
    ----------
    t1h2o, t1fat, b1, df
        1-D ``(m,)`` (ms, ms, a.u., Hz).

    Returns
    -------
    torch.Tensor
        complex128 ``(m, 8, 8)``, ``G_ab = Σ_t conj(U_a,t)·U_b,t``.
    """
    dev = device or torch.device("cpu")
    if not _frame_constant_te(dictionary):
        U = torch.cat([component_columns(dictionary, "water", t1h2o, b1, df, dev),
                       component_columns(dictionary, "fat", t1fat, b1, df, dev)], 1)
        return U.conj() @ U.transpose(1, 2)
    seq = dictionary.sequence
    f, k = seq.frames, seq.spokes_per_frame
    tau = torch.as_tensor(2.0 * math.pi * seq.te_ms.reshape(f, k)[:, 0] * 1e-3, device=dev, dtype=torch.float64)
    g = dictionary.grid
    near = [_nearest(ax, v) for ax, v in ((g.t1h2o_ms, t1h2o), (g.t1fat_ms, t1fat), (g.b1, b1))]
    if all(np.allclose(ax[i], np.asarray(v, np.float64).reshape(-1), rtol=1e-6, atol=0)
           for ax, v, i in zip((g.t1h2o_ms, g.t1fat_ms, g.b1), (t1h2o, t1fat, b1), near, strict=True)):
        # matched maps: every atom pair of the grid tabulated once per dictionary, then gathered
        Gww, Gff, Gwf = _grid_grams(dictionary, tau, dev)
        iw, jf, ib = (torch.as_tensor(i, device=dev) for i in near)
        G = torch.empty((iw.numel(), 8, 8), dtype=torch.complex128, device=dev)
        G[:, :4, :4], G[:, 4:, 4:] = Gww[ib, iw], Gff[ib, jf]
        cross = Gwf[ib, iw, jf]
        G[:, :4, 4:], G[:, 4:, :4] = cross, cross.conj().transpose(1, 2)
        return G
    # each frame has one TE, so a frame is its phasor times the mean of its spokes' amplitudes:
    # amplitudes per distinct (T1, B1), and the shared Δf phase cancels in UᴴU
    amp, which = [], []
    for sp, t1 in (("water", t1h2o), ("fat", t1fat)):
        u, inv = np.unique(np.stack([np.asarray(t1, np.float64), np.asarray(b1, np.float64)], 1), axis=0, return_inverse=True)
        amp.append(_amplitude_frames(dictionary, sp, u[:, 0], u[:, 1], dev))
        which.append(torch.as_tensor(inv.reshape(-1), device=dev))
    return _gram_full(dictionary, amp, which, tau, dev)


def _kernels(dictionary: Dictionary, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame kernels of the Gram blocks: ``|S_w|²``, ``|S_f|²``, ``conj(S_w)·S_f`` (the species'
    static phasors at Δf = 0), and the phase ``conj(e_c)·e_d`` (4 × 4) of the columns."""
    seq = dictionary.sequence
    f, k = seq.frames, seq.spokes_per_frame
    zero = torch.zeros(1, dtype=torch.float64, device=device)
    sw, sf = (species_phasors(seq, zero, sp, t2_ms=t2, fat=dictionary.fat_model)[0].reshape(f, k)[:, 0]
              for sp, t2 in (("water", dictionary.t2h2o_ms), ("fat", dictionary.t2fat_ms)))
    # e = (1, 1, 1, i): the ∂/∂Δf column is i·2πTE times the signal (2πTE goes with the amplitudes)
    e = torch.tensor([1, 1, 1, 1j], dtype=torch.complex128, device=device)
    return sw.conj() * sw, sf.conj() * sf, sw.conj() * sf, e.conj()[:, None] * e[None, :]


def _grid_grams(dictionary: Dictionary, tau: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Gram blocks of every atom pair of the dictionary's grid (cached): water–water
    ``(nb, ni, 4, 4)``, fat–fat ``(nb, nj, 4, 4)`` and water–fat ``(nb, ni, nj, 4, 4)``, complex128.
    One real matrix product per B1 value and kernel part (15 × 2 on the clinical grid)."""
    key = f"uncertainty:grams:{device}"
    if key in dictionary._cache:
        return dictionary._cache[key]
    g = dictionary.grid
    kw, kf, kx, phase = _kernels(dictionary, device)
    X = []
    for sp, axis in (("water", g.t1h2o_ms), ("fat", g.t1fat_ms)):
        tt, bb = np.meshgrid(axis, g.b1, indexing="ij")
        A = _amplitude_frames(dictionary, sp, tt.ravel(), bb.ravel(), device)  # (nt·nb, 3, F), T1 major
        A = A.reshape(axis.size, g.b1.size, 3, -1).transpose(0, 1)  # (nb, nt, 3, F)
        X.append(torch.cat([A, A[:, :, :1] * tau], 2))  # (nb, nt, 4, F) real

    def own(x: torch.Tensor, kern: torch.Tensor) -> torch.Tensor:
        return torch.complex((x * kern.real) @ x.transpose(-1, -2), (x * kern.imag) @ x.transpose(-1, -2)) * phase

    nb, ni, nj, nf = X[0].shape[0], X[0].shape[1], X[1].shape[1], X[0].shape[-1]
    cross = torch.empty((nb, ni, nj, 4, 4), dtype=torch.complex128, device=device)
    for b in range(nb):
        xw, xf = X[0][b].reshape(ni * 4, nf), X[1][b].reshape(nj * 4, nf)
        c = torch.complex((xw * kx.real) @ xf.T, (xw * kx.imag) @ xf.T).reshape(ni, 4, nj, 4)
        cross[b] = c.permute(0, 2, 1, 3) * phase
    dictionary._cache[key] = (own(X[0], kw), own(X[1], kf), cross)
    return dictionary._cache[key]


def _gram_full(dictionary: Dictionary, amp: list[torch.Tensor], which: list[torch.Tensor], tau: torch.Tensor,
               device: torch.device) -> torch.Tensor:
    """:func:`gram_matrices` over all frames, one TE per frame. The shared phase exp(i2πΔf·TE)
    cancels in UᴴU, and a column is ``a(t)·S(t)·e(t)`` with real amplitudes ``a``, the species'
    static phasor ``S`` and ``e = 1`` (or ``i2πTE`` for ∂/∂Δf): every block is a real product
    ``Σ_t a_c(t)·a_d(t)·K(t)`` times ``conj(e_c)·e_d``, done as real matrix products."""
    kw, kf, kern, phase = _kernels(dictionary, device)
    X = [torch.cat([A, A[:, :1] * tau], 1) for A in amp]  # (u, 4, F) real

    def block(xa: torch.Tensor, xb: torch.Tensor, kern: torch.Tensor) -> torch.Tensor:
        re = (xa * kern.real) @ xb.transpose(1, 2)
        im = (xa * kern.imag) @ xb.transpose(1, 2)
        return torch.complex(re, im) * phase

    own = [block(x, kx, ker) for x, kx, ker in ((X[0], X[0], kw), (X[1], X[1], kf))]  # per distinct (T1, B1)
    m = which[0].numel()
    G = torch.empty((m, 8, 8), dtype=torch.complex128, device=device)
    for a in range(0, m, 4 * _BLOCK):
        iw, jf = which[0][a:a + 4 * _BLOCK], which[1][a:a + 4 * _BLOCK]
        cross = block(X[0][iw], X[1][jf], kern)
        G[a:a + 4 * _BLOCK, :4, :4] = own[0][iw]
        G[a:a + 4 * _BLOCK, 4:, 4:] = own[1][jf]
        G[a:a + 4 * _BLOCK, :4, 4:] = cross
        G[a:a + 4 * _BLOCK, 4:, :4] = cross.conj().transpose(1, 2)
    return G


def temporal_rank(fingerprints: np.ndarray, *, rel_tol: float = 1e-4, sample: int = 1024, seed: int = 0) -> int:
    """Number of temporal dimensions the data occupy (all frames unless a reconstruction confined them).

    A frame-by-frame reconstruction (KWIC) leaves noise in every frame; a subspace
    reconstruction (KWIC + CS-TV, low-rank methods) confines the whole series, noise included,
    to ``r`` temporal dimensions (8 of 175 for the study preset's CS-TV). The residual then has
    ``r``, not ``frames``, complex dimensions (:func:`noise_from_residual`). Counted from the
    singular values of up to ``sample`` fingerprints: those above ``rel_tol`` × the largest
    (float32 data outside a subspace sit near 1e-7 of it, noise at any usable SNR far above 1e-4).

    Parameters
    ----------
    fingerprints
        complex ``(n, frames)``, finite.

    Returns
    -------
    int
        ``r``; all frames when there are too few fingerprints to tell (fewer than 2 × frames).
    """
    x = np.asarray(fingerprints)
    n, f = x.shape
    if n < 2 * f:
        return f
    if n > sample:
        x = x[np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))]
    x = x.astype(np.complex128)
    # squared singular values: the eigenvalues of the frames' Gram matrix (cheaper than an SVD)
    ev = np.linalg.eigvalsh(x.conj().T @ x)[::-1]
    return int((ev > rel_tol**2 * ev[0]).sum()) if ev[0] > 0 else f


def noise_from_background(series: np.ndarray, foreground: np.ndarray, *, margin: int = 2, min_voxels: int = 64,
                          sample: int = 262_144, seed: int = 0) -> float:
    """Noise SD per frame (complex, ``E|n|² = σ²``) from the background of an image series.

    Robust: the median absolute deviation of the real and imaginary parts of every background
    sample, × 1.4826 (the MAD of a Gaussian; Hampel, JASA 69:383–393, 1974), so that the few
    voxels a streak or a ghost lights up do not set the level. Background: voxels more than
    ``margin`` voxels (in-plane) from the foreground (a random ``sample`` of its values).

    Parameters
    ----------
    series
        complex ``(slices, frames, y, x)``.
    foreground
        bool ``(slices, y, x)``.

    Raises
    ------
    MrfreconError
        When fewer than ``min_voxels`` background voxels remain (no background: give σ instead).
    """
    from scipy.ndimage import binary_dilation

    fg = np.asarray(foreground, bool)
    near = binary_dilation(fg, structure=np.ones((1, 3, 3), bool), iterations=margin) if margin > 0 else fg
    bg = ~near
    count = int(bg.sum())
    if count < min_voxels:
        raise MrfreconError(f"noise level: cannot be estimated from the background: {count} voxel(s) lie more than "
                            f"{margin} voxels outside the foreground (at least {min_voxels} needed); give the noise SD")
    vals = np.moveaxis(np.asarray(series), 1, -1)[bg].reshape(-1)  # every frame of every background voxel
    if vals.size > sample:  # a median of 2.6e5 samples is within ~0.3 % of the whole's
        vals = vals[np.random.default_rng(seed).choice(vals.size, sample, replace=False)]
    if not np.isfinite(vals).all():
        raise MrfreconError("noise level: the background holds NaN or infinite values")
    sd2 = 0.0
    for part in (vals.real, vals.imag):
        med = np.median(part)
        sd2 += (1.4826 * np.median(np.abs(part - med))) ** 2
    sigma = math.sqrt(sd2)
    if not sigma > 0:
        raise MrfreconError("noise level: the background is exactly constant (no noise to measure); give the noise SD")
    return sigma


def pair_residual(fingerprints: np.ndarray, dictionary: Dictionary, maps: Mapping[str, np.ndarray],
                  chunk: int = 4096) -> np.ndarray:
    """Relative residual ``‖s − ŝ‖/‖s‖`` of the matched atom pair over all frames.

    ``ŝ``: the least-squares fit of the water and fat atoms at the matched (nearest-grid) T1H2O,
    T1fat, B1 and Δf with two free complex amplitudes, the model matching chooses its pair with.
    Unlike matching's own ``residual``, which is computed in the dictionary's compressed
    subspace, nothing of the atoms is left out (a rank-6 basis keeps 99.9 % of their energy: the
    0.1 % left out alone adds ~3 % of the signal to a compressed residual).

    Parameters
    ----------
    fingerprints
        complex ``(n, frames)``.
    maps
        ``t1h2o``, ``t1fat``, ``b1``, ``df``: ``(n,)`` on the dictionary's grid.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``; 1 for a zero or non-finite fingerprint.
    """
    g = dictionary.grid
    x = np.asarray(fingerprints)
    n = x.shape[0]
    near = {k: _nearest(getattr(g, ax), maps[k]) for k, ax in _GRID_AXIS.items()}
    water, fat = (torch.as_tensor(a) for a in (dictionary.water, dictionary.fat))
    out = np.ones(n)
    with torch.no_grad():
        for a in range(0, n, chunk):
            sl = slice(a, a + chunk)
            s = torch.from_numpy(np.array(x[sl], dtype=np.complex64))  # a copy: the input may be read-only (mmap)
            ok = torch.isfinite(torch.view_as_real(s)).flatten(1).all(-1)
            s = torch.where(ok[:, None], s, 0)
            b, d = torch.as_tensor(near["b1"][sl]), torch.as_tensor(near["df"][sl])
            A = torch.stack([water[b, d, torch.as_tensor(near["t1h2o"][sl])],
                             fat[b, d, torch.as_tensor(near["t1fat"][sl])]], 1)  # (m, 2, F)
            # projections and the 2 × 2 Gram in complex64, the solve in double
            p = (A.conj() @ s[:, :, None])[..., 0].to(torch.complex128)  # (m, 2)
            G = (A.conj() @ A.transpose(1, 2)).to(torch.complex128)
            G = G + 1e-12 * G.diagonal(dim1=1, dim2=2).real.sum(-1)[:, None, None] * torch.eye(2)  # parallel atoms
            energy = (p.conj() * torch.linalg.solve(G, p[..., None])[..., 0]).sum(-1).real
            norm2 = s.abs().double().square().sum(-1)
            rel = torch.sqrt((1.0 - energy / torch.where(norm2 > 0, norm2, 1.0)).clamp(0.0, 1.0))
            out[sl] = torch.where(ok & (norm2 > 0), rel, 1.0).numpy()
    return out


def noise_from_residual(fingerprints: np.ndarray, residual: np.ndarray, *, rank: int | None = None,
                        n_params: int = len(PARAMS)) -> np.ndarray:
    """Noise SD per voxel from the relative residual of the matched fit (:func:`pair_residual`).

    ``σ̂² = ‖s − ŝ‖² / (r − p/2)``: the residual's energy over its complex degrees of freedom
    (``r`` temporal dimensions of the data, ``p`` = 8 real parameters fitted). This level holds
    whatever the model does not explain — noise, undersampling artefacts, partial volumes — which
    is what an error bar has to cover.

    Parameters
    ----------
    fingerprints
        complex ``(n, frames)``.
    residual
        ``(n,)`` ‖s − fit‖/‖s‖ (:func:`pair_residual`, or matching's ``residual``, which also counts
        what the dictionary's temporal basis leaves out).
    rank
        ``r``; default all frames.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``.
    """
    x = np.asarray(fingerprints)
    r = x.shape[-1] if rank is None else int(rank)
    dof = max(r - n_params / 2.0, 0.5)
    norm = np.sqrt((np.abs(x.astype(np.complex128)) ** 2).sum(-1))
    return np.asarray(residual, np.float64) * norm / math.sqrt(dof)


def pool_noise(sigma: np.ndarray, foreground: np.ndarray, size: int = 3) -> np.ndarray:
    """Pool a per-voxel noise SD over in-plane neighbours: ``sqrt`` of the mean ``σ²`` over the
    foreground voxels of a ``size × size`` window. With few residual degrees of freedom (4.5
    complex for a rank-8 series) one voxel's ``σ̂`` scatters by ~25 %; the artefact level varies
    slowly in space, so neighbours share it (measured in docs/UNCERTAINTY.md).

    Parameters
    ----------
    sigma
        ``(slices, y, x)``, any value outside the foreground.
    foreground
        bool ``(slices, y, x)``.

    Returns
    -------
    numpy.ndarray
        float64 ``(slices, y, x)``, 0 outside the foreground.
    """
    fg = np.asarray(foreground, bool)
    if size <= 1:
        return np.where(fg, sigma, 0.0)
    v2 = np.where(fg, np.asarray(sigma, np.float64) ** 2, 0.0)
    num, den = _box_sum(v2, size), _box_sum(fg.astype(np.float64), size)
    return np.where(fg, np.sqrt(num / np.maximum(den, 1e-12)), 0.0)


def _box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """In-plane sums over ``size × size`` windows (zero outside), ``a (slices, y, x)``."""
    h = size // 2
    p = np.pad(a, ((0, 0), (h, size - 1 - h), (h, size - 1 - h)))
    ny, nx = a.shape[1:]
    return sum(p[:, i:i + ny, j:j + nx] for i in range(size) for j in range(size))


def _coefficients(ff: torch.Tensor, pd: torch.Tensor) -> torch.Tensor:
    """``C (n, 8, 8)``: the Jacobian's columns (parameters, :data:`PARAMS`) as combinations of
    ``U = [w, ∂w/∂T1, ∂w/∂B1, ∂w/∂Δf, f, ∂f/∂T1, ∂f/∂B1, ∂f/∂Δf]`` (the common phase e^{iφ}
    cancels in JᴴJ; both phases are 0 at the estimate)."""
    n = ff.shape[0]
    a, c = pd * (1 - ff), pd * ff
    C = torch.zeros((n, 8, _NP), dtype=torch.complex128, device=ff.device)
    C[:, 1, 0] = a                      # T1H2O
    C[:, 0, 1], C[:, 4, 1] = -pd, pd    # FF
    C[:, 2, 2], C[:, 6, 2] = a, c       # B1
    C[:, 3, 3], C[:, 7, 3] = a, c       # Δf
    C[:, 5, 4] = c                      # T1fat
    C[:, 0, 5], C[:, 4, 5] = 1 - ff, ff  # PD
    C[:, 0, 6], C[:, 4, 6] = 1j * a, 1j * c  # φ
    C[:, 4, 7] = 1j * c                  # fat phase relative to water (0 at the estimate)
    return C


def crb_sd(
    dictionary: Dictionary,
    maps: Mapping[str, np.ndarray],
    sigma: float | np.ndarray,
    *,
    on_grid: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Per-voxel SD of every parameter from the (van Trees) Cramér–Rao bound at ``maps``.

    Parameters
    ----------
    dictionary
        Gives the sequence, T2s, fat spectrum, the prior ranges and (``on_grid``) the grid steps.
    maps
        1-D arrays ``(n,)``: ``t1h2o`` (ms), ``ff``, ``b1``, ``df`` (Hz), ``t1fat`` (ms), ``pd``;
        optional ``valid`` (bool): voxels without an estimate get the uniform guess's SD and
        :data:`NOT_ESTIMATED`.
    sigma
        Noise SD per frame (complex, ``E|n|² = σ²``), scalar or ``(n,)``, in the units of the
        fingerprints (and so of PD).
    on_grid
        Add the rounding to the dictionary grid (matching's maps) or not (continuous estimates).

    Returns
    -------
    dict
        ``sd_<map>`` float32 ``(n,)`` for :data:`SD_MAPS` (units of the maps) and
        ``flag_<map>`` uint8 ``(n,)`` (:data:`UNDETERMINED`, :data:`NOT_ESTIMATED`).
    """
    from ..runtime import default_device

    dev = default_device(device) if device is not None else torch.device("cpu")
    p = {k: np.asarray(maps[k], np.float64).reshape(-1) for k in ("t1h2o", "ff", "b1", "df", "t1fat", "pd")}
    n = p["t1h2o"].size
    valid = np.asarray(maps.get("valid", np.ones(n, bool)), bool).reshape(-1)
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (n,)).copy()
    if not np.isfinite(sig[valid]).all() or (sig[valid] < 0).any():
        raise MrfreconError("sigma: the noise SD must be finite and ≥ 0")
    for k, v in p.items():
        if not np.isfinite(v[valid]).all():
            raise MrfreconError(f"maps/{k}: contains NaN or infinite values")
    # parameters where the signal model is defined (matching's zero maps of invalid voxels are not)
    ok = valid & (p["t1h2o"] > 0) & (p["t1fat"] > 0) & (p["b1"] > 0) & (p["pd"] > 0)
    prior = prior_sd(dictionary)
    out = {f"sd_{k}": np.zeros(n, np.float32) for k in SD_MAPS}
    flags = {f"flag_{k}": np.zeros(n, np.uint8) for k in SD_MAPS}
    idx = np.flatnonzero(ok)
    sd_all = np.zeros((idx.size, _NP))
    if idx.size:
        # JᴴJ depends on the atoms only through their Gram matrix G (8 × 8), and G on (T1H2O,
        # T1fat, B1) alone when each frame has one TE (the shared Δf phase cancels): matched
        # maps repeat grid values, so each distinct atom pair is computed once
        keys = [p["t1h2o"][idx], p["t1fat"][idx], p["b1"][idx]]
        if not _frame_constant_te(dictionary):
            keys.append(p["df"][idx])
        uk, inv = np.unique(np.stack(keys, 1), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        udf = uk[:, 3] if uk.shape[1] == 4 else np.zeros(uk.shape[0])
        scale = np.array([prior["t1h2o"], prior["ff"], prior["b1"], prior["df"], prior["t1fat"], 1.0, prior["phase"], prior["phase"]])
        with torch.no_grad(), thread_policy(small=idx.size < 4096):
            G = gram_matrices(dictionary, uk[:, 0], uk[:, 1], uk[:, 2], udf, dev)
            for a in range(0, idx.size, 8 * _BLOCK):
                sl = slice(a, a + 8 * _BLOCK)
                sd_all[sl] = _block_sd(G[torch.as_tensor(inv[sl], device=dev)], p, idx[sl], sig[idx[sl]], scale,
                                       dictionary if on_grid else None, dev)
    for k in SD_MAPS:
        j = PARAMS.index(k)
        v = np.full(n, prior.get(k, 0.0))
        v[idx] = sd_all[:, j]
        out[f"sd_{k}"][:] = v
        if k in prior:
            flags[f"flag_{k}"][idx] = np.where(sd_all[:, j] >= 0.5 * prior[k], UNDETERMINED, 0)
        flags[f"flag_{k}"][~ok] = NOT_ESTIMATED
    # PD without an estimate: no scale to guess from; keep 0 with the flag
    out["sd_pd"][~ok] = 0.0
    return {**out, **flags}


def _block_sd(G: torch.Tensor, p: dict[str, np.ndarray], sel: np.ndarray, sigma: np.ndarray, scale: np.ndarray,
              dictionary: Dictionary | None, dev: torch.device) -> np.ndarray:
    """SDs ``(m, 8)`` of a block of voxels from the Gram matrices ``G (m, 8, 8)`` of their atoms."""
    ff = torch.as_tensor(p["ff"][sel], device=dev)
    pd = torch.as_tensor(p["pd"][sel], device=dev)
    C = _coefficients(ff, pd)
    JhJ = (C.conj().transpose(1, 2) @ G @ C).real  # (m, 8, 8)
    s = torch.as_tensor(sigma, device=dev, dtype=torch.float64)
    # a noiseless voxel has an infinitely sharp likelihood: bound σ away from 0 relative to its signal
    sig_floor = 1e-9 * pd.abs() * torch.sqrt(G[:, 0, 0].real.clamp_min(1e-300))
    fisher = 2.0 * JhJ / torch.maximum(s, sig_floor).square()[:, None, None]
    # scaled parameters θ/scale (PD by its own value) keep the 8 × 8 algebra well conditioned
    d = torch.as_tensor(scale, device=dev).repeat(pd.shape[0], 1)
    d[:, 5] = pd.abs().clamp_min(1e-30)
    fs = fisher * d[:, :, None] * d[:, None, :]
    lam = torch.ones(_NP, dtype=torch.float64, device=dev)
    lam[5] = 1e-12  # no prior on PD: the data always determine it (its column never vanishes)
    cov = torch.linalg.inv(fs + torch.diag(lam))  # scaled posterior covariance Σ
    var = torch.diagonal(cov, dim1=1, dim2=2).clone()
    if dictionary is not None:
        var += _grid_rounding(dictionary, p, sel, cov, fs, dev)
    return (var.clamp_min(0).sqrt() * d).cpu().numpy()


def _grid_rounding(dictionary: Dictionary, p: dict[str, np.ndarray], sel: np.ndarray, cov: torch.Tensor,
                   fs: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Variance ``(m, 8)`` (scaled units) added by rounding T1H2O, B1, Δf and T1fat to the grid.

    Rounding parameter k by δ (uniform, variance step²/12) moves the others, re-fitted, by
    ``−P_oo⁻¹·F_ok·δ`` (``P`` the posterior precision, ``F`` the data's information), with
    ``P_oo⁻¹ = Σ_oo − Σ_ok·Σ_koᵀ/Σ_kk`` from the posterior covariance ``Σ = P⁻¹`` (no solve)."""
    g = dictionary.grid
    m = cov.shape[0]
    var = torch.zeros((m, _NP), dtype=torch.float64, device=dev)
    prior = prior_sd(dictionary)
    for k in GRID_PARAMS:
        j = PARAMS.index(k)
        step = _grid_step(getattr(g, _GRID_AXIS[k]), p[k][sel]) / prior[k]  # scaled units
        q = torch.as_tensor(step**2 / 12.0, device=dev)
        sk = cov[:, :, j]  # (m, 8)
        f_k = fs[:, :, j].clone()
        f_k[:, j] = 0.0
        # (Σ − Σ_k Σ_kᵀ/Σ_kk) f, restricted to the other parameters
        shift = -((cov @ f_k[..., None])[..., 0] - sk * (sk * f_k).sum(-1, keepdim=True) / sk[:, j:j + 1])
        shift[:, j] = 1.0
        var += q[:, None] * shift.square()
    return var
