"""Cohort simulation end to end: maps → series → scan files with references, resumable, reproducible."""

import h5py
import numpy as np
import pytest

import mrfrecon.cohort as cohort_mod
from mrfrecon import MrfreconError, Sequence, simulate
from mrfrecon.cohort import acquire, simulate_cohort
from mrfrecon.io import CohortIndex, load_scan

SEQ = Sequence.mrf_wf()
SMALL = {"matrix": 32, "slices": 1}


def _disc_maps(n=32, ff=0.2, t1=1200.0):
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    pd = (np.hypot(yy, xx) < n / 3).astype(float)
    return {"t1h2o": np.full((n, n), t1), "ff": np.full((n, n), ff), "b1": np.full((n, n), 0.8),
            "df": np.full((n, n), 20.0), "t1fat": np.full((n, n), 350.0), "pd": pd}


def test_acquire_user_maps_follows_the_signal_model():
    maps = _disc_maps()
    info = {}
    series = acquire(SEQ, maps, seed=1, snr=np.inf, info=info)
    assert series.shape == (1, 175, 32, 32) and series.dtype == np.complex64
    assert info["basis_error"] < 0.01
    # a uniform disc: inside it, away from the edge, the frames follow the fingerprint
    truth = simulate(SEQ, t1h2o=1200.0, ff=0.2, b1=0.8, df=20.0)
    centre = series[0, :, 14:18, 14:18].mean(axis=(1, 2))
    corr = abs(np.vdot(centre, truth)) / np.linalg.norm(centre) / np.linalg.norm(truth)
    assert corr > 0.99
    np.testing.assert_allclose(np.linalg.norm(centre) / np.linalg.norm(truth), 1.0, rtol=0.05)
    noisy = acquire(SEQ, maps, seed=1, snr=5.0)
    again = acquire(SEQ, maps, seed=1, snr=5.0)
    np.testing.assert_array_equal(noisy, again)
    # the measured frame noise matches the requested image-domain SNR (outside the object)
    bg = np.abs(np.moveaxis(noisy - series, 1, -1)[0])[~(maps["pd"] > 0)]
    level = np.abs(truth).mean()
    assert 0.7 < level / np.sqrt(np.mean(bg**2)) / 5.0 < 1.3


@pytest.mark.parametrize("mutate, msg", [(lambda m: m.pop("b1"), "missing b1"),
                                         (lambda m: m["ff"].__setitem__((5, 5), np.nan), "maps/ff: contains NaN"),
                                         (lambda m: m.__setitem__("df", np.zeros((3, 3))), "maps/df: shape"),
                                         (lambda m: m["ff"].__setitem__((16, 16), 1.5), "maps/ff: value 1.5")])
def test_acquire_rejects_bad_maps(mutate, msg):
    maps = _disc_maps()
    mutate(maps)
    with pytest.raises(MrfreconError, match=msg):
        acquire(SEQ, maps, seed=0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(root, preset="tiny", subjects=3, seed=7, overrides=SMALL)


def test_cohort_files_and_split(cohort):
    idx = CohortIndex.load(cohort.root)
    assert sorted(idx.subjects) == ["sub-000", "sub-001", "sub-002"]
    assert {k: len(v) for k, v in idx.split.items()} == {"train": 1, "val": 1, "test": 1}
    regions = set()
    for sid in idx.subjects:
        scan = load_scan(idx.path(sid))
        regions.add(scan.attrs["region"])
        assert scan.series.shape == (1, 175, 32, 32)
        assert set(scan.maps) == {"t1h2o", "ff", "b1", "df", "t1fat", "pd"}
        assert "residual" in scan.reference and scan.foreground.any() and scan.labels is not None
        np.testing.assert_array_equal(scan.foreground, scan.maps["pd"] > 0)
        # the reference maps are matching of the series: close to the truth, not equal to it
        fg = scan.foreground
        err = np.abs(scan.reference["b1"][fg] - scan.maps["b1"][fg])
        assert 0 < np.median(err) < 0.1
    assert regions == {"thigh", "leg"}


def test_same_seed_identical_files_and_resume(cohort, tmp_path, monkeypatch):
    # a second run into a fresh folder, killed after the first scan
    calls = {"n": 0}
    real = cohort_mod.save_scan

    def dying(path, scan, **kw):
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return real(path, scan, **kw)

    monkeypatch.setattr(cohort_mod, "save_scan", dying)
    with pytest.raises(KeyboardInterrupt):
        simulate_cohort(tmp_path, preset="tiny", subjects=3, seed=7, overrides=SMALL)
    assert sorted(p.name for p in tmp_path.glob("sub-*")) == ["sub-000.h5"]  # nothing half-written
    assert not list(tmp_path.glob(".*tmp"))
    # a truncated scan (as a crash of another tool might leave) is redone, not trusted
    (tmp_path / "sub-001.h5").write_bytes((tmp_path / "sub-000.h5").read_bytes()[:1000])
    monkeypatch.setattr(cohort_mod, "save_scan", real)
    simulate_cohort(tmp_path, preset="tiny", subjects=3, seed=7, overrides=SMALL)
    for sid in ("sub-000", "sub-001", "sub-002"):
        a, b = load_scan(cohort.root / f"{sid}.h5"), load_scan(tmp_path / f"{sid}.h5")
        np.testing.assert_array_equal(a.series, b.series)
        for k in a.reference:
            np.testing.assert_array_equal(a.reference[k], b.reference[k])
        assert a.attrs == b.attrs
        with h5py.File(cohort.root / f"{sid}.h5") as fa, h5py.File(tmp_path / f"{sid}.h5") as fb:
            assert dict(fa.attrs) == dict(fb.attrs)


def test_index_records_the_subjects_made_and_a_cohort_grows_keeping_its_scans(cohort, tmp_path):
    """--subjects N: the index records N (not the preset's count), and the count is no scan
    setting: a rerun with more subjects keeps the scans made and adds the new ones."""
    import shutil

    idx = CohortIndex.load(cohort.root)
    assert idx.attrs["subjects"] == 3 and "subjects" not in idx.attrs["cohort"]
    grown = tmp_path / "c"
    shutil.copytree(cohort.root, grown)
    stamps = {p.name: p.stat().st_mtime_ns for p in grown.glob("sub-*.h5")}
    idx4 = simulate_cohort(grown, preset="tiny", subjects=4, seed=7, overrides=SMALL)
    assert idx4.attrs["subjects"] == 4 and sorted(idx4.subjects) == [f"sub-{i:03d}" for i in range(4)]
    assert {p.name: p.stat().st_mtime_ns for p in grown.glob("sub-*.h5") if p.name in stamps} == stamps
    assert sorted(sum(idx4.split.values(), [])) == sorted(idx4.subjects)


def test_cli_from_nifti_maps(tmp_path):
    import nibabel as nib
    from click.testing import CliRunner

    from mrfrecon.cli import cli

    folder = tmp_path / "maps"
    folder.mkdir()
    for k, v in _disc_maps().items():
        nib.save(nib.Nifti1Image(v.T[:, :, None].astype(np.float32), np.eye(4)), str(folder / f"{k}.nii.gz"))
    r = CliRunner().invoke(cli, ["simulate", "--from-maps", str(folder), "--out", str(tmp_path / "scan.h5"),
                                 "--no-reference"], obj={})
    assert r.exit_code == 0, r.output
    scan = load_scan(tmp_path / "scan.h5")
    assert scan.series.shape == (1, 175, 32, 32)
    np.testing.assert_allclose(scan.maps["ff"][0, 16, 16], 0.2)
    (folder / "b1.nii.gz").unlink()
    r = CliRunner().invoke(cli, ["simulate", "--from-maps", str(folder), "--out", str(tmp_path / "x.h5")], obj={})
    assert r.exit_code == 2 and "b1.nii.gz" in r.output


def test_figure_command(cohort, tmp_path):
    from click.testing import CliRunner

    from mrfrecon.cli import cli

    out = tmp_path / "fig.png"
    r = CliRunner().invoke(cli, ["figure", str(cohort.root / "sub-000.h5"), "--out", str(out)], obj={})
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
