"""Dictionary matching of water–fat MRF fingerprints.

Model (Marty & Carlier, MRM 2020): a voxel's fingerprint is ``s ≈ a_w·w(T1H2O, B1, Δf) +
a_f·f(T1fat, B1, Δf)``. For a water atom ``w`` and a fat atom ``f`` of the same (B1, Δf), the
least-squares amplitudes explain the energy of the projection of ``s`` onto ``span{w, f}``;
matching picks the pair that explains the most. Everything happens in the dictionary's
compressed temporal subspace (McGivney et al., IEEE TMI 2014).

With unit-norm atoms, ``c = wᴴf``, ``p_w = wᴴs`` and ``p_f = fᴴs``, that energy is::

    E = |p_w|² + |p_f − c̄·p_w|² / (1 − |c|²)  =  |wᴴs|² + |qᴴs|²,   q = (f − c·w)/√(1 − |c|²)

(``q`` is ``f`` orthogonalized against ``w``). The second form turns the search into a matrix
multiply with precomputed pair vectors; the first is cheap when ``p_w`` and ``p_f`` are at hand.

Methods
-------
``"exhaustive"``
    every (B1, Δf) and every water/fat atom pair (495,000 pairs per voxel on the clinical grid).
``"fast"`` (default)
    coarse-to-fine: the pairs on a grid subsampled along each axis (a real matrix multiply, then
    ``|·|²`` and an argmax in cache-sized voxel blocks), then every T1 pair of the 3 × 3 (B1, Δf)
    groups around the best coarse pair, re-centred while the best group lies on the window's
    edge. It agrees with
    ``"exhaustive"`` on ≥ 99 % of voxels (tested; measured in benchmarks/BENCHMARKS.md).
``"gridded-ff"``
    the paper's baseline: single-component matching against atoms ``(1 − FF)·w + FF·f`` on a
    gridded FF (26 values), about 12.9 million atoms on the clinical grid, uncompressed by
    default. Slow by design; for comparisons.

Amplitudes of the chosen pair: by default (``ff_model="common-phase"``) water and fat share one
phase and have real non-negative amplitudes, ``s ≈ e^{iφ}·PD·[(1 − FF)·w + FF·f]``, solved in
closed form (the model of the authors' public code, Stanrenko/mrftools, where FF is a real mixing
fraction); ``ff_model="magnitude"`` uses the magnitudes of the independent complex
least-squares amplitudes, ``FF = |a_f| / (|a_w| + |a_f|)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .dictionary import Dictionary
from .errors import MrfreconError
from .runtime import default_device, parallel_map, split_range, thread_policy

MAP_KEYS = ("t1h2o", "ff", "b1", "df", "t1fat", "pd", "residual")
METHODS = ("fast", "exhaustive", "gridded-ff")

#: coarse strides along (B1, Δf, T1H2O, T1fat) for method "fast"; on the clinical grid the coarse
#: stage sees 8 × 9 × 16 × 3 = 3,456 pairs (of 495,000). The T1 axes can be coarse: the second
#: stage searches them whole; the coarse stage only has to find the right (B1, Δf) neighbourhood.
DEFAULT_STRIDES = (2, 3, 8, 5)


@dataclass
class _Prepared:
    """What depends only on the dictionary (and device): computed once, reused for every chunk."""

    basis_conj: torch.Tensor  # (T, K)
    wn: torch.Tensor  # (nb, nd, ni, K) unit-norm compressed water atoms
    fn: torch.Tensor  # (nb, nd, nj, K) unit-norm compressed fat atoms
    w_norm: torch.Tensor  # (nb, nd, ni) compressed norms of the PD = 1 atoms
    f_norm: torch.Tensor  # (nb, nd, nj)
    c: torch.Tensor  # (nb, nd, ni, nj) wᴴf
    inv: torch.Tensor  # (nb, nd, ni, nj) 1 / (1 − |c|²)


def _prepare(d: Dictionary, device: torch.device) -> _Prepared:
    key = f"prepared:{device}"
    if key in d._cache:
        return d._cache[key]
    basis_conj = torch.as_tensor(d.basis, device=device).conj().resolve_conj()
    w = torch.as_tensor(d.water, device=device) @ basis_conj
    f = torch.as_tensor(d.fat, device=device) @ basis_conj
    w_norm = torch.linalg.vector_norm(w, dim=-1)
    f_norm = torch.linalg.vector_norm(f, dim=-1)
    wn = w / w_norm[..., None].clamp_min(1e-30)
    fn = f / f_norm[..., None].clamp_min(1e-30)
    c = torch.einsum("bdik,bdjk->bdij", wn.conj(), fn)
    # |c| → 1 would make the pair degenerate (water and fat atoms parallel); bound the gain
    inv = 1.0 / (1.0 - c.abs().square()).clamp_min(1e-6)
    prep = _Prepared(basis_conj, wn.contiguous(), fn.contiguous(), w_norm, f_norm, c.contiguous(), inv.contiguous())
    d._cache[key] = prep
    return prep


def _pair_energy(pw: torch.Tensor, pf: torch.Tensor, c: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Explained energy of pairs: ``pw (..., I, 1)``, ``pf (..., 1, J)``, ``c, inv`` broadcastable."""
    r = pf - c.conj() * pw
    return pw.real.square() + pw.imag.square() + (r.real.square() + r.imag.square()) * inv


def _unravel(flat: torch.Tensor, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Like ``torch.unravel_index`` (which imports sympy through torch.fx on first use: 0.5 s)."""
    out = []
    for n in reversed(shape):
        out.append(flat % n)
        flat = flat // n
    return out[::-1]


def _coarse_indices(n: int, stride: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(0, n, stride), n - 1])


def _real_projector(vectors: torch.Tensor) -> torch.Tensor:
    """Real matrices ``(G, 2K, 2, P)`` such that ``[Re s, Im s] @ R[g]`` gives, for the ``P``
    complex vectors ``v`` of group ``g`` (``vectors (G, P, K)``), ``Re(vᴴs)`` then ``Im(vᴴs)``."""
    vr, vi = vectors.real, vectors.imag
    re_rows = torch.cat([vr, vi], dim=-1)  # Re(vᴴs) = vr·sr + vi·si
    im_rows = torch.cat([-vi, vr], dim=-1)  # Im(vᴴs) = vr·si − vi·sr
    return torch.stack([re_rows, im_rows], dim=1).permute(0, 3, 1, 2).contiguous()


class _PairProjector:
    """All atom pairs of a (sub)grid as real matrices, grouped by (B1, Δf).

    For group ``g``, water atom ``i`` and fat atom ``j``, the explained energy is
    ``|w_iᴴs|² + |q_ijᴴs|²`` with ``q_ij`` the fat atom orthogonalized against the water atom:
    the per-voxel work is a real matrix multiply, then ``|·|²`` and an argmax.
    """

    def __init__(self, prep: _Prepared, axes: list[torch.Tensor]):
        cb, cd, ci, cj = axes
        w = prep.wn[cb][:, cd][:, :, ci]  # (B, D, I, K)
        f = prep.fn[cb][:, cd][:, :, cj]  # (B, D, J, K)
        sub = (cb[:, None, None, None], cd[None, :, None, None], ci[None, None, :, None], cj[None, None, None, :])
        c, inv = prep.c[sub], prep.inv[sub]
        q = (f[:, :, None, :, :] - c[..., None] * w[:, :, :, None, :]) * inv.sqrt()[..., None]  # (B, D, I, J, K)
        self.axes = axes
        self.nb, self.nd, self.ni, self.nj = (int(a.numel()) for a in axes)
        k = w.shape[-1]
        # stored as (2K, G, 2, P): selecting groups (index_select on dim 1) gives a contiguous
        # block whose (2K, g·2·P) view is the matrix of the multiply, without another copy
        self.wproj = _real_projector(w.reshape(-1, self.ni, k)).permute(1, 0, 2, 3).contiguous()
        self.qproj = _real_projector(q.reshape(-1, self.ni * self.nj, k)).permute(1, 0, 2, 3).contiguous()

    def energies(self, s_real: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Energies ``(n, len(groups), I, J)`` of the pairs of ``groups`` (all if None) for ``s_real (n, 2K)``."""
        if groups is None:
            wp, qp = self.wproj, self.qproj
        else:
            wp, qp = self.wproj.index_select(1, groups), self.qproj.index_select(1, groups)
        n, g = s_real.shape[0], wp.shape[1]
        ow = (s_real @ wp.view(wp.shape[0], -1)).view(n, g, 2, self.ni)
        oq = (s_real @ qp.view(qp.shape[0], -1)).view(n, g, 2, self.ni * self.nj)
        pw2 = ow[:, :, 0].square() + ow[:, :, 1].square()
        e = oq[:, :, 0].square().addcmul_(oq[:, :, 1], oq[:, :, 1]).view(n, g, self.ni, self.nj)
        return e.add_(pw2[..., None])


def _full_axes(prep: _Prepared) -> list[torch.Tensor]:
    dev = prep.wn.device
    return [torch.arange(n, device=dev) for n in (*prep.wn.shape[:3], prep.fn.shape[2])]


def _argmax_blocks(proj: _PairProjector, s_real: torch.Tensor, groups: torch.Tensor | None, block: int = 32) -> torch.Tensor:
    """Flat argmax of :meth:`_PairProjector.energies` over voxel blocks small enough that the
    energies stay in cache between the multiply and the argmax (the pass over them dominates)."""
    return torch.cat([proj.energies(s_real[k : k + block], groups).flatten(1).argmax(-1) for k in range(0, s_real.shape[0], block)])


def _coarse_best(coarse: _PairProjector, s_real: torch.Tensor) -> torch.Tensor:
    """Stage 1: the best pair of the coarse grid per voxel → fine indices ``(n, 4)``."""
    flat = _argmax_blocks(coarse, s_real, None)
    idx = _unravel(flat, (coarse.nb, coarse.nd, coarse.ni, coarse.nj))
    return torch.stack([ax[k] for ax, k in zip(coarse.axes, idx, strict=True)], dim=-1)


def _refine(full: _PairProjector, s_real: torch.Tensor, seed: torch.Tensor, half: tuple[int, int], max_moves: int = 8) -> torch.Tensor:
    """Stage 2: for every voxel, every (T1H2O, T1fat) pair of the (B1, Δf) groups within ``±half``
    of the coarse optimum ``seed (n, 4)``, re-centred while the best group lies on an inner edge.

    The T1 axes are searched whole because the energy can be nearly flat along them (T1H2O when
    FF → 1, T1fat when FF → 0), where a local search stalls on a ridge. Voxels that share a
    window share one matrix multiply. Returns fine indices ``(n, 4)``.
    """
    dev = s_real.device
    nb, nd = full.nb, full.nd
    hb, hd = min(half[0], (nb - 1) // 2), min(half[1], (nd - 1) // 2)
    lb, ld = 2 * hb + 1, 2 * hd + 1
    offs = (torch.arange(lb, device=dev)[:, None] * nd + torch.arange(ld, device=dev)[None, :]).reshape(-1)
    out = seed.clone()
    todo = torch.arange(s_real.shape[0], device=dev)
    for _ in range(max_moves + 1):
        if todo.numel() == 0:
            break
        cen = out[todo]
        b0 = (cen[:, 0] - hb).clamp(0, nb - lb)
        d0 = (cen[:, 1] - hd).clamp(0, nd - ld)
        windows, inverse = torch.unique(b0 * nd + d0, return_inverse=True)
        new = torch.empty_like(cen)
        for w_id, start in enumerate(windows.tolist()):
            rows = torch.nonzero(inverse == w_id)[:, 0]
            flat = _argmax_blocks(full, s_real[todo[rows]], start + offs)
            g, i, j = _unravel(flat, (lb * ld, full.ni, full.nj))
            new[rows] = torch.stack([start // nd + g // ld, start % nd + g % ld, i, j], dim=-1)
        out[todo] = new
        pb, pd = new[:, 0] - b0, new[:, 1] - d0
        edge = ((pb == 0) & (new[:, 0] > 0)) | ((pb == lb - 1) & (new[:, 0] < nb - 1))
        edge |= ((pd == 0) & (new[:, 1] > 0)) | ((pd == ld - 1) & (new[:, 1] < nd - 1))
        todo = todo[edge & ((new[:, 0] != cen[:, 0]) | (new[:, 1] != cen[:, 1]))]
    return out


def _best_in_group(prep: _Prepared, s: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Re-decide (T1H2O, T1fat) within each voxel's chosen (B1, Δf) group with per-voxel
    elementwise arithmetic, whose result does not depend on how voxels are batched (a matrix
    multiply's may, in the last bits): near-ties are then broken the same way by every method."""
    b, d = idx[:, 0], idx[:, 1]
    pw = (prep.wn[b, d].conj() * s[:, None, :]).sum(-1)  # (n, I)
    pf = (prep.fn[b, d].conj() * s[:, None, :]).sum(-1)  # (n, J)
    e = _pair_energy(pw[:, :, None], pf[:, None, :], prep.c[b, d], prep.inv[b, d])
    flat = e.reshape(e.shape[0], -1).argmax(-1)
    i, j = _unravel(flat, tuple(e.shape[1:]))
    return torch.stack([b, d, i, j], dim=-1)


def _amplitudes(prep: _Prepared, s: torch.Tensor, idx: torch.Tensor, ff_model: str) -> dict[str, torch.Tensor]:
    """Amplitudes, PD, FF and explained energy of the chosen pair ``idx (n, 4)`` for voxels ``s (n, K)``."""
    b, d, i, j = idx.unbind(-1)
    w, f = prep.wn[b, d, i], prep.fn[b, d, j]
    nw, nf = prep.w_norm[b, d, i], prep.f_norm[b, d, j]
    c, inv = prep.c[b, d, i, j], prep.inv[b, d, i, j]
    pw, pf = (w.conj() * s).sum(-1), (f.conj() * s).sum(-1)
    energy = _pair_energy(pw, pf, c, inv)
    if ff_model == "magnitude":
        aw = (pw - c * pf) * inv
        af = (pf - c.conj() * pw) * inv
        x, y = aw.abs() / nw, af.abs() / nf
    else:
        # common phase: s ≈ e^{iφ}(a·ŵ + b·f̂), a, b real. For fixed φ, [a, b] = H⁻¹·Re(e^{-iφ}p) with
        # H = Re(Gram); the explained energy uᵀ(PᵀH⁻¹P)u, u = (cos φ, sin φ), is maximal for the
        # leading eigenvector of the 2×2 matrix M = PᵀH⁻¹P.
        rc = c.real
        det = (1.0 - rc.square()).clamp_min(1e-6)
        P = torch.stack([torch.stack([pw.real, pw.imag], -1), torch.stack([pf.real, pf.imag], -1)], -2)  # (n, 2, 2)
        Hinv = torch.stack([torch.stack([torch.ones_like(rc), -rc], -1), torch.stack([-rc, torch.ones_like(rc)], -1)], -2) / det[:, None, None]
        M = P.mT @ Hinv @ P
        _, evecs = torch.linalg.eigh(M)
        u = evecs[..., -1]  # (n, 2)
        ab = (Hinv @ (P @ u[..., None]))[..., 0]  # (n, 2) amplitudes on unit-norm atoms
        ab = torch.where((ab.sum(-1) < 0)[:, None], -ab, ab)
        # a negative component is outside the model: take the better single component (as mrftools)
        neg = (ab < 0).any(-1)
        water_only = pw.abs() >= pf.abs()
        single = torch.stack([torch.where(water_only, pw.abs(), 0.0), torch.where(water_only, 0.0, pf.abs())], -1)
        ab = torch.where(neg[:, None], single, ab)
        x, y = ab[:, 0] / nw, ab[:, 1] / nf
    pd = x + y
    ff = torch.where(pd > 0, y / pd.clamp_min(1e-30), torch.zeros_like(pd))
    return {"pd": pd, "ff": ff, "energy": energy}


def _exhaustive(prep: _Prepared, s: torch.Tensor) -> torch.Tensor:
    nb, nd, ni, _ = prep.wn.shape
    nj = prep.fn.shape[2]
    pw = torch.einsum("bdik,nk->nbdi", prep.wn.conj(), s)
    pf = torch.einsum("bdjk,nk->nbdj", prep.fn.conj(), s)
    e = _pair_energy(pw[..., None], pf[..., None, :], prep.c, prep.inv)
    flat = e.reshape(s.shape[0], -1).argmax(-1)
    return _best_in_group(prep, s, torch.stack(_unravel(flat, (nb, nd, ni, nj)), dim=-1))


def _gridded_ff(d: Dictionary, s_full: torch.Tensor, ff_values: np.ndarray, compressed: bool, prep: _Prepared):
    """Single-component matching over atoms (1 − FF)·w + FF·f for every (B1, Δf, T1H2O, T1fat, FF)."""
    dev = s_full.device
    if compressed:
        s = s_full @ prep.basis_conj
        water = prep.wn * prep.w_norm[..., None]
        fat = prep.fn * prep.f_norm[..., None]
    else:
        s = s_full
        water = torch.as_tensor(d.water, device=dev)
        fat = torch.as_tensor(d.fat, device=dev)
    nb, nd, ni, _ = water.shape
    nj = fat.shape[2]
    ffv = torch.as_tensor(ff_values, device=dev, dtype=torch.float32)
    n = s.shape[0]
    best = torch.full((n,), -1.0, device=dev)
    best_idx = torch.zeros((n, 5), dtype=torch.long, device=dev)
    best_pd = torch.zeros(n, device=dev)
    for b in range(nb):
        for di in range(nd):
            w, f = water[b, di], fat[b, di]  # (I, T), (J, T)
            atoms = (1 - ffv)[None, None, :, None] * w[:, None, None, :] + ffv[None, None, :, None] * f[None, :, None, :]
            atoms = atoms.reshape(-1, atoms.shape[-1])  # (I*J*F, T)
            norm2 = atoms.real.square().sum(-1) + atoms.imag.square().sum(-1)
            ip = s @ atoms.conj().T  # (n, atoms)
            score = (ip.real.square() + ip.imag.square()) / norm2
            val, arg = score.max(-1)
            better = val > best
            best = torch.where(better, val, best)
            i, j, k = _unravel(arg, (ni, nj, ffv.numel()))
            cand = torch.stack([torch.full_like(i, b), torch.full_like(i, di), i, j, k], -1)
            best_idx = torch.where(better[:, None], cand, best_idx)
            best_pd = torch.where(better, ip.abs().gather(1, arg[:, None])[:, 0] / norm2[arg], best_pd)
    return best_idx, best_pd, best

#: voxels per piece of work on the thread pool are at most 4 × this (a few ms each with the fused
#: kernels: the slowest worker's last piece is all a busy core can delay)
KERNEL_BLOCK = 256


def _kernel_arrays(d: Dictionary, prep: _Prepared, strides: tuple[int, int, int, int]):
    """The fused kernels' arrays of the full grid and of the coarse subgrid (cached per dictionary)."""
    from .pairsearch import GroupArrays

    fkey, ckey = "kernel:full", f"kernel:coarse:{tuple(strides)}"
    if fkey not in d._cache:
        d._cache[fkey] = GroupArrays(prep.wn, prep.fn, prep.c, prep.inv)
    if ckey not in d._cache:
        sizes = (*prep.wn.shape[:3], prep.fn.shape[2])
        cb, cd, ci, cj = (torch.as_tensor(_coarse_indices(n, st), device=prep.wn.device) for n, st in zip(sizes, strides, strict=True))
        sub = (cb[:, None, None, None], cd[None, :, None, None], ci[None, None, :, None], cj[None, None, None, :])
        ga = GroupArrays(prep.wn[cb][:, cd][:, :, ci], prep.fn[cb][:, cd][:, :, cj], prep.c[sub], prep.inv[sub])
        d._cache[ckey] = (*ga.merged(), *(a.cpu().numpy().astype(np.int64) for a in (cb, cd, ci, cj)))
    return d._cache[fkey], d._cache[ckey]


def _kernel_search(kernels: dict, method: str, s: torch.Tensor, full, coarse, prep: _Prepared,
                   strides: tuple[int, int, int, int]) -> torch.Tensor:
    """Fine indices ``(n, 4)`` of the best pair of voxels ``s (n, K)`` by the fused kernels."""
    from . import pairsearch

    nb, nd = prep.wn.shape[:2]
    s2 = torch.stack([s.real, s.imag], 1).cpu().numpy()
    hb, hd = max(1, strides[0] // 2), max(1, strides[1] // 2)
    hb, hd = min(hb, (nb - 1) // 2), min(hd, (nd - 1) // 2)
    if method == "fast":
        idx = pairsearch.fast(kernels, s2, coarse, (nb, nd), (hb, hd), full)
    else:
        out = pairsearch.exhaustive(kernels, s2, full)
        idx = np.stack([out[:, 0] // nd, out[:, 0] % nd, out[:, 1], out[:, 2]], 1)
    return torch.as_tensor(idx, device=s.device)


def match(
    fingerprints: np.ndarray | torch.Tensor,
    dictionary: Dictionary,
    *,
    method: str = "fast",
    ff_model: str = "common-phase",
    strides: tuple[int, int, int, int] = DEFAULT_STRIDES,
    chunk: int | None = None,
    ff_values: np.ndarray | None = None,
    compressed: bool = False,
    device: str | torch.device | None = None,
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Match fingerprints to a water/fat dictionary.

    Parameters
    ----------
    fingerprints
        complex ``(..., frames)``; ``frames`` must equal the dictionary's (real, magnitude-only
        input is refused).
    dictionary
        A :class:`~mrfrecon.dictionary.Dictionary` for the sequence the data were acquired with.
    method
        ``"fast"`` (coarse-to-fine, default), ``"exhaustive"`` (all pairs) or ``"gridded-ff"``
        (the paper's baseline). See the module docstring.
    ff_model
        ``"common-phase"`` (default) or ``"magnitude"``: how FF and PD follow from the pair's fit.
    strides
        Coarse subsampling of (B1, Δf, T1H2O, T1fat) for ``"fast"``.
    chunk
        Voxels per batch. Memory is bounded by the chunk: ``"fast"`` needs about
        about ``chunk × 8 × K`` bytes plus fixed blocks of 32 voxels × the window's pairs
        (≈ 1.5 MB on the clinical grid), i.e. a few tens of MB at the default 4096,
        ``"exhaustive"`` ``chunk × 40 × pairs`` bytes (20 MB per voxel on the clinical grid).
    ff_values, compressed
        FF grid (default ``0, 0.04, …, 1``) and whether to match in the compressed subspace,
        for ``"gridded-ff"`` only.
    device
        Torch device (CUDA when available by default).
    progress
        Called with the number of voxels done after each batch.
    threads
        CPU threads; default :func:`mrfrecon.runtime.auto_threads` (an explicit setting, else the
        cores free at call time). On the CPU, ``"fast"`` and ``"exhaustive"`` run the fused
        C kernels of :mod:`mrfrecon.pairsearch` on that many workers (default: every core, see
        :func:`mrfrecon.runtime.thread_policy`); where the kernel cannot be built, the torch
        code after one warning.

    Returns
    -------
    dict of numpy arrays, each of shape ``(...)``
        ``t1h2o`` (ms), ``ff`` (0-1), ``b1`` (a.u.), ``df`` (Hz), ``t1fat`` (ms), ``pd`` (same scale
        as the simulation's PD), ``residual`` (relative: ‖s − fit‖/‖s‖ of the chosen pair, in the
        full temporal space), and ``valid`` (bool). Fingerprints that are all zero or contain
        NaN/inf are not matched: ``valid`` is False, every map 0 and ``residual`` 1.
    """
    if method not in METHODS:
        raise MrfreconError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if ff_model not in ("common-phase", "magnitude"):
        raise MrfreconError(f"ff_model: expected 'common-phase' or 'magnitude', got {ff_model!r}")
    x = fingerprints.detach().cpu().numpy() if isinstance(fingerprints, torch.Tensor) else np.asarray(fingerprints)
    if x.ndim == 0 or x.shape[-1] != dictionary.frames:
        raise MrfreconError(
            f"fingerprints: expected the last axis to hold the dictionary's {dictionary.frames} frames, got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.complexfloating):
        # magnitude-only data match the complex atoms wrongly, not just noisily (the phase carries Δf and
        # the water-fat shift): a real series measured T1H2O at the grid's floor where complex data gave 1230 ms
        raise MrfreconError(f"fingerprints: expected complex numbers, got dtype {x.dtype}: the dictionary's "
                            "fingerprints are complex and their phase carries the off-resonance and the water–fat "
                            "shift; give the complex series (or magnitude and phase combined)")
    shape = x.shape[:-1]
    flat = x.reshape(-1, dictionary.frames).astype(np.complex64, copy=False)
    dev = default_device(device)
    prep = _prepare(dictionary, dev)
    g = dictionary.grid
    n = flat.shape[0]
    out = {k: np.zeros(n, dtype=np.float32) for k in MAP_KEYS}
    out["residual"][:] = 1.0
    finite = np.isfinite(flat).all(-1)
    norm2 = np.where(finite, (np.abs(np.where(finite[:, None], flat, 0)) ** 2).sum(-1), 0.0)
    valid = finite & (norm2 > 0)
    out["valid"] = valid.copy()
    todo = np.flatnonzero(valid)
    kernels = None
    if dev.type == "cpu" and method in ("fast", "exhaustive"):
        from .pairsearch import kernels as _kernels

        kernels = _kernels()
    if chunk is None:
        chunk = {"fast": 4096, "exhaustive": 8 if kernels is None else 4096, "gridded-ff": 64}[method]
    coarse = full = None
    if kernels is not None:
        full, coarse = _kernel_arrays(dictionary, prep, strides)
    elif method == "fast":
        ckey, fkey = f"coarse:{dev}:{tuple(strides)}", f"pairs:{dev}"
        if ckey not in dictionary._cache:
            sizes = (*prep.wn.shape[:3], prep.fn.shape[2])
            axes = [torch.as_tensor(_coarse_indices(n, st), device=dev) for n, st in zip(sizes, strides, strict=True)]
            dictionary._cache[ckey] = _PairProjector(prep, axes)
        if fkey not in dictionary._cache:
            dictionary._cache[fkey] = _PairProjector(prep, _full_axes(prep))
        coarse, full = dictionary._cache[ckey], dictionary._cache[fkey]
    if ff_values is None:
        ff_values = np.linspace(0.0, 1.0, 26)
    axes = [torch.as_tensor(a, device=dev, dtype=torch.float32) for a in (g.b1, g.df_hz, g.t1h2o_ms, g.t1fat_ms)]
    lock, done = threading.Lock(), [0]

    def one(piece: slice) -> None:
        sel = todo[piece]
        s_full = torch.as_tensor(flat[sel], device=dev)
        s = s_full @ prep.basis_conj  # (m, K) compressed
        e_full = torch.as_tensor(norm2[sel], device=dev, dtype=torch.float32)
        if method == "gridded-ff":
            idx5, pd, energy = _gridded_ff(dictionary, s_full, ff_values, compressed, prep)
            idx = idx5[:, :4]
            res = {"pd": pd, "ff": torch.as_tensor(ff_values, device=dev, dtype=torch.float32)[idx5[:, 4]], "energy": energy}
        else:
            if kernels is not None:
                idx = _kernel_search(kernels, method, s, full, coarse, prep, strides)
            elif method == "fast":
                assert coarse is not None and full is not None
                s_real = torch.cat([s.real, s.imag], 1)
                seed = _coarse_best(coarse, s_real)
                idx = _best_in_group(prep, s, _refine(full, s_real, seed, (max(1, strides[0] // 2), max(1, strides[1] // 2))))
            else:
                idx = _exhaustive(prep, s)
            res = _amplitudes(prep, s, idx, ff_model)
        rel = (1.0 - res["energy"] / e_full).clamp(0.0, 1.0).sqrt()
        vals = {
            "b1": axes[0][idx[:, 0]],
            "df": axes[1][idx[:, 1]],
            "t1h2o": axes[2][idx[:, 2]],
            "t1fat": axes[3][idx[:, 3]],
            "pd": res["pd"],
            "ff": res["ff"].clamp(0.0, 1.0),
            "residual": rel,
        }
        for k, v in vals.items():
            out[k][sel] = v.float().cpu().numpy()
        if progress is not None:
            with lock:
                done[0] += sel.size
                progress(done[0])

    # the fused kernels: independent voxel pieces on workers (no barriers); the torch code is
    # parallel inside its operations and gets the free cores as its threads
    split = kernels is not None
    with torch.no_grad(), thread_policy(threads, small=todo.size < 2 * KERNEL_BLOCK, split=split) as workers:
        w = workers if split else 1
        parallel_map(one, split_range(todo.size, min(chunk, 4 * KERNEL_BLOCK) if w > 1 else chunk, w), w)
    return {k: v.reshape(shape) for k, v in out.items()}


def match_indices_agree(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean array: the two matches chose the same atom pair (equal T1H2O, T1fat, B1, Δf)."""
    return np.logical_and.reduce([np.isclose(a[k], b[k]) for k in ("t1h2o", "t1fat", "b1", "df")])


__all__ = ["DEFAULT_STRIDES", "MAP_KEYS", "METHODS", "match", "match_indices_agree"]
