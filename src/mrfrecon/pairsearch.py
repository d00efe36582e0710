"""Fused pair search of two-component matching: a small C kernel, loaded with ctypes.

For a voxel ``s`` (compressed, ``K`` complex coefficients) and a (B1, Δf) group with unit-norm
water atoms ``w_i`` and fat atoms ``f_j`` (``c_ij = w_iᴴf_j``, ``g_ij = 1 / (1 − |c_ij|²)``), the
explained energy of pair ``(i, j)`` is (see :mod:`mrfrecon.matching`)::

    E_ij = |p_i|² + |q_j − c̄_ij·p_i|²·g_ij,   p_i = w_iᴴs,  q_j = f_jᴴs

The kernel (``_pairsearch.c``) computes a group's ``I + J`` projections (``4·K·(I + J)``
multiply-adds), then its ``I·J`` energies (10 flops each) into a buffer in L1 cache, with their
maximum in the same vectorized loop, keeping the best pair over the groups it visits: no energies
reach memory, which is what bounds the matrix-multiply formulation (``benchmarks/BENCHMARKS.md``).
One compiled instance of the energy loop serves every method, so the fast search and the
exhaustive one compute bit-identical energies and break near-ties alike, however voxels are
batched. ctypes releases the GIL during the call: voxel blocks run on
:func:`mrfrecon.runtime.parallel_map` workers.

Why C: measured on the project's AMD EPYC (AVX-512), the energy loop takes 0.26 ns per pair
compiled by gcc ``-O3 -march=native -ffast-math``, against 1.7 ns with numba (whose ``max``
reduction and multi-array loop did not vectorize) — ``benchmarks/BENCHMARKS.md``.

Build: ``make install`` runs :func:`build` (``python -m mrfrecon.pairsearch``), which compiles the
source with the C compiler (``$CC``, else ``cc``) next to it or, where the package directory is
read-only, into ``$XDG_CACHE_HOME/mrfrecon`` (``~/.cache/mrfrecon``); the file name carries a hash
of the source, flags and CPU, so a changed kernel or another machine rebuilds. When no compiler
is available or the kernel fails its self-test, :func:`kernels` returns None after one warning
and :mod:`mrfrecon.matching` uses its torch implementation (same results up to float32
rounding, 3–10× slower). ``MRFRECON_NO_KERNEL=1`` forces that fallback.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

_LOCK = threading.Lock()
_STATE: dict[str, object] = {}
_SOURCE = Path(__file__).with_name("_pairsearch.c")
_FLAGS = (["-O3", "-march=native", "-ffast-math", "-fPIC", "-shared", "-std=c99"],
          ["-O3", "-ffast-math", "-fPIC", "-shared", "-std=c99"])  # second: compilers without -march=native


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _tag(flags: list[str]) -> str:
    h = hashlib.sha256(_SOURCE.read_bytes())
    for x in (" ".join(flags), _cpu(), platform.machine(), sys.platform):
        h.update(x.encode())
    return h.hexdigest()[:16]


def _dirs() -> list[Path]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mrfrecon"
    return [_SOURCE.parent, cache]


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(verbose: bool = False) -> Path:
    """Compile the kernel (if not already compiled for this source, CPU and flags) and return
    the path of the shared library. Raises RuntimeError when it cannot be built."""
    cc = _compiler()
    errors = []
    for flags in _FLAGS:
        name = f"_pairsearch-{_tag(flags)}.so"
        for d in _dirs():
            if (d / name).exists():
                return d / name
        if cc is None:
            continue
        for d in _dirs():
            try:
                d.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=d)
                os.close(fd)
            except OSError as e:
                errors.append(f"{d}: {e}")
                continue
            cmd = [cc, *flags, str(_SOURCE), "-o", tmp]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0:
                os.replace(tmp, d / name)  # atomic: a concurrent build never sees half a file
                if verbose:
                    print(" ".join(cmd), file=sys.stderr)
                return d / name
            os.unlink(tmp)
            errors.append(f"{' '.join(cmd)}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            break  # the same flags would fail in the other directory too
    raise RuntimeError("no C compiler found (set $CC)" if cc is None else "; ".join(errors))


def _load(path: Path) -> dict:
    lib = ctypes.CDLL(str(path))
    p, i, lo = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.mrf_exhaustive.argtypes = [lo, p, i, lo, i, i] + [p] * 7 + [p]
    lib.mrf_exhaustive.restype = i
    lib.mrf_fast.argtypes = [lo, p, i, lo, lo, i, i, i] + [p] * 4 + [p] * 7 + [i] * 7 + [p] * 7 + [p]
    lib.mrf_fast.restype = i
    return {"lib": lib}


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


class GroupArrays:
    """A (sub)grid's unit-norm atoms and pair terms in the kernels' float32 layout.

    ``wr, wi (G, K, I)``, ``fr, fi (G, K, J)``, ``cr, ci, inv (G, J, I)`` with groups ``G`` in
    (B1, Δf) order, B1 major. Built from :class:`mrfrecon.matching._Prepared` tensors
    ``wn (nb, nd, I, K)``, ``fn (nb, nd, J, K)``, ``c``, ``inv (nb, nd, I, J)``."""

    def __init__(self, wn, fn, c, inv):
        def f32(x):
            return np.ascontiguousarray(x, dtype=np.float32)

        wn, fn, c, inv = (x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in (wn, fn, c, inv))
        g = wn.shape[0] * wn.shape[1]
        w = wn.reshape(g, wn.shape[2], wn.shape[3]).transpose(0, 2, 1)  # (G, K, I)
        f = fn.reshape(g, fn.shape[2], fn.shape[3]).transpose(0, 2, 1)  # (G, K, J)
        cc = c.reshape(g, c.shape[2], c.shape[3]).transpose(0, 2, 1)  # (G, J, I)
        self.wr, self.wi, self.fr, self.fi = f32(w.real), f32(w.imag), f32(f.real), f32(f.imag)
        self.cr, self.ci = f32(cc.real), f32(cc.imag)
        self.inv = f32(inv.reshape(g, inv.shape[2], inv.shape[3]).transpose(0, 2, 1))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.wr, self.wi, self.fr, self.fi, self.cr, self.ci, self.inv

    def merged(self) -> tuple[np.ndarray, ...]:
        """The layout of :func:`_coarse_best`: ``(K, G·I)``, ``(K, G·J)``, ``(J, G·I)`` arrays."""
        g, k, i = self.wr.shape
        j = self.fr.shape[2]

        def atoms(a, n):
            return np.ascontiguousarray(a.transpose(1, 0, 2).reshape(k, g * n))

        def pairs(a):
            return np.ascontiguousarray(a.transpose(1, 0, 2).reshape(j, g * i))

        return (atoms(self.wr, i), atoms(self.wi, i), atoms(self.fr, j), atoms(self.fi, j),
                pairs(self.cr), pairs(self.ci), pairs(self.inv))



def exhaustive(k: dict, s: np.ndarray, full: GroupArrays) -> np.ndarray:
    """Best pair over all groups for voxels ``s`` float32 ``(n, 2, K)`` (re, im) → int64
    ``(n, 3)``: group (B1 major), water index, fat index."""
    s = np.ascontiguousarray(s, dtype=np.float32)
    out = np.zeros((s.shape[0], 3), np.int64)
    g, nk, ni = full.wr.shape
    if k["lib"].mrf_exhaustive(s.shape[0], _ptr(s), nk, g, ni, full.fr.shape[2], *map(_ptr, full.arrays()), _ptr(out)):
        raise MemoryError("fused pair search: out of memory")
    return out


def fast(k: dict, s: np.ndarray, coarse: tuple, shape: tuple[int, int], half: tuple[int, int],
         full: GroupArrays, max_moves: int = 8) -> np.ndarray:
    """Coarse-to-fine search for voxels ``s (n, 2, K)`` → int64 ``(n, 4)`` fine indices
    (b, d, i, j). ``coarse``: :meth:`GroupArrays.merged` of the coarse subgrid followed by its
    four index arrays on the fine axes; ``shape``: (nb, nd) of the fine grid; ``half``: the
    window's half-widths in (B1, Δf) groups."""
    s = np.ascontiguousarray(s, dtype=np.float32)
    out = np.zeros((s.shape[0], 4), np.int64)
    cwr, cwi, cfr, cfi, ccr, cci, cinv, cb, cd, ci, cj = coarse
    g, nk, ni = full.wr.shape
    r = k["lib"].mrf_fast(s.shape[0], _ptr(s), nk, cwr.shape[1], cfr.shape[1], ci.size, cj.size, cd.size,
                          _ptr(cb), _ptr(cd), _ptr(ci), _ptr(cj), *map(_ptr, (cwr, cwi, cfr, cfi, ccr, cci, cinv)),
                          shape[0], shape[1], half[0], half[1], max_moves, ni, full.fr.shape[2],
                          *map(_ptr, full.arrays()), _ptr(out))
    if r:
        raise MemoryError("fused pair search: out of memory")
    return out


def _selftest(k: dict) -> None:
    """Check the loaded kernels against a numpy brute force on random atoms (runs once per process)."""
    rng = np.random.default_rng(0)
    nb, nd, ni, nj, nk = 3, 4, 19, 3, 3
    wn = rng.standard_normal((nb, nd, ni, nk)) + 1j * rng.standard_normal((nb, nd, ni, nk))
    fn = rng.standard_normal((nb, nd, nj, nk)) + 1j * rng.standard_normal((nb, nd, nj, nk))
    wn /= np.linalg.norm(wn, axis=-1, keepdims=True)
    fn /= np.linalg.norm(fn, axis=-1, keepdims=True)
    c = np.einsum("bdik,bdjk->bdij", wn.conj(), fn)
    inv = 1.0 / (1.0 - np.abs(c) ** 2)
    ga = GroupArrays(wn, fn, c, inv)
    s = rng.standard_normal((5, nk)) + 1j * rng.standard_normal((5, nk))
    s2 = np.stack([s.real, s.imag], 1).astype(np.float32)
    pw = np.einsum("bdik,nk->nbdi", wn.conj(), s)
    pf = np.einsum("bdjk,nk->nbdj", fn.conj(), s)
    e = (np.abs(pw[..., None]) ** 2 + np.abs(pf[..., None, :] - c.conj() * pw[..., None]) ** 2 * inv).reshape(5, -1, ni, nj)
    out = exhaustive(k, s2, ga)
    if not all(np.isclose(e[n, g, i, j], e[n].max(), rtol=1e-4) for n, (g, i, j) in enumerate(out)):
        raise RuntimeError("the exhaustive kernel disagrees with numpy on its self-test")
    idx = [np.arange(nb), np.arange(nd), np.arange(ni), np.arange(nj)]
    got = fast(k, s2, (*ga.merged(), *idx), (nb, nd), (1, 1), ga)
    if not np.array_equal(got[:, 0] * nd + got[:, 1], out[:, 0]) or not np.array_equal(got[:, 2:], out[:, 1:]):
        raise RuntimeError("the fast kernel disagrees with the exhaustive one on its self-test")


def kernels() -> dict | None:
    """The loaded kernels, or None (after one warning per process) where they cannot be built."""
    with _LOCK:
        if "kernels" not in _STATE:
            try:
                if os.environ.get("MRFRECON_NO_KERNEL"):
                    raise RuntimeError("disabled by MRFRECON_NO_KERNEL")
                k = _load(build())
                _selftest(k)
                _STATE["kernels"] = k
            except Exception as e:  # noqa: BLE001  (whatever fails, matching must still work)
                _STATE["kernels"] = None
                warnings.warn(f"mrfrecon: fused matching kernel unavailable ({type(e).__name__}: {e}); "
                              "using the slower torch implementation", RuntimeWarning, stacklevel=3)
        return _STATE["kernels"]  # type: ignore[return-value]


def reset() -> None:
    """Forget the loaded kernels, so that the next :func:`kernels` call tries again (tests)."""
    with _LOCK:
        _STATE.clear()


__all__ = ["GroupArrays", "build", "exhaustive", "fast", "kernels", "reset"]


if __name__ == "__main__":  # `make install`: build now, so the first match does not wait for cc
    try:
        print(f"fused matching kernel: {build(verbose=True)}")
    except RuntimeError as e:
        print(f"warning: fused matching kernel not built ({e}); matching will use torch", file=sys.stderr)
