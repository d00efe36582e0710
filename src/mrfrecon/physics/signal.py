"""Signal model of inversion-prepared spoiled FLASH MRF for water and multi-peak fat.

Physics (ideal spoiling, so only the longitudinal magnetization carries over between pulses):

* the inversion is perfect and non-selective: ``Mz → −Mz`` (not scaled by B1);
* between events ``Mz`` relaxes towards 1 (per unit proton density):
  ``Mz(t) = 1 + (Mz(0) − 1)·exp(−t/T1)``;
* pulse ``n`` with nominal flip angle ``α_n`` tips ``B1·α_n``: the transverse magnetization
  ``Mz·sin(B1·α_n)`` is read at ``TE_n`` and then destroyed; ``Mz → Mz·cos(B1·α_n)``;
* at the echo the component has decayed by ``exp(−TE_n/T2)`` and precessed by
  ``exp(i·2π·Δf·TE_n)``; fat additionally carries its multi-peak phasor
  ``Σ_p a_p exp(i·2π·f_p·TE_n)`` (:mod:`mrfrecon.physics.fat`);
* the excitation phase φ sets the global phase ``exp(i(φ − 90°))``: with the MRF-WF's 90°, the
  on-resonance water signal is real and positive;
* a frame is the mean of the complex echo signals of its ``spokes_per_frame`` spokes.

The voxel signal is ``PD·[(1 − FF)·water(T1H2O, B1, Δf) + FF·fat(T1fat, B1, Δf)]``, linear in
the two component amplitudes (Marty & Carlier, MRM 2020).

Everything runs in PyTorch, vectorized over atoms, on the GPU when there is one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np
import torch

from ..errors import MrfreconError
from ..runtime import default_device, parallel_map, split_range, thread_policy
from ..sequence import Sequence
from .fat import DEFAULT_FAT, T2_FAT_MS, T2_WATER_MS, FatModel

__all__ = ["simulate", "simulate_projected", "component_atoms", "longitudinal_amplitudes", "species_phasors"]


#: voxels below which simulation runs on one thread without sampling the load (threads cannot pay off)
_SMALL = 2048


def longitudinal_amplitudes(sequence: Sequence, t1_ms: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
    """Transverse amplitude ``Mz·sin(B1·α_n)`` right after each pulse of the last repetition.

    Parameters
    ----------
    sequence
        The sequence to play.
    t1_ms, b1
        1-D tensors of shape ``(n,)``: longitudinal relaxation time (ms) and flip-angle scale.
        Their device and dtype set those of the computation.

    Returns
    -------
    torch.Tensor
        Real tensor ``(n, spokes)``, per unit proton density, before T2 decay and phase.
    """
    dev, dt = t1_ms.device, t1_ms.dtype
    # a schedule has few distinct (flip angle, TR) pairs (MRF-WF: 3): the transcendental
    # functions are evaluated once per pair and voxel, not per spoke
    pairs, which = np.unique(np.stack([sequence.flip_angle_deg, sequence.tr_ms], 1), axis=0, return_inverse=True)
    which = which.reshape(-1)
    alpha = torch.tensor(np.deg2rad(pairs[:, 0]), device=dev, dtype=dt)
    tr = torch.tensor(pairs[:, 1], device=dev, dtype=dt)
    angle = alpha[:, None] * b1[None, :]  # (pairs, n)
    e_ti = torch.exp(-sequence.ti_ms / t1_ms)
    e_rec = torch.exp(-sequence.recovery_ms / t1_ms)
    # Mz_{k+1} = cos(a_k)·E1_k·Mz_k + (1 − E1_k): an affine recursion
    if bool((torch.abs(angle) < math.pi / 2).all()):
        before = _runs_closed_form(sequence, which, angle, tr, t1_ms, e_ti, e_rec)
    else:
        before = _spoke_by_spoke(sequence, which, angle, tr, t1_ms, e_ti, e_rec)
    return (before * torch.sin(angle)[torch.as_tensor(which, device=dev)]).T


def _runs_closed_form(sequence: Sequence, which: np.ndarray, angle: torch.Tensor, tr: torch.Tensor,
                      t1_ms: torch.Tensor, e_ti: torch.Tensor, e_rec: torch.Tensor) -> torch.Tensor:
    """Mz before each pulse of the last repetition, (spokes, n), a run of equal pulses at a time.

    Within a run of L pulses with the same gain g = cos(a)·E1 and offset o = 1 − E1 the affine
    recursion has the closed form Mz_k = g^k·Mz_0 + o·(1 − g^k)/(1 − g), k = 0 … L − 1. The
    powers and the geometric sum are taken through log g = log1p(−2 sin²(a/2)) − TR/T1 with
    expm1, which keeps them accurate in float32 for g near 1 (small flip angles, long T1), where
    1 − g^k would cancel. Needs |a| < 90° (g > 0). Why: the spoke-by-spoke loop dispatches ~2
    tiny torch operations per spoke (5,600 for MRF-WF), which holds the GIL and kept
    ``simulate``'s worker threads from using a second core (benchmarks/bench_threads.py)."""
    dev, dt = t1_ms.device, t1_ms.dtype
    log_g = torch.log1p(-2.0 * torch.sin(angle / 2) ** 2) - tr[:, None] / t1_ms[None, :]  # (pairs, n), < 0
    offset = -torch.expm1(-tr[:, None] / t1_ms[None, :])  # 1 − E1
    edges = np.flatnonzero(np.diff(which)) + 1
    starts = np.concatenate([[0], edges]).tolist()
    stops = np.concatenate([edges, [which.size]]).tolist()
    before = torch.empty((sequence.spokes, t1_ms.numel()), device=dev, dtype=dt)
    mz = torch.ones_like(t1_ms)

    def geometric(lg: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # g^k and (1 − g^k)/(1 − g) (→ k as log g → 0), broadcast over k and the voxels
        em, klg = torch.expm1(lg), k * lg
        s = torch.where(em == 0, k, torch.expm1(klg) / torch.where(em == 0, 1.0, em))
        return torch.exp(klg), s

    for rep in range(sequence.repetitions):
        if sequence.inversion:
            mz = -mz
        mz = 1.0 + (mz - 1.0) * e_ti
        last = rep == sequence.repetitions - 1
        for a, b in zip(starts, stops, strict=True):
            r = int(which[a])
            lg, o = log_g[r], offset[r]
            if last:
                k = torch.arange(b - a, device=dev, dtype=dt)[:, None]
                gk, sk = geometric(lg[None, :], k)
                before[a:b] = gk * mz + o * sk
            gl, sl = geometric(lg, torch.tensor(float(b - a), device=dev, dtype=dt))
            mz = gl * mz + o * sl
        if not last:
            mz = 1.0 + (mz - 1.0) * e_rec
    return before


def _spoke_by_spoke(sequence: Sequence, which: np.ndarray, angle: torch.Tensor, tr: torch.Tensor,
                    t1_ms: torch.Tensor, e_ti: torch.Tensor, e_rec: torch.Tensor) -> torch.Tensor:
    """The recursion one pulse at a time (any flip angle): Mz before each pulse of the last
    repetition, (spokes, n)."""
    e1 = torch.exp(-tr[:, None] / t1_ms[None, :])
    gain = torch.cos(angle) * e1
    offset = 1.0 - e1
    mz = torch.ones_like(t1_ms)
    before = torch.empty((sequence.spokes, t1_ms.numel()), device=t1_ms.device, dtype=t1_ms.dtype)
    rows = which.tolist()
    for rep in range(sequence.repetitions):
        if sequence.inversion:
            mz = -mz
        mz = 1.0 + (mz - 1.0) * e_ti
        last = rep == sequence.repetitions - 1
        for k, r in enumerate(rows):
            if last:
                before[k] = mz
            mz = torch.addcmul(offset[r], gain[r], mz)
        if not last:
            mz = 1.0 + (mz - 1.0) * e_rec
    return before


def species_phasors(
    sequence: Sequence,
    df_hz: torch.Tensor,
    species: str,
    *,
    t2_ms: float | None = None,
    fat: FatModel = DEFAULT_FAT,
) -> torch.Tensor:
    """Per-spoke complex factor of a species at its echo: decay, off-resonance and spectrum.

    Parameters
    ----------
    df_hz
        Off-resonance, 1-D ``(m,)`` in Hz (real dtype; the result is its complex counterpart).
    species
        ``"water"`` or ``"fat"``.
    t2_ms
        T2 of the species (ms); defaults to 40 ms for water and 80 ms for fat.

    Returns
    -------
    torch.Tensor
        Complex tensor ``(m, spokes)``: ``exp(i(φ−90°))·exp(−TE/T2)·spectrum(TE)·exp(i2πΔf·TE)``.
    """
    if species not in ("water", "fat"):
        raise ValueError(f"species must be 'water' or 'fat', got {species!r}")
    if t2_ms is None:
        t2_ms = T2_WATER_MS if species == "water" else T2_FAT_MS
    te = sequence.te_ms
    static = np.exp(-te / t2_ms) * np.exp(1j * np.deg2rad(sequence.excitation_phase_deg - 90.0))
    if species == "fat":
        static = static * fat.phasor(te)
    cdt = torch.complex128 if df_hz.dtype == torch.float64 else torch.complex64
    static_t = torch.as_tensor(static, device=df_hz.device, dtype=cdt)
    te_s = torch.as_tensor(te * 1e-3, device=df_hz.device, dtype=df_hz.dtype)
    phase = (2.0 * math.pi) * df_hz[:, None] * te_s[None, :]
    return static_t[None, :] * torch.polar(torch.ones_like(phase), phase)


def _frames_outer(sequence: Sequence, amp: torch.Tensor, ph: torch.Tensor) -> torch.Tensor:
    """Frames of every (amplitude row, phasor row) pair: ``(a, spokes) × (m, spokes) → (a, m, frames)``."""
    f, k = sequence.frames, sequence.spokes_per_frame
    a3 = amp.reshape(amp.shape[0], f, k)
    re = torch.einsum("afk,mfk->amf", a3, ph.real.reshape(ph.shape[0], f, k).contiguous())
    im = torch.einsum("afk,mfk->amf", a3, ph.imag.reshape(ph.shape[0], f, k).contiguous())
    return torch.complex(re, im) / k


def component_atoms(
    sequence: Sequence,
    t1_ms: np.ndarray,
    b1: np.ndarray,
    df_hz: np.ndarray,
    species: str,
    *,
    t2_ms: float | None = None,
    fat: FatModel = DEFAULT_FAT,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Fingerprints of one species on a full grid, computed once per (T1, B1) and then per Δf.

    Parameters
    ----------
    t1_ms, b1, df_hz
        1-D grids (ms, a.u., Hz).
    species
        ``"water"`` or ``"fat"``.

    Returns
    -------
    torch.Tensor
        complex64 ``(len(b1), len(df_hz), len(t1_ms), frames)`` on ``device``, per unit PD.
    """
    dev = default_device(device)
    t1 = torch.as_tensor(np.asarray(t1_ms, dtype=np.float32), device=dev)
    b = torch.as_tensor(np.asarray(b1, dtype=np.float32), device=dev)
    d = torch.as_tensor(np.asarray(df_hz, dtype=np.float32), device=dev)
    nb, nt = b.numel(), t1.numel()
    # every (B1, T1) combination, B1 major
    amp = longitudinal_amplitudes(sequence, t1.repeat(nb), b.repeat_interleave(nt))  # (nb*nt, S)
    ph = species_phasors(sequence, d, species, t2_ms=t2_ms, fat=fat)  # (nd, S)
    out = _frames_outer(sequence, amp, ph)  # (nb*nt, nd, F)
    return out.reshape(nb, nt, d.numel(), sequence.frames).permute(0, 2, 1, 3).contiguous()


def _check_range(name: str, arr: np.ndarray, lo: float, hi: float, lo_open: bool, unit: str) -> None:
    if not np.isfinite(arr).all():
        raise MrfreconError(f"{name}: contains NaN or infinite values")
    bad = (arr <= lo) if lo_open else (arr < lo)
    bad |= arr > hi
    if bad.any():
        v = arr[bad].flat[0]
        rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise MrfreconError(f"{name}: value {v} {unit}outside the physical range {rng}")


def simulate(
    sequence: Sequence,
    t1h2o: float | np.ndarray,
    t1fat: float | np.ndarray = 350.0,
    b1: float | np.ndarray = 1.0,
    df: float | np.ndarray = 0.0,
    ff: float | np.ndarray = 0.0,
    pd: float | np.ndarray = 1.0,
    *,
    t2h2o: float = T2_WATER_MS,
    t2fat: float = T2_FAT_MS,
    fat: FatModel = DEFAULT_FAT,
    device: str | torch.device | None = None,
    chunk: int = 8192,
    progress: Callable[[int], None] | None = None,
    per_spoke: bool = False,
) -> np.ndarray:
    """Simulate MRF fingerprints of water–fat voxels.

    ``PD·[(1 − FF)·water(T1H2O, B1, Δf) + FF·fat(T1fat, B1, Δf)]`` for the sequence's last
    repetition, frames as spoke means (see the module docstring for the physics).

    Parameters
    ----------
    sequence
        The MRF sequence, e.g. ``Sequence.mrf_wf()``.
    t1h2o, t1fat
        Water and fat T1 in ms (> 0).
    b1
        Transmit field efficacy (flip-angle scale, > 0).
    df
        Off-resonance in Hz, applied to both species.
    ff
        Fat fraction in [0, 1].
    pd
        Proton density (≥ 0), a plain scale.
    t2h2o, t2fat
        T2 of water and fat in ms (defaults 40 and 80 ms, Marty & Carlier 2020).
    fat
        The fat spectrum (six peaks at 3 T by default).
    device
        Torch device; CUDA when available by default.
    chunk
        Voxels per batch (bounds memory to about ``chunk × spokes × 24`` bytes).
    progress
        Called with the number of voxels finished after each batch.
    per_spoke
        Return the echo signal of every spoke ``(..., spokes)`` instead of the frame means
        (the acquisition simulates k-space spoke by spoke from it).

    Returns
    -------
    numpy.ndarray
        complex64 of shape ``broadcast(t1h2o, …, pd).shape + (frames,)`` (or ``+ (spokes,)``).
    """
    arrs = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (t1h2o, t1fat, b1, df, ff, pd)))
    shape = arrs[0].shape
    # contiguous copies: torch cannot wrap arrays with negative strides (e.g. x[::-1])
    t1w, t1f, b1a, dfa, ffa, pda = (np.ascontiguousarray(a.reshape(-1)) for a in arrs)
    _check_range("t1h2o", t1w, 0.0, math.inf, True, "ms ")
    _check_range("t1fat", t1f, 0.0, math.inf, True, "ms ")
    _check_range("b1", b1a, 0.0, math.inf, True, "")
    _check_range("ff", ffa, 0.0, 1.0, False, "")
    _check_range("pd", pda, 0.0, math.inf, False, "")
    if not np.isfinite(dfa).all():
        raise MrfreconError("df: contains NaN or infinite values")
    for name, t2 in (("t2h2o", t2h2o), ("t2fat", t2fat)):
        if not (t2 > 0 and math.isfinite(t2)):
            raise MrfreconError(f"{name}: must be a positive number of ms, got {t2}")
    dev = default_device(device)
    n = t1w.size
    f, k = sequence.frames, sequence.spokes_per_frame
    if per_spoke:
        f, k = sequence.spokes, 1
    out = np.empty((n, f), dtype=np.complex64)
    lock, done = threading.Lock(), [0]

    def one(sl: slice) -> None:
        tb1 = torch.as_tensor(b1a[sl], device=dev, dtype=torch.float32)
        tdf = torch.as_tensor(dfa[sl], device=dev, dtype=torch.float32)
        tff = torch.as_tensor(ffa[sl], device=dev, dtype=torch.float32)
        acc = torch.zeros((sl.stop - sl.start, f), device=dev, dtype=torch.complex64)
        for species, t1, weight, t2 in (("water", t1w, 1.0 - tff, t2h2o), ("fat", t1f, tff, t2fat)):
            if not bool((weight > 0).any()):
                continue
            amp = longitudinal_amplitudes(sequence, torch.as_tensor(t1[sl], device=dev, dtype=torch.float32), tb1)
            ph = species_phasors(sequence, tdf, species, t2_ms=t2, fat=fat)
            sig = (amp * ph).reshape(-1, f, k).mean(-1)
            acc += weight[:, None] * sig
        acc *= torch.as_tensor(pda[sl], device=dev, dtype=torch.float32)[:, None]
        out[sl] = acc.cpu().numpy()
        if progress is not None:
            with lock:
                done[0] += sl.stop - sl.start
                progress(done[0])

    with torch.no_grad(), thread_policy(small=n < _SMALL, split=True) as workers:
        w = workers if dev.type == "cpu" else 1
        parallel_map(one, split_range(n, chunk, w), w)
    return out.reshape(*shape, f)


def simulate_projected(
    sequence: Sequence,
    projector: np.ndarray,
    t1h2o: np.ndarray,
    t1fat: np.ndarray,
    b1: np.ndarray,
    df: np.ndarray,
    ff: np.ndarray,
    pd: np.ndarray,
    *,
    t2h2o: float = T2_WATER_MS,
    t2fat: float = T2_FAT_MS,
    fat: FatModel = DEFAULT_FAT,
    device: str | torch.device | None = None,
    chunk: int = 8192,
) -> np.ndarray:
    """``simulate(..., per_spoke=True) @ projector`` without forming the per-spoke signals.

    The off-resonance phase ``exp(i2πΔf·TE)`` takes one value per distinct echo time, so the
    projection splits into one real-by-complex matrix product per echo time and species:
    ``Σ_TE exp(i2πΔf·TE)·(amplitudes @ P_TE)``, with ``P_TE`` the projector rows of the spokes
    with that TE times their static phasor. For MRF-WF (3 echo times) this is about 5× less work
    and memory traffic than projecting the complex ``(voxels, spokes)`` signals.

    Parameters
    ----------
    projector
        complex ``(spokes, K)``.
    t1h2o, t1fat, b1, df, ff, pd
        1-D arrays ``(n,)`` (ms, ms, a.u., Hz, fraction, a.u.), already validated.

    Returns
    -------
    numpy.ndarray
        complex64 ``(n, K)``.
    """
    dev = default_device(device)
    proj = torch.as_tensor(np.asarray(projector, np.complex64), device=dev)
    tes, inverse = np.unique(sequence.te_ms, return_inverse=True)
    zero = torch.zeros(1, device=dev)
    blocks = {}
    for species, t2 in (("water", t2h2o), ("fat", t2fat)):
        static = species_phasors(sequence, zero, species, t2_ms=t2, fat=fat)[0]  # (S,), Δf = 0
        rows = static[:, None] * proj  # (S, K)
        # one (S, K) block per echo time, zero elsewhere, side by side: (S, n_te·K)
        blocks[species] = torch.cat([rows * torch.as_tensor(inverse == u, device=dev)[:, None] for u in range(tes.size)], 1)
    te_s = torch.as_tensor(tes * 1e-3, device=dev, dtype=torch.float32)
    n, k = len(t1h2o), proj.shape[1]
    out = np.empty((n, k), dtype=np.complex64)

    def one(sl: slice) -> None:
        tb1 = torch.as_tensor(np.asarray(b1[sl], np.float32), device=dev)
        tdf = torch.as_tensor(np.asarray(df[sl], np.float32), device=dev)
        tff = torch.as_tensor(np.asarray(ff[sl], np.float32), device=dev)
        phase = torch.polar(torch.ones(tdf.numel(), tes.size, device=dev), (2.0 * math.pi) * tdf[:, None] * te_s[None, :])
        acc = torch.zeros((tdf.numel(), k), device=dev, dtype=torch.complex64)
        for species, t1, weight in (("water", t1h2o, 1.0 - tff), ("fat", t1fat, tff)):
            if not bool((weight > 0).any()):
                continue
            amp = longitudinal_amplitudes(sequence, torch.as_tensor(np.asarray(t1[sl], np.float32), device=dev), tb1)
            blk = blocks[species]
            per_te = torch.complex(amp @ blk.real, amp @ blk.imag).view(-1, tes.size, k)  # (m, n_te, K)
            acc += weight[:, None] * (phase[:, :, None] * per_te).sum(1)
        acc *= torch.as_tensor(np.asarray(pd[sl], np.float32), device=dev)[:, None]
        out[sl] = acc.cpu().numpy()

    with torch.no_grad(), thread_policy(small=n < _SMALL, split=True) as workers:
        w = workers if dev.type == "cpu" else 1
        parallel_map(one, split_range(n, chunk, w), w)
    return out
