"""Uncertainty: the Cramér–Rao SD against Monte-Carlo noise draws, ensembles, data consistency,
calibration, files written, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrfrecon import Dictionary, MrfreconError, Sequence, match, simulate
from mrfrecon.dictionary import Grid
from mrfrecon.uncertainty import fisher
from mrfrecon.uncertainty.calibration import Calibration, coverage, fit_scale, reliability, scoring_masks, summarize
from mrfrecon.uncertainty.ensemble import (check_ensemble, combined_sd, consistency_residual, data_consistency,
                                           ensemble_stats)
from mrfrecon.uncertainty.matched import match_uncertainty, match_with_uncertainty, scan_match_uncertainty

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEQ = Sequence.mrf_wf()
MAPS = ("t1h2o", "ff", "b1", "df", "t1fat")


@pytest.fixture(scope="module")
def wide() -> Dictionary:
    """A two-value grid: only its range (the prior) and the sequence matter for the bound off the grid."""
    return Dictionary.build(SEQ, Grid(t1h2o_ms=np.array([500.0, 3000.0]), t1fat_ms=np.array([200.0, 500.0]),
                                      b1=np.array([0.3, 1.2]), df_hz=np.array([-100.0, 100.0])))


@pytest.fixture(scope="module")
def small() -> Dictionary:
    """A coarse grid around thigh tissue, for matching many fingerprints quickly."""
    return Dictionary.build(SEQ, Grid(t1h2o_ms=np.arange(700.0, 1801.0, 25.0), t1fat_ms=np.arange(250.0, 451.0, 50.0),
                                      b1=np.arange(0.5, 1.01, 0.05), df_hz=np.arange(-40.0, 41.0, 10.0)))


@pytest.mark.parametrize("t1h2o, ff, b1, df, t1fat", [(800.0, 0.15, 0.55, -30.0, 300.0), (1400.0, 0.4, 0.9, 40.0, 380.0),
                                                       (1100.0, 0.6, 0.7, 0.0, 420.0)])
def test_fisher_sd_matches_monte_carlo_sd_of_matching(wide, t1h2o, ff, b1, df, t1fat):
    """Matching on a fine grid around the truth (steps of a third of the bound) is the
    maximum-likelihood estimate; over 200 noise draws its SD is the bound's within the draws'
    error (SE ≈ 5 %) plus a few per cent."""
    truth = {"t1h2o": t1h2o, "ff": ff, "b1": b1, "df": df, "t1fat": t1fat, "pd": 1.0}
    x = simulate(SEQ, t1h2o=t1h2o, t1fat=t1fat, b1=b1, df=df, ff=ff)
    sigma = 0.02 * np.abs(x).mean()
    sd = fisher.crb_sd(wide, {k: np.array([v]) for k, v in truth.items()}, sigma, on_grid=False)
    grid = {ax: truth[k] + float(sd[f"sd_{k}"][0]) / 3 * np.arange(-12, 13)
            for k, ax in (("t1h2o", "t1h2o_ms"), ("b1", "b1"), ("df", "df_hz"), ("t1fat", "t1fat_ms"))}
    d = Dictionary.build(SEQ, Grid(**grid), rank=30)
    rng = np.random.default_rng(1)
    noise = sigma * (rng.standard_normal((200, SEQ.frames)) + 1j * rng.standard_normal((200, SEQ.frames))) / np.sqrt(2)
    m = match((x + noise).astype(np.complex64), d, method="exhaustive")
    for k in MAPS:
        ratio = m[k].std(ddof=1) / sd[f"sd_{k}"][0]
        assert 0.82 < ratio < 1.22, (k, ratio)


def test_gram_matrices_equal_the_spoke_by_spoke_columns(wide):
    rng = np.random.default_rng(0)
    t1w, t1f, b1, df = rng.uniform(600, 2000, 20), rng.uniform(250, 450, 20), rng.uniform(0.4, 1.0, 20), rng.uniform(-90, 90, 20)
    import torch

    U = torch.cat([fisher.component_columns(wide, "water", t1w, b1, df), fisher.component_columns(wide, "fat", t1f, b1, df)], 1)
    G0 = (U.conj() @ U.transpose(1, 2)).numpy()
    G1 = fisher.gram_matrices(wide, t1w, t1f, b1, df).numpy()
    assert np.abs(G1 - G0).max() <= 1e-12 * np.abs(G0).max()
    # the columns are the signal model's: the atom is simulate()'s fingerprint, the derivatives its differences
    x0 = simulate(SEQ, t1h2o=t1w[0], b1=b1[0], df=df[0], ff=0.0).astype(np.complex128)
    np.testing.assert_allclose(U[0, 0].numpy(), x0, atol=1e-6 * np.abs(x0).max())
    x1 = simulate(SEQ, t1h2o=t1w[0] + 1.0, b1=b1[0], df=df[0], ff=0.0).astype(np.complex128)
    assert np.abs((x1 - x0) - U[0, 1].numpy()).max() < 0.05 * np.abs(U[0, 1].numpy()).max()


def test_gram_table_of_the_grid_equals_the_columns(small):
    """Matched maps (grid values, as float32) are served from the dictionary's tabulated Gram blocks."""
    import torch

    g, rng = small.grid, np.random.default_rng(1)
    t1w, t1f, b1, df = (rng.choice(ax, 50).astype(np.float32) for ax in (g.t1h2o_ms, g.t1fat_ms, g.b1, g.df_hz))
    U = torch.cat([fisher.component_columns(small, "water", t1w, b1, df), fisher.component_columns(small, "fat", t1f, b1, df)], 1)
    G0 = (U.conj() @ U.transpose(1, 2)).numpy()
    G1 = fisher.gram_matrices(small, t1w, t1f, b1, df).numpy()
    assert any(k.startswith("uncertainty:grams") for k in small._cache)
    assert np.abs(G1 - G0).max() <= 2e-4 * np.abs(G0).max()  # the table: float32 differences


def test_undetermined_parameters_get_the_uniform_guess_and_a_flag(small):
    """FF = 0: T1fat does not reach the data; FF = 1: T1H2O does not. Finite SDs, flagged."""
    maps = {"t1h2o": np.array([1000.0, 1000.0, 0.0]), "ff": np.array([0.0, 1.0, 0.0]), "b1": np.array([0.8, 0.8, 0.0]),
            "df": np.array([0.0, 0.0, 0.0]), "t1fat": np.array([350.0, 350.0, 0.0]), "pd": np.array([1.0, 1.0, 0.0]),
            "valid": np.array([True, True, False])}
    sd = fisher.crb_sd(small, maps, 0.001)
    prior = fisher.prior_sd(small)
    assert all(np.isfinite(sd[f"sd_{k}"]).all() for k in fisher.SD_MAPS)
    assert sd["flag_t1fat"][0] == fisher.UNDETERMINED and sd["sd_t1fat"][0] == pytest.approx(prior["t1fat"], rel=0.05)
    assert sd["flag_t1h2o"][1] == fisher.UNDETERMINED and sd["flag_t1h2o"][0] == 0
    assert sd["flag_t1h2o"][2] == fisher.NOT_ESTIMATED and sd["sd_t1h2o"][2] == pytest.approx(prior["t1h2o"])
    assert sd["sd_t1h2o"][0] < 0.1 * prior["t1h2o"]


def test_match_with_uncertainty_residual_noise_level_and_coverage(small):
    """White noise: the residual's noise level is the true one; ±1.96 SD covers ~95 %."""
    rng = np.random.default_rng(3)
    n = 400
    truth = {"t1h2o": rng.uniform(800, 1600, n), "ff": rng.uniform(0.05, 0.5, n), "b1": rng.uniform(0.55, 0.95, n),
             "df": rng.uniform(-30, 30, n), "t1fat": rng.uniform(280, 420, n)}
    x = simulate(SEQ, **truth)
    sigma = 0.1 * np.abs(x).mean()
    y = (x + sigma * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) / np.sqrt(2)).astype(np.complex64)
    got = match_with_uncertainty(y, small)
    assert np.median(got["sigma"]) == pytest.approx(sigma, rel=0.05)
    for k in ("t1h2o", "ff", "b1", "df"):
        assert 0.85 < coverage(np.abs(got[k] - truth[k]), got[f"sd_{k}"]) <= 1.0, k
    # the same SDs from the maps alone, and with a given noise level
    again = match_uncertainty(y, small, {k: got[k] for k in (*MAPS, "pd", "residual", "valid")})
    np.testing.assert_array_equal(again["sd_t1h2o"], got["sd_t1h2o"])
    fixed = match_uncertainty(y, small, got, sigma=sigma)
    assert np.median(fixed["sd_t1h2o"] / got["sd_t1h2o"]) == pytest.approx(1.0, abs=0.1)


def test_scan_match_uncertainty_noise_levels_agree_on_white_noise(small):
    rng = np.random.default_rng(4)
    fg = np.zeros((1, 24, 24), bool)
    fg[0, 4:20, 4:20] = True
    n = int(fg.sum())
    truth = {"t1h2o": rng.uniform(900, 1500, n), "ff": rng.uniform(0.05, 0.4, n), "b1": rng.uniform(0.6, 0.9, n),
             "df": np.zeros(n), "t1fat": np.full(n, 350.0)}
    series = np.zeros((1, SEQ.frames, 24, 24), np.complex64)
    x = simulate(SEQ, **truth)
    sigma = 0.05 * np.abs(x).mean()
    series[:, :, fg[0]] = x.T[None]
    series += (sigma * (rng.standard_normal(series.shape) + 1j * rng.standard_normal(series.shape)) / np.sqrt(2)).astype(np.complex64)
    from mrfrecon.cohort import reference_maps
    from mrfrecon.matching import MAP_KEYS

    m = reference_maps(series, fg, small, keys=(*MAP_KEYS, "valid"))
    res = scan_match_uncertainty(series, fg, small, m, sigma="residual")
    bg = scan_match_uncertainty(series, fg, small, m, sigma="background")
    assert np.median(res["sigma"][fg]) == pytest.approx(sigma, rel=0.1)
    assert np.median(bg["sigma"][fg]) == pytest.approx(sigma, rel=0.1)
    assert (res["sd_t1h2o"][~fg] == 0).all() and (res["sd_t1h2o"][fg] > 0).all()
    with pytest.raises(MrfreconError, match="cannot be estimated from the background"):
        scan_match_uncertainty(series, np.ones_like(fg), small, {k: np.broadcast_to(v.max(), fg.shape) for k, v in m.items()},
                               sigma="background")


def test_temporal_rank_finds_a_subspace():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((SEQ.frames, 8)) + 1j * rng.standard_normal((SEQ.frames, 8)))[0]
    x = ((rng.standard_normal((500, 8)) + 1j * rng.standard_normal((500, 8))) @ basis.T).astype(np.complex64)
    assert fisher.temporal_rank(x) == 8
    assert fisher.temporal_rank(x + 0.01 * rng.standard_normal(x.shape)) == SEQ.frames


def test_ensemble_sd_is_numpys_sd_of_the_members():
    rng = np.random.default_rng(0)
    members = [{"t1h2o": rng.normal(1200, 50, (2, 5, 5)), "ff": rng.uniform(0, 1, (2, 5, 5))} for _ in range(4)]
    got = ensemble_stats(members)
    for k in ("t1h2o", "ff"):
        stack = np.stack([m[k] for m in members])
        np.testing.assert_allclose(got[f"sd_{k}"], stack.std(0, ddof=1), rtol=1e-5)
        np.testing.assert_allclose(got[k], stack.mean(0), rtol=1e-6)
    with pytest.raises(MrfreconError, match="at least 2 members"):
        ensemble_stats(members[:1])


def test_data_consistency_equals_matchings_residual_for_matchings_maps(small):
    rng = np.random.default_rng(5)
    n = 200
    truth = {"t1h2o": rng.choice(small.grid.t1h2o_ms, n), "ff": rng.uniform(0.05, 0.6, n), "b1": rng.choice(small.grid.b1, n),
             "df": rng.choice(small.grid.df_hz, n), "t1fat": rng.choice(small.grid.t1fat_ms, n)}
    x = simulate(SEQ, **truth)
    clean = match(x, small)
    # on-grid noiseless fingerprints: the constrained fit at matching's maps finds the same Δf and
    # T1fat and the same residual (what the dictionary's temporal basis leaves out)
    fit = consistency_residual(x, small, clean["t1h2o"], clean["ff"], clean["b1"])
    np.testing.assert_allclose(fit["residual"], clean["residual"], atol=1e-4)
    np.testing.assert_array_equal(fit["df"], truth["df"])
    np.testing.assert_array_equal(fit["t1fat"], truth["t1fat"])
    y = (x + 0.1 * np.abs(x).mean() * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))).astype(np.complex64)
    m = match(y, small)
    sigma = fisher.noise_from_residual(y, m["residual"])
    dc = data_consistency(y, small, m, m, sigma)
    np.testing.assert_array_equal(dc["residual_net"], dc["residual_match"])
    assert (dc["statistic"] == 0).all() and not dc["flag"].any()
    # the constrained fit (FF held, one complex amplitude) never explains more than matching's two amplitudes
    assert (dc["residual_match"] >= m["residual"] - 1e-4).all()
    # a network that predicts one T1H2O everywhere is contradicted where the data say otherwise
    wrong = {**m, "t1h2o": np.full(n, 1800.0), "b1": np.full(n, 0.5)}
    bad = data_consistency(y, small, wrong, m, sigma)
    assert bad["flag"].mean() > 0.5
    assert (bad["residual_net"] >= bad["residual_match"] - 1e-6).mean() > 0.95


def test_combined_sd():
    spread, net, ref, msd = np.array([1.0, 1.0, 1.0]), np.array([10.0, 10.0, 10.0]), np.array([0.0, 0.0, 9.5]), np.full(3, 6.0)
    np.testing.assert_allclose(combined_sd(spread, net, ref, msd), [np.sqrt(1 + 100 - 36)] * 2 + [1.0], rtol=1e-6)
    got = combined_sd(spread, net, ref, msd, np.array([True, False, True]))
    np.testing.assert_allclose(got, [np.sqrt(1 + 100 - 36), 1.0, 1.0], rtol=1e-6)


def test_calibration_scale_coverage_and_reliability(tmp_path):
    rng = np.random.default_rng(0)
    sd = rng.uniform(1, 5, 20000)
    err = np.abs(2.0 * sd * rng.standard_normal(sd.size))  # SDs half the true error
    assert coverage(err, sd) == pytest.approx(0.68, abs=0.02)
    k = fit_scale(err, sd)
    assert k == pytest.approx(2.0, rel=0.05) and coverage(err, k * sd) == pytest.approx(0.95, abs=0.005)
    pred, obs, count = reliability(err, k * sd)
    np.testing.assert_allclose(obs, pred, rtol=0.1)
    assert count.sum() == sd.size
    s = summarize(err, sd)
    assert s["spearman"] > 0.2 and s["n"] == sd.size
    cal = Calibration({"matching": {"t1h2o": k}}, {"fitted_on": ["x"]})
    path = cal.save(tmp_path / "cal.json")
    back = Calibration.load(path)
    assert back.scale("matching", "t1h2o") == pytest.approx(k) and back.scale("ensemble", "ff") == 1.0
    scaled = back.apply({"sd_t1h2o": np.ones(3, np.float32), "flag_t1h2o": np.zeros(3, np.uint8)}, "matching")
    assert scaled["sd_t1h2o"].dtype == np.float32 and scaled["sd_t1h2o"][0] == pytest.approx(k)
    masks = scoring_masks(np.array([[0.1, 0.7]]), np.array([[True, True]]))
    assert masks["t1h2o"].tolist() == [[True, False]] and masks["t1fat"].tolist() == [[False, True]]


@pytest.mark.parametrize("doc, msg", [({"format": "other"}, "format"),
                                      ({"format": "mrfrecon.sd-calibration/1", "scales": {"matching": {"t1h2o": -1}}}, "> 0"),
                                      ({"format": "mrfrecon.sd-calibration/1", "scales": {"nets": {}}}, "unknown method"),
                                      ({"format": "mrfrecon.sd-calibration/1", "scales": {"matching": {"t2": 1.0}}}, "unknown map")])
def test_bad_calibration_files(tmp_path, doc, msg):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(MrfreconError, match=msg):
        Calibration.load(p)


def test_bad_noise_levels(small):
    x = simulate(SEQ, t1h2o=np.full(3, 1000.0)).astype(np.complex64)
    m = match(x, small)
    for bad in (0.0, -1.0, float("nan"), "mad"):
        with pytest.raises(MrfreconError, match="sigma"):
            match_uncertainty(x, small, m, sigma=bad)
    with pytest.raises(MrfreconError, match="no background"):
        match_uncertainty(x, small, m, sigma="background")


def _checkpoint(path, *, maps=("t1h2o", "ff", "b1"), norm_max=2300.0, digest=None, target="reference"):
    from mrfrecon.checkpoint import Checkpoint

    meta = {"spec": {"name": "cohen2018"}, "maps": list(maps), "sequence_digest": digest or SEQ.digest(),
            "map_norm": {"names": list(maps), "minimum": [550.0] + [0.0] * (len(maps) - 1),
                         "maximum": [norm_max] + [1.0] * (len(maps) - 1)}, "target": target}
    return Checkpoint(path=path, state_dict={}, meta=meta)


def test_ensembles_that_cannot_be_pooled_are_refused(tmp_path):
    a = _checkpoint(tmp_path / "a.pt")
    check_ensemble([a, _checkpoint(tmp_path / "b.pt")])
    check_ensemble([a], spread=False)
    with pytest.raises(MrfreconError, match="at least 2 checkpoints"):
        check_ensemble([a])
    for other, what in ((_checkpoint(tmp_path / "c.pt", maps=("t1h2o", "ff")), "maps"),
                        (_checkpoint(tmp_path / "c.pt", digest="0" * 16), "sequence"),
                        (_checkpoint(tmp_path / "c.pt", norm_max=2000.0), "normalization"),
                        (_checkpoint(tmp_path / "c.pt", target="ground-truth"), "target")):
        with pytest.raises(MrfreconError, match=what) as e:
            check_ensemble([a, other])
        assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def scan_and_dict(tmp_path_factory, small):
    """A small noisy scan with a background, and the small dictionary saved."""
    from mrfrecon.io import Scan, save_scan

    root = tmp_path_factory.mktemp("unc")
    rng = np.random.default_rng(7)
    fg = np.zeros((1, 20, 20), bool)
    fg[0, 5:15, 4:16] = True
    n = int(fg.sum())
    x = simulate(SEQ, t1h2o=rng.uniform(900, 1500, n), ff=rng.uniform(0.05, 0.4, n), b1=rng.uniform(0.6, 0.9, n))
    series = np.zeros((1, SEQ.frames, 20, 20), np.complex64)
    series[:, :, fg[0]] = x.T[None]
    sigma = 0.05 * np.abs(x).mean()
    series += (sigma * (rng.standard_normal(series.shape) + 1j * rng.standard_normal(series.shape)) / np.sqrt(2)).astype(np.complex64)
    save_scan(root / "s000.h5", Scan(series=series, foreground=fg, sequence=SEQ))
    small.save(root / "d.h5")
    return root


def _run(*args):
    from click.testing import CliRunner

    from mrfrecon.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


def test_match_uncertainty_writes_sd_datasets_and_nifti_with_sidecars(scan_and_dict, tmp_path):
    import nibabel as nib

    from mrfrecon.inference import load_maps
    from mrfrecon.uncertainty.output import load_sd

    root = scan_and_dict
    cal = Calibration({"matching": {"t1h2o": 2.0}}).save(tmp_path / "cal.json")
    out = tmp_path / "maps"
    r = _run("match", root / "s000.h5", "--dictionary", root / "d.h5", "--out", out, "--uncertainty", "--sd-calibration", cal)
    assert r.exit_code == 0, r.output
    maps, _ = load_maps(out / "s000_maps.h5")
    sd = load_sd(out / "s000_maps.h5")
    fg = maps["valid"] > 0
    for k in fisher.SD_MAPS:
        assert sd[f"sd_{k}"].shape == maps[k].shape and np.isfinite(sd[f"sd_{k}"]).all()
        assert (sd[f"sd_{k}"][fg] > 0).all() and (sd[f"sd_{k}"][~fg] == 0).all()
        assert sd[f"flag_{k}"].dtype == np.uint8
    assert (sd["sigma"][fg] > 0).all()
    import h5py

    with h5py.File(out / "s000_maps.h5") as f:
        assert f["sd/t1h2o"].attrs["unit"] == "ms" and f["maps/t1h2o"].attrs["unit"] == "ms"
    # NIfTI: named like the map with SD in the desc label, BIDS units (s, %), sidecar with the method
    t1 = nib.load(out / "s000_desc-waterSD_T1map.nii.gz").get_fdata()
    np.testing.assert_allclose(t1.transpose(2, 1, 0), sd["sd_t1h2o"] / 1000.0, rtol=1e-6)
    ffsd = nib.load(out / "s000_desc-SD_FFmap.nii.gz").get_fdata()
    np.testing.assert_allclose(ffsd.transpose(2, 1, 0), sd["sd_ff"] * 100.0, rtol=1e-5)
    side = json.loads((out / "s000_desc-waterSD_T1map.json").read_text())
    assert side["Units"] == "s" and "Cramér–Rao" in side["EstimationAlgorithm"] and side["SDCalibration"] == str(cal)
    assert side["Sources"] == json.loads((out / "s000_desc-water_T1map.json").read_text())["Sources"]
    for name in ("desc-mrfSD_TB1map", "desc-fatSD_T1map"):
        assert (out / f"s000_{name}.nii.gz").is_file() and (out / f"s000_{name}.json").is_file()
    # the figure of a maps file with SDs: maps, SDs, flags
    r = _run("figure", out / "s000_maps.h5", "--out", tmp_path / "sd.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "sd.png").stat().st_size > 1000
    # the calibration's scale is applied: twice the uncalibrated SD
    r = _run("match", root / "s000.h5", "--dictionary", root / "d.h5", "--out", tmp_path / "raw.h5", "--uncertainty")
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "raw.h5") as f:
        np.testing.assert_allclose(2.0 * f["sd/t1h2o"][...], sd["sd_t1h2o"], rtol=1e-6)
        np.testing.assert_allclose(f["sd/ff"][...], sd["sd_ff"], rtol=1e-6)


def test_match_uncertainty_bad_input_is_one_line(scan_and_dict, tmp_path):
    root = scan_and_dict
    fp = tmp_path / "fp.npy"
    np.save(fp, simulate(SEQ, t1h2o=np.array([900.0, 1200.0]), df=20.0, ff=0.2))
    cases = [
        (("--noise", "residual"), "apply with --uncertainty"),
        (("--uncertainty", "--noise", "loud"), "--noise"),
        (("--uncertainty", "--noise", "-1"), "--noise"),
        (("--uncertainty", "--sd-calibration", tmp_path / "none.json"), "cannot read"),
    ]
    for extra, msg in cases:
        r = _run("match", root / "s000.h5", "--dictionary", root / "d.h5", "--out", tmp_path / "o.h5", *extra)
        assert r.exit_code == 2 and msg in r.output and r.output.strip().count("\n") == 0, r.output
    r = _run("match", fp, "--dictionary", root / "d.h5", "--out", tmp_path / "o.npz", "--uncertainty", "--noise", "background")
    assert r.exit_code == 2 and "no background" in r.output
    r = _run("match", fp, "--dictionary", root / "d.h5", "--out", tmp_path / "o.npz", "--uncertainty")
    assert r.exit_code == 0, r.output
    got = np.load(tmp_path / "o.npz")
    assert got["sd_t1h2o"].shape == (2,) and np.isfinite(got["sd_t1h2o"]).all()


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory):
    """A synthetic 10-frame cohort (tests/test_training.py) and two tiny networks of different seeds."""
    from test_training import make_cohort, short_sequence

    from mrfrecon.training import train

    root = tmp_path_factory.mktemp("ens")
    cohort = make_cohort(root / "cohort")
    cks = [train("cohen2018", cohort, root / f"run{s}", preset="tiny", width=0.1, patch=8, epochs=1, seed=s, log=None)
           for s in (0, 1)]
    seq = short_sequence()
    Dictionary.build(seq, Grid(t1h2o_ms=np.arange(850.0, 1651.0, 50.0), t1fat_ms=np.array([300.0, 350.0, 400.0]),
                               b1=np.arange(0.55, 1.26, 0.05), df_hz=np.array([-10.0, 0.0, 10.0]))).save(root / "d.h5")
    return root, cohort, cks


def test_predict_ensemble_writes_the_members_sd(tiny_ensemble, tmp_path):
    import nibabel as nib

    from mrfrecon.inference import load_maps, predict_scan
    from mrfrecon.io import load_scan
    from mrfrecon.uncertainty.output import load_sd

    root, cohort, cks = tiny_ensemble
    scan_path = cohort / "s003.h5"
    r = _run("predict", "--checkpoint", cks[0], "--checkpoint", cks[1], scan_path, "--out", tmp_path / "p")
    assert r.exit_code == 0, r.output
    maps, attrs = load_maps(tmp_path / "p" / "s003_maps.h5")
    sd = load_sd(tmp_path / "p" / "s003_maps.h5")
    scan = load_scan(scan_path)
    members = np.stack([predict_scan(c, scan)["t1h2o"] for c in cks])
    np.testing.assert_allclose(maps["t1h2o"], members.mean(0), rtol=1e-5)
    np.testing.assert_allclose(sd["sd_t1h2o"], members.std(0, ddof=1), rtol=1e-4, atol=1e-3)
    assert json.loads(attrs["checkpoint"]) == [str(c) for c in cks]
    img = nib.load(tmp_path / "p" / "s003_desc-waterSD_T1map.nii.gz").get_fdata().transpose(2, 1, 0)
    np.testing.assert_allclose(img, sd["sd_t1h2o"] / 1000.0, rtol=1e-5, atol=1e-9)
    side = json.loads((tmp_path / "p" / "s003_desc-waterSD_T1map.json").read_text())
    assert "ensemble of 2" in side["EstimationAlgorithm"] and side["Checkpoints"] == [str(c) for c in cks]
    # with a dictionary: the data-consistency check and the combined SD (never below the spread)
    r = _run("predict", "--checkpoint", cks[0], "--checkpoint", cks[1], scan_path, "--out", tmp_path / "q",
             "--dictionary", root / "d.h5", "--no-nifti")
    assert r.exit_code == 0, r.output
    sdq = load_sd(tmp_path / "q" / "s003_maps.h5")
    fg = scan.foreground
    assert (sdq["sd_t1h2o"][fg] >= sd["sd_t1h2o"][fg] - 1e-3).all() and np.isfinite(sdq["sd_t1h2o"]).all()
    import h5py

    with h5py.File(tmp_path / "q" / "s003_maps.h5") as f:
        for k in ("residual_net", "residual_match", "dc_statistic"):
            assert f[f"consistency/{k}"].shape == fg.shape
        flagged = (f["flags/t1h2o"][...] & 2) > 0
        stat = f["consistency/dc_statistic"][...]
    from mrfrecon.uncertainty.ensemble import CONTRADICTION_LEVEL

    np.testing.assert_array_equal(flagged, fg & (stat > CONTRADICTION_LEVEL))


def test_predict_ensemble_bad_input(tiny_ensemble, tmp_path):
    import torch

    root, cohort, cks = tiny_ensemble
    scan_path = cohort / "s003.h5"
    r = _run("predict", "--checkpoint", cks[0], scan_path, "--out", tmp_path / "p", "--dictionary", root / "d.h5")
    assert r.exit_code == 2 and "ensemble of one" in r.output and r.output.strip().count("\n") == 0
    # a member trained on other maps cannot be pooled
    obj = torch.load(cks[1], weights_only=True)
    meta = json.loads(obj["meta_json"])
    meta["map_norm"]["maximum"][0] += 100.0
    obj["meta_json"] = json.dumps(meta)
    torch.save(obj, tmp_path / "other.pt")
    r = _run("predict", "--checkpoint", cks[0], "--checkpoint", tmp_path / "other.pt", scan_path, "--out", tmp_path / "p")
    assert r.exit_code == 2 and "map normalization" in r.output and r.output.strip().count("\n") == 0
    assert not (tmp_path / "p" / "s003_maps.h5").exists()
