"""The fused pair-search kernel against a numpy brute force, its build, and its torch fallback."""

import warnings

import numpy as np
import pytest

from mrfrecon import Dictionary, Sequence, match, pairsearch, simulate
from mrfrecon.dictionary import Grid
from mrfrecon.matching import match_indices_agree

SEQ = Sequence.mrf_wf()


@pytest.fixture(scope="module")
def small():
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[600, 1800, 50]]}, "t1fat_ms": {"values": [300, 350, 400, 450]},
                           "b1": {"values": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}, "df_hz": {"values": [-40, -20, 0, 20, 40, 60]}})
    return Dictionary.build(SEQ, grid, energy=0.99999)


def _voxels(n, seed):
    rng = np.random.default_rng(seed)
    p = dict(t1h2o=rng.uniform(650, 1750, n), t1fat=rng.uniform(300, 450, n), b1=rng.uniform(0.5, 1.0, n),
             df=rng.uniform(-40, 60, n), ff=rng.uniform(0.0, 0.6, n))
    x = simulate(SEQ, **p)
    sd = 0.02 * np.abs(x).mean()
    return (x + sd * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))).astype(np.complex64)


@pytest.fixture()
def no_kernel(monkeypatch):
    """The torch implementation, as where the kernel cannot be built."""
    monkeypatch.setenv("MRFRECON_NO_KERNEL", "1")
    pairsearch.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    monkeypatch.delenv("MRFRECON_NO_KERNEL")
    pairsearch.reset()


def _brute_force_pairs(x, d):
    """Best (b, d, i, j) per voxel from float64 numpy energies of every pair."""
    v = d.basis.conj()
    w = d.water @ v
    f = d.fat @ v
    w = w / np.linalg.norm(w, axis=-1, keepdims=True)
    f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    c = np.einsum("bdik,bdjk->bdij", w.conj(), f)
    s = (x @ v).astype(np.complex128)
    pw = np.einsum("bdik,nk->nbdi", w.conj(), s)
    pf = np.einsum("bdjk,nk->nbdj", f.conj(), s)
    e = np.abs(pw[..., None]) ** 2 + np.abs(pf[..., None, :] - c.conj() * pw[..., None]) ** 2 / (1 - np.abs(c) ** 2)
    flat = e.reshape(len(x), -1)
    return np.stack(np.unravel_index(flat.argmax(-1), e.shape[1:]), -1), np.sort(flat, -1)


@pytest.mark.parametrize("method", ["exhaustive", "fast"])
def test_kernel_matches_brute_force(small, method):
    assert pairsearch.kernels() is not None, "the C kernel should build on the test machine (make install)"
    x = _voxels(150, 1)
    got = match(x, small, method=method, threads=1)
    ref, sorted_e = _brute_force_pairs(x, small)
    g = small.grid
    same = ((np.isclose(got["b1"], g.b1[ref[:, 0]])) & np.isclose(got["df"], g.df_hz[ref[:, 1]])
            & np.isclose(got["t1h2o"], g.t1h2o_ms[ref[:, 2]]) & np.isclose(got["t1fat"], g.t1fat_ms[ref[:, 3]]))
    # a different choice only where the two best pairs tie to float32 precision
    near_tie = (sorted_e[:, -1] - sorted_e[:, -2]) < 1e-5 * sorted_e[:, -1]
    assert np.all(same | near_tie) and same.mean() >= 0.95


def test_threads_and_blocks_do_not_change_the_result(small, monkeypatch):
    x = _voxels(700, 2)
    one = match(x, small, threads=1)
    monkeypatch.setattr("mrfrecon.matching.KERNEL_BLOCK", 64)
    two = match(x, small, threads=2)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k])


def test_torch_fallback_gives_the_same_pairs(small, monkeypatch):
    x = _voxels(200, 3)
    fused = match(x, small, threads=1)
    monkeypatch.setenv("MRFRECON_NO_KERNEL", "1")
    pairsearch.reset()
    with pytest.warns(RuntimeWarning, match="fused matching kernel unavailable") as rec:
        fallback = match(x, small, threads=1)
        match(x[:5], small, threads=1)  # warned once, not per call
    assert len([r for r in rec if "fused matching" in str(r.message)]) == 1
    monkeypatch.delenv("MRFRECON_NO_KERNEL")
    pairsearch.reset()
    assert match_indices_agree(fused, fallback).mean() >= 0.99
    same = match_indices_agree(fused, fallback)
    np.testing.assert_allclose(fused["ff"][same], fallback["ff"][same], atol=1e-4)


def test_build_from_source_and_failure_falls_back(tmp_path, monkeypatch):
    if pairsearch._compiler() is None:
        pytest.skip("no C compiler on this machine")
    monkeypatch.setattr(pairsearch, "_dirs", lambda: [tmp_path / "pkg"])
    path = pairsearch.build()
    assert path.parent == tmp_path / "pkg" and path.stat().st_size > 0
    assert pairsearch.build() == path  # compiled once, then found
    monkeypatch.setattr(pairsearch, "_dirs", lambda: [tmp_path / "other"])
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    pairsearch.reset()
    try:
        with pytest.warns(RuntimeWarning, match="torch implementation"):
            assert pairsearch.kernels() is None
    finally:
        pairsearch.reset()
