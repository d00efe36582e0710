"""NUFFT backends: the choice, the one-line refusals, the cufinufft code path (on the CPU through a
stand-in with cufinufft's plan interface; on CUDA for real, skipped without a GPU)."""

import types

import finufft
import numpy as np
import pytest
import torch

from mrfrecon import MrfreconError
from mrfrecon.acquisition import nufft
from mrfrecon.acquisition.nufft import Nufft2D, nufft_backend


def _problem(seed=0, n=24, m=300, batch=3):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-np.pi, np.pi, (m, 2))
    img = (rng.standard_normal((batch, n, n)) + 1j * rng.standard_normal((batch, n, n))).astype(np.complex64)
    data = (rng.standard_normal((batch, m)) + 1j * rng.standard_normal((batch, m))).astype(np.complex64)
    return pts, img, data


def _standin():
    """cufinufft's Plan interface (type, n_modes, n_trans, eps, isign, dtype; setpts(x, y);
    execute(data, out)) on torch tensors, computed by finufft on the CPU."""

    class Plan:
        def __init__(self, kind, shape, n_trans, eps, isign, dtype):
            self.plan = finufft.Plan(kind, shape, n_trans, eps=eps, isign=isign, dtype=dtype, nthreads=1)
            self.kind = kind

        def setpts(self, x, y):
            assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
            self.pts = (x.numpy(), y.numpy())
            self.plan.setpts(*self.pts)

        def execute(self, data, out):
            assert isinstance(data, torch.Tensor) and isinstance(out, torch.Tensor)
            out.copy_(torch.from_numpy(self.plan.execute(data.numpy()).reshape(out.shape)))

    return types.SimpleNamespace(Plan=Plan)


def test_auto_is_finufft_without_cuda_and_refusals_are_one_line(monkeypatch):
    monkeypatch.delenv("MRFRECON_NUFFT_BACKEND", raising=False)
    if not torch.cuda.is_available():
        assert nufft_backend() == "finufft" and Nufft2D(16).backend == "finufft"
        with pytest.raises(MrfreconError, match="needs a CUDA device"):
            Nufft2D(16, backend="cufinufft")
    monkeypatch.setenv("MRFRECON_NUFFT_BACKEND", "gpufft")
    with pytest.raises(MrfreconError, match="MRFRECON_NUFFT_BACKEND"):
        Nufft2D(16)


def test_cufinufft_path_equals_finufft_with_a_standin(monkeypatch):
    pts, img, data = _problem()
    ref = Nufft2D(24, pts, max_batch=2, backend="finufft")
    monkeypatch.setattr(nufft, "_cufinufft", _standin)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert nufft_backend("auto") == "cufinufft"
    gpu = Nufft2D(24, pts, max_batch=2, backend="cufinufft", device="cpu")
    np.testing.assert_allclose(gpu.forward(img), ref.forward(img), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gpu.adjoint(data), ref.adjoint(data), rtol=1e-5, atol=1e-4)
    gpu.set_points(pts[::-1].copy())  # new points reach the device plans too
    ref.set_points(pts[::-1].copy())
    np.testing.assert_allclose(gpu.forward(img), ref.forward(img), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available() or nufft._cufinufft() is None, reason="needs CUDA and cufinufft")
def test_cufinufft_on_cuda_equals_finufft():
    pts, img, data = _problem(1, n=64, m=2000, batch=4)
    ref = Nufft2D(64, pts, backend="finufft", eps=1e-6)
    gpu = Nufft2D(64, pts, backend="cufinufft", eps=1e-6)
    scale = np.abs(ref.forward(img)).max()
    np.testing.assert_allclose(gpu.forward(img), ref.forward(img), atol=1e-4 * scale)
    scale = np.abs(ref.adjoint(data)).max()
    np.testing.assert_allclose(gpu.adjoint(data), ref.adjoint(data), atol=1e-4 * scale)
