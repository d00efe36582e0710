"""CS-TV frame reconstruction: operators against independent routes, convergence, error vs KWIC, bad input.

References: the forward model is :func:`simulate_kspace` (an independent implementation of
``y = F(S·Σ_k B[s,k] x_k)``); the normal operator is checked against it composed with the
NUFFT adjoint; convergence is checked against the known coefficient images.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mrfrecon import Sequence
from mrfrecon.acquisition import coil_sensitivities, kwic_reconstruct, radial_trajectory, simulate_kspace
from mrfrecon.acquisition.cstv import (CsTvOptions, ToeplitzNormal, cstv_reconstruct, gradient, gradient_adjoint,
                                       subspace_adjoint)
from mrfrecon.acquisition.nufft import Nufft2D
from mrfrecon.errors import MrfreconError

SEQ = Sequence.mrf_wf()


def _cosine_basis(k: int) -> np.ndarray:
    """Orthonormal smooth temporal basis ``(spokes, k)`` (a DCT-II), independent of the physics."""
    s = np.arange(SEQ.spokes)
    b = np.stack([np.cos(np.pi * (s + 0.5) * j / SEQ.spokes) for j in range(k)], axis=1)
    return (b / np.linalg.norm(b, axis=0)).astype(np.complex64)


def _blocks(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Piecewise-constant coefficient images ``(k, n, n)``: rectangles and discs of random values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - n / 2
    x = np.zeros((k, n, n), np.complex64)
    body = (yy / (0.42 * n)) ** 2 + (xx / (0.36 * n)) ** 2 < 1
    x[:, body] = (rng.standard_normal(k) + 1j * rng.standard_normal(k))[:, None] * np.array([1.0, *([0.4] * (k - 1))])[:, None]
    for _ in range(4):
        cy, cx, r = rng.uniform(-0.2 * n, 0.2 * n), rng.uniform(-0.2 * n, 0.2 * n), rng.uniform(0.06 * n, 0.14 * n)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        x[:, disc & body] = (rng.standard_normal(k) + 1j * rng.standard_normal(k))[:, None] * 0.5
    return x


def _frames(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    bf = basis.reshape(SEQ.frames, SEQ.spokes_per_frame, -1).mean(axis=1)
    return np.einsum("fk,kyx->fyx", bf, x)


def _inner(a: np.ndarray, b: np.ndarray) -> complex:
    return complex(np.vdot(a.astype(np.complex128), b.astype(np.complex128)))


def test_gradient_adjoint_dot_product():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 17, 23)) + 1j * rng.standard_normal((3, 17, 23))).astype(np.complex128)
    p = (rng.standard_normal((3, 2, 17, 23)) + 1j * rng.standard_normal((3, 2, 17, 23))).astype(np.complex128)
    lhs, rhs = _inner(gradient(x), p), _inner(x, gradient_adjoint(p))
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)
    # the norm bound used for the step sizes: ‖∇‖² ≤ 8
    v = rng.standard_normal((1, 17, 23))
    for _ in range(60):
        v = gradient_adjoint(gradient(v))
        v /= np.linalg.norm(v)
    assert np.linalg.norm(gradient(v)) ** 2 <= 8.0


@pytest.mark.parametrize("coils", [1, 3])
def test_subspace_adjoint_is_the_adjoint_of_simulate_kspace(coils):
    n, k = 20, 3
    rng = np.random.default_rng(2)
    traj = radial_trajectory(SEQ, matrix=n)
    basis = _cosine_basis(k)
    sens = coil_sensitivities(coils, n, seed=3) if coils > 1 else None
    x = (rng.standard_normal((1, k, n, n)) + 1j * rng.standard_normal((1, k, n, n))).astype(np.complex64)
    y = (rng.standard_normal((coils, *traj.shape[:2])) + 1j * rng.standard_normal((coils, *traj.shape[:2]))).astype(np.complex64)
    ax = simulate_kspace(x, basis, traj, coils=sens, eps=1e-6)[0]
    op = Nufft2D(n, traj.reshape(-1, 2), eps=1e-6)
    ahy = subspace_adjoint(op, y, basis, None, sens)
    lhs, rhs = _inner(ax, y), _inner(x[0], ahy)
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)


@pytest.mark.parametrize("coils", [1, 2])
def test_toeplitz_normal_matches_nufft_route_and_is_hermitian(coils):
    n, k = 20, 3
    rng = np.random.default_rng(4)
    traj = radial_trajectory(SEQ, matrix=n)
    basis = _cosine_basis(k)
    w = rng.uniform(0.5, 1.5, traj.shape[:2]).astype(np.float32)
    sens = coil_sensitivities(coils, n, seed=5) if coils > 1 else None
    normal = ToeplitzNormal(traj, w, basis, (n, n), eps=1e-6)
    x = (rng.standard_normal((k, n, n)) + 1j * rng.standard_normal((k, n, n))).astype(np.complex64)
    z = (rng.standard_normal((k, n, n)) + 1j * rng.standard_normal((k, n, n))).astype(np.complex64)
    op = Nufft2D(n, traj.reshape(-1, 2), eps=1e-6)
    ref = subspace_adjoint(op, simulate_kspace(x[None], basis, traj, coils=sens, eps=1e-6)[0], basis, w, sens)
    got = normal.apply(x, None if sens is None else sens)
    assert np.linalg.norm(got - ref) < 1e-4 * np.linalg.norm(ref)
    lhs, rhs = _inner(normal.apply(x, sens), z), _inner(x, normal.apply(z, sens))
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)


def test_noiseless_fully_sampled_data_converge_to_the_truth():
    # 1400 spokes for a 24² matrix: far beyond Nyquist for K = 3 images; data exactly in the subspace
    n, k = 24, 3
    traj = radial_trajectory(SEQ, matrix=n)
    basis = _cosine_basis(k)
    # spokes sample a disc of k-space: what lies in its corners is in the null space, so the
    # truth is band-limited (blocks smoothed by 1 pixel) for the data to determine it
    x = _blocks(n, k)
    x = (ndimage.gaussian_filter(x.real, (0, 1, 1)) + 1j * ndimage.gaussian_filter(x.imag, (0, 1, 1))).astype(np.complex64)
    ksp = simulate_kspace(x[None], basis, traj, eps=1e-6)
    info: dict = {}
    got = cstv_reconstruct(ksp, traj, SEQ, basis=basis, options=CsTvOptions(weight=1e-5, iterations=150, tol=1e-7),
                           eps=1e-6, info=info)[0]
    truth = _frames(x, basis)
    err = np.linalg.norm(got - truth) / np.linalg.norm(truth)
    assert err < 0.005, (err, info["tv_slices"])


def test_cstv_beats_kwic_on_undersampled_noisy_piecewise_constant_phantom():
    n, k = 48, 3
    traj = radial_trajectory(SEQ, matrix=n)
    basis = _cosine_basis(k)
    x = _blocks(n, k, seed=7)
    sens = coil_sensitivities(2, n, seed=1)
    clean = simulate_kspace(x[None], basis, traj, coils=sens)
    rng = np.random.default_rng(0)
    noise = 0.02 * np.abs(clean).max() * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    ksp = (clean + noise).astype(np.complex64)
    truth = _frames(x, basis)
    kw = kwic_reconstruct(ksp, traj, SEQ, coils=sens)[0]
    cs = cstv_reconstruct(ksp, traj, SEQ, basis=basis, coils=sens, options=CsTvOptions(weight=0.02))[0]
    e_kw = np.linalg.norm(kw - truth) / np.linalg.norm(truth)
    e_cs = np.linalg.norm(cs - truth) / np.linalg.norm(truth)
    assert e_cs < 0.5 * e_kw, (e_cs, e_kw)
    # and TV helps beyond the subspace alone (a near-zero weight)
    cs0 = cstv_reconstruct(ksp, traj, SEQ, basis=basis, coils=sens, options=CsTvOptions(weight=1e-6))[0]
    assert e_cs < np.linalg.norm(cs0 - truth) / np.linalg.norm(truth)


@pytest.mark.parametrize("kw, name", [({"weight": 0.0}, "tv_weight"), ({"weight": -1.0}, "tv_weight"),
                                      ({"weight": float("nan")}, "tv_weight"), ({"iterations": 0}, "tv_iterations"),
                                      ({"iterations": -3}, "tv_iterations"), ({"tol": 0.0}, "tv_tol")])
def test_bad_options_name_the_option(kw, name):
    with pytest.raises(MrfreconError, match=name) as e:
        CsTvOptions(**kw)
    assert "\n" not in str(e.value)


def test_divergence_raises(monkeypatch):
    n, k = 16, 2
    traj = radial_trajectory(SEQ, matrix=n)
    basis = _cosine_basis(k)
    ksp = simulate_kspace(_blocks(n, k)[None], basis, traj)
    monkeypatch.setattr(ToeplitzNormal, "norm", lambda self, *a, **kw: 1e-3)  # steps far too long
    with pytest.raises(MrfreconError, match="diverged"):
        cstv_reconstruct(ksp, traj, SEQ, basis=basis, options=CsTvOptions(iterations=50))


# ------------------------------------------------------------------------------------------------
# through the cohort: options, determinism, no scan on failure
# ------------------------------------------------------------------------------------------------


def _tiny_maps(n: int = 32) -> dict[str, np.ndarray]:
    from mrfrecon.phantoms import make_phantom

    return make_phantom("leg", seed=3, matrix=n, slices=1).maps


def test_acquire_refuses_unknown_recon():
    from mrfrecon.cohort import acquire

    with pytest.raises(MrfreconError, match="^recon: expected one of kwic, kwic-tv"):
        acquire(SEQ, _tiny_maps(), seed=0, recon="cs")


@pytest.mark.parametrize("key, value", [("tv_weight", 0), ("tv_weight", float("nan")), ("tv_iterations", 0)])
def test_cohort_refuses_bad_tv_options_before_writing(tmp_path, key, value):
    from mrfrecon.cohort import simulate_cohort

    with pytest.raises(MrfreconError, match=key):
        simulate_cohort(tmp_path / "c", preset="tiny", subjects=1, reference=False,
                        overrides={"recon": "kwic-tv", key: value})
    assert not list((tmp_path / "c").glob("*.h5"))


def test_cstv_same_seed_identical_files(tmp_path):
    from mrfrecon.cohort import simulate_cohort

    for name in ("a", "b"):
        simulate_cohort(tmp_path / name, preset="tiny", subjects=1, reference=False,
                        overrides={"recon": "kwic-tv", "slices": 1})
    a = (tmp_path / "a" / "sub-000.h5").read_bytes()
    assert a == (tmp_path / "b" / "sub-000.h5").read_bytes()
    from mrfrecon.io.scan import load_scan

    scan = load_scan(tmp_path / "a" / "sub-000.h5")
    assert scan.attrs["simulation"]["recon"] == "kwic-tv"


def test_divergence_writes_no_scan(tmp_path, monkeypatch):
    from mrfrecon.cohort import simulate_cohort

    monkeypatch.setattr(ToeplitzNormal, "norm", lambda self, *a, **kw: 1e-3)
    with pytest.raises(MrfreconError, match="diverged"):
        simulate_cohort(tmp_path / "c", preset="tiny", subjects=1, reference=False,
                        overrides={"recon": "kwic-tv", "slices": 1})
    assert not list((tmp_path / "c").glob("*.h5*"))


@pytest.mark.parametrize("args, option", [(["--tv-weight", "-1"], "--tv-weight"), (["--tv-weight", "nan"], "--tv-weight"),
                                          (["--tv-iterations", "0"], "--tv-iterations")])
def test_cli_bad_tv_option_one_line(tmp_path, args, option):
    from click.testing import CliRunner

    from mrfrecon.cli import cli

    r = CliRunner().invoke(cli, ["simulate", "--preset", "tiny", "--subjects", "1", "--no-reference", "--recon",
                                 "kwic-tv", "--out", str(tmp_path / "c"), *args], obj={})
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and option in lines[0] and "Traceback" not in r.output
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.h5"))
