"""A 2-D non-uniform FFT operator with reused finufft plans.

finufft (Barnett, Magland & af Klinteberg, SIAM J. Sci. Comput. 41:C479-C504, 2019) spends a
large part of a small transform on making the plan (FFTW planning, allocating the fine grid) and
on sorting the points (``setpts``). :class:`Nufft2D` therefore keeps one plan per
``(type, n_trans)``, sets the points once per geometry, and transforms many images or data
vectors at once (``n_trans``), which is what makes the acquisition fast: the k-space of every
temporal basis image of every coil is one type-2 call, and several frames of the view-sharing
reconstruction are one type-1 call (see :mod:`mrfrecon.acquisition.kwic`).

Backends: finufft on the CPU; cufinufft (Shih et al., IPDPSW 2021; PyPI ``cufinufft``, the GPU
library of the same project, with the same plan interface) on a CUDA GPU. ``backend="auto"`` (the
default, or ``$MRFRECON_NUFFT_BACKEND``) takes cufinufft when torch sees a CUDA device and
cufinufft imports, else finufft. Inputs and outputs are numpy arrays either way; with cufinufft
each batch is copied to the GPU (as a torch tensor) and back.

Conventions (checked against a brute-force DFT in the tests): images are ``(..., ny, nx)``
with pixel ``[j, i]`` at position ``(x, y) = (i − nx//2, j − ny//2)``; points are ``(M, 2)``
``[kx, ky]`` in radians/pixel. Forward (type 2): ``d_m = Σ_r img(r)·exp(−i k_m·r)``;
adjoint (type 1): ``img(r) = Σ_m d_m·exp(+i k_m·r)``. No normalization is applied.
"""

from __future__ import annotations

import os

import finufft
import numpy as np

from ..errors import MrfreconError
from ._checks import as_real, default_nthreads, positive_int

__all__ = ["BACKENDS", "Nufft2D", "nufft_backend"]

BACKENDS = ("auto", "finufft", "cufinufft")


def _cufinufft():
    """The cufinufft module, or None where it is not installed (or its CUDA libraries fail)."""
    try:
        import cufinufft
    except Exception:  # noqa: BLE001  (ImportError, or OSError from missing CUDA libraries)
        return None
    return cufinufft


def nufft_backend(backend: str | None = None) -> str:
    """Resolve ``backend`` (``None``: ``$MRFRECON_NUFFT_BACKEND``, else ``"auto"``) to
    ``"finufft"`` or ``"cufinufft"``. An explicit ``"cufinufft"`` without CUDA or without the
    package is a :class:`MrfreconError` (one line), not a late traceback."""
    import torch

    where = "backend"
    if backend is None:
        backend, where = os.environ.get("MRFRECON_NUFFT_BACKEND") or "auto", "MRFRECON_NUFFT_BACKEND"
    if backend not in BACKENDS:
        raise MrfreconError(f"{where}: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    cuda = torch.cuda.is_available()
    if backend == "auto":
        return "cufinufft" if cuda and _cufinufft() is not None else "finufft"
    if backend == "cufinufft":
        if not cuda:
            raise MrfreconError(f"{where}: cufinufft needs a CUDA device, and this machine has none; use finufft")
        if _cufinufft() is None:
            raise MrfreconError(f"{where}: cufinufft is not installed (pip install cufinufft)")
    return backend


class Nufft2D:
    """Type-2 (image → points) and type-1 (points → image) NUFFTs on fixed or re-settable points.

    Parameters
    ----------
    shape
        Image shape ``(ny, nx)`` in pixels (an int means square).
    points
        ``(M, 2)`` ``[kx, ky]`` in radians/pixel within ``[−π, π]`` (may be set later with
        :meth:`set_points`).
    eps
        finufft's requested relative precision. 1e-4 by default: far below the undersampling
        artefacts and noise of a radial MRF frame, and about twice as fast as 1e-6.
    nthreads
        finufft threads; see :func:`~mrfrecon.acquisition._checks.default_nthreads` for the
        default (the usable CPUs, but 1 on a 2-core machine) and ``$MRFRECON_NUFFT_THREADS``.
    max_batch
        Most vectors per finufft call (bounds the memory of one call to about
        ``max_batch × (M + 4·ny·nx) × 8`` bytes); larger stacks are split.
    backend
        ``"auto"`` (default: cufinufft where CUDA is, else finufft), ``"finufft"`` or
        ``"cufinufft"``; see :func:`nufft_backend`.
    device
        CUDA device of the cufinufft backend (default ``cuda``).
    """

    def __init__(
        self,
        shape: int | tuple[int, int],
        points: np.ndarray | None = None,
        *,
        eps: float = 1e-4,
        nthreads: int | None = None,
        max_batch: int = 64,
        backend: str | None = None,
        device: str | None = None,
    ) -> None:
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (int(shape), int(shape))
        if not (isinstance(shape, tuple) and len(shape) == 2):
            raise MrfreconError(f"shape: expected an int or a tuple (ny, nx), got {shape!r}")
        self.shape = (positive_int(shape[0], "shape[0]"), positive_int(shape[1], "shape[1]"))
        if not (isinstance(eps, float) and 1e-15 < eps < 1):
            raise MrfreconError(f"eps: expected a float in (1e-15, 1), got {eps!r}")
        self.eps = eps
        self.nthreads = default_nthreads(nthreads)
        self.max_batch = positive_int(max_batch, "max_batch")
        self.backend = nufft_backend(backend)
        self._device = device or "cuda"
        self._lib = finufft if self.backend == "finufft" else _cufinufft()
        self._gpu_points: tuple | None = None
        self._plans: dict[tuple[int, int], object] = {}
        self._plan_version: dict[tuple[int, int], int] = {}
        self._version = 0
        self._ky: np.ndarray | None = None
        self._kx: np.ndarray | None = None
        if points is not None:
            self.set_points(points)

    @property
    def n_points(self) -> int:
        """Number of non-uniform points currently set."""
        return 0 if self._kx is None else int(self._kx.shape[0])

    def set_points(self, points: np.ndarray) -> None:
        """Use new non-uniform points ``(M, 2)`` ``[kx, ky]`` (radians/pixel). Existing plans are
        kept; each re-sorts the points (``setpts``) lazily, the next time it runs."""
        p = as_real(points, "points", 2, "(M, 2) [kx, ky] in radians/pixel")
        if p.shape[1] != 2 or p.shape[0] < 1:
            raise MrfreconError(f"points: expected shape (M >= 1, 2), got {p.shape}")
        if np.abs(p).max() > np.pi * (1 + 1e-5):
            raise MrfreconError("points: coordinates must lie in [-π, π] radians/pixel")
        # finufft keeps pointers to these arrays: hold them for the plans' lifetime.
        # Image rows are y, so finufft's first coordinate is ky.
        self._ky = np.ascontiguousarray(p[:, 1])
        self._kx = np.ascontiguousarray(p[:, 0])
        self._gpu_points = None
        self._version += 1

    def _plan(self, kind: int, n_trans: int) -> finufft.Plan:
        if self._kx is None:
            raise MrfreconError("Nufft2D: no points set (pass points= or call set_points first)")
        key = (kind, n_trans)
        plan = self._plans.get(key)
        if plan is None:
            opts = {"nthreads": self.nthreads} if self.backend == "finufft" else {}
            plan = self._lib.Plan(kind, self.shape, n_trans, eps=self.eps, isign=-1 if kind == 2 else 1,
                                  dtype="complex64", **opts)
            self._plans[key] = plan
            self._plan_version[key] = -1
        if self._plan_version[key] != self._version:
            if self.backend == "finufft":
                plan.setpts(self._ky, self._kx)
            else:
                if self._gpu_points is None:  # the plan keeps pointers: hold the device arrays
                    # cufinufft wants points in the transform's real precision (float32)
                    self._gpu_points = tuple(self._to_device(k.astype(np.float32)) for k in (self._ky, self._kx))
                plan.setpts(*self._gpu_points)
            self._plan_version[key] = self._version
        return plan

    def _to_device(self, a: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(a)).to(self._device)

    def _execute(self, plan, src: np.ndarray, dst: np.ndarray) -> None:
        """One batch: finufft writes into ``dst``; cufinufft runs on device copies."""
        if self.backend == "finufft":
            plan.execute(src, out=dst)
            return
        import torch

        out = torch.empty(dst.shape, dtype=torch.complex64, device=self._device)
        plan.execute(self._to_device(src), out=out)
        dst[...] = out.cpu().numpy()

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Type 2: ``images (..., ny, nx)`` complex → ``(..., M)`` complex64 k-space samples."""
        img = np.asarray(images)
        if img.ndim < 2 or img.shape[-2:] != self.shape:
            raise MrfreconError(f"images: expected shape (..., {self.shape[0]}, {self.shape[1]}), got {img.shape}")
        lead = img.shape[:-2]
        flat = np.ascontiguousarray(img.reshape(-1, *self.shape), dtype=np.complex64)
        out = np.empty((flat.shape[0], self.n_points), dtype=np.complex64)
        for start in range(0, flat.shape[0], self.max_batch):
            stop = min(start + self.max_batch, flat.shape[0])
            self._execute(self._plan(2, stop - start), flat[start:stop], out[start:stop])
        return out.reshape(*lead, self.n_points)

    def adjoint(self, data: np.ndarray) -> np.ndarray:
        """Type 1: ``data (..., M)`` complex → ``(..., ny, nx)`` complex64 images (no weighting)."""
        d = np.asarray(data)
        if d.ndim < 1 or d.shape[-1] != self.n_points:
            raise MrfreconError(f"data: expected shape (..., {self.n_points}), got {d.shape}")
        lead = d.shape[:-1]
        flat = np.ascontiguousarray(d.reshape(-1, self.n_points), dtype=np.complex64)
        out = np.empty((flat.shape[0], *self.shape), dtype=np.complex64)
        for start in range(0, flat.shape[0], self.max_batch):
            stop = min(start + self.max_batch, flat.shape[0])
            self._execute(self._plan(1, stop - start), flat[start:stop], out[start:stop])
        return out.reshape(*lead, *self.shape)
