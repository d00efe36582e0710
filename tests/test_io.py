"""Scan files: round trip, validation with messages naming the dataset, NIfTI export, atomic writes."""

import hashlib
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from mrfrecon import MrfreconError, Sequence
from mrfrecon.io import Scan, atomic_path, load_scan, save_scan


def _scan(seed=0, slices=2, size=12):
    rng = np.random.default_rng(seed)
    seq = Sequence.mrf_wf()
    series = (rng.standard_normal((slices, 175, size, size)) + 1j * rng.standard_normal((slices, 175, size, size))).astype(np.complex64)
    fg = rng.random((slices, size, size)) > 0.3
    maps = {"t1h2o": rng.uniform(800, 1600, fg.shape).astype(np.float32), "ff": rng.uniform(0, 1, fg.shape).astype(np.float32)}
    labels = (fg * rng.integers(1, 4, fg.shape)).astype(np.int16)
    return Scan(series=series, foreground=fg, sequence=seq, maps=maps, reference={"ff": maps["ff"] * 0.9},
                labels=labels, label_names={1: "left_soleus", 2: "right_soleus", 3: "subcutaneous_fat"},
                attrs={"subject": "s000", "region": "leg", "seed": seed})


def test_round_trip(tmp_path):
    s = _scan()
    p = save_scan(tmp_path / "a.h5", s)
    t = load_scan(p)
    np.testing.assert_array_equal(t.series, s.series)
    np.testing.assert_array_equal(t.foreground, s.foreground)
    np.testing.assert_array_equal(t.maps["t1h2o"], s.maps["t1h2o"])
    assert t.label_names == s.label_names and t.attrs == s.attrs and t.sequence == s.sequence
    np.testing.assert_array_equal(t.t1h2o_mask(), s.foreground & (s.reference["ff"] < 0.65))
    light = load_scan(p, series=False)
    assert light.series.shape == (2, 0, 12, 12) and "ff" in light.reference


def test_float16_storage_halves_size_with_small_error(tmp_path):
    s = _scan()
    a = save_scan(tmp_path / "a.h5", s)
    b = save_scan(tmp_path / "b.h5", s, storage="float16")
    assert b.stat().st_size < 0.6 * a.stat().st_size
    t = load_scan(b)
    err = np.abs(t.series - s.series).max() / np.abs(s.series).max()
    assert err < 1e-3


def test_rejects_bad_files(tmp_path):
    p = save_scan(tmp_path / "a.h5", _scan())
    raw = p.read_bytes()
    (tmp_path / "t.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(MrfreconError, match="t.h5"):
        load_scan(tmp_path / "t.h5")

    def corrupt(name, fn):
        q = tmp_path / name
        q.write_bytes(raw)
        with h5py.File(q, "a") as f:
            fn(f)
        return q

    def nan_map(f):
        d = f["maps/ff"][()]
        d[0, 0, 0] = np.nan
        del f["maps/ff"]
        f["maps/ff"] = d

    def reshape_mask(f):
        del f["masks/foreground"]
        f["masks/foreground"] = np.ones((2, 5, 5), np.uint8)

    def wrong_dtype(f):
        attrs = dict(f["series"].attrs)
        del f["series"]
        f["series"] = np.zeros((2, 175, 12, 12), np.float32)
        f["series"].attrs.update(attrs)

    def nan_series(f):
        f["series"][0, 3, 1, 1] = np.nan + 0j

    for name, fn, msg in [("nan.h5", nan_map, "maps/ff: contains NaN"), ("shape.h5", reshape_mask, "masks/foreground"),
                          ("dtype.h5", wrong_dtype, "series: expected dtype"), ("nans.h5", nan_series, r"series: contains NaN")]:
        with pytest.raises(MrfreconError, match=msg) as e:
            load_scan(corrupt(name, fn))
        assert name in str(e.value)


def test_save_refuses_inconsistent_scan(tmp_path):
    s = _scan()
    s.maps["b1"] = np.ones((3, 3, 3), np.float32)
    with pytest.raises(MrfreconError, match="maps/b1: expected shape"):
        save_scan(tmp_path / "x.h5", s)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new, partial")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_bids_maps_and_sidecars(tmp_path):
    from mrfrecon.io.nifti import export_maps, provenance

    s = _scan()
    s.maps["b1"] = np.full(s.shape, 0.8, np.float32)
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"weights")
    side = provenance("CNN proposed", "Balsiger et al. 2019", ["in.h5"], {"checkpoint": ck})
    paths = export_maps(s.maps, tmp_path / "nii", "s000", s.affine_ras(), sidecar=side, foreground=s.foreground)
    names = sorted(p.name for p in paths)
    assert names == ["s000_FFmap.json", "s000_FFmap.nii.gz", "s000_desc-foreground_mask.json",
                     "s000_desc-foreground_mask.nii.gz", "s000_desc-mrf_TB1map.json", "s000_desc-mrf_TB1map.nii.gz",
                     "s000_desc-water_T1map.json", "s000_desc-water_T1map.nii.gz"]
    t1 = nib.load(tmp_path / "nii" / "s000_desc-water_T1map.nii.gz")
    assert t1.shape == (12, 12, 2)
    np.testing.assert_allclose(t1.header.get_zooms(), (1.0, 1.0, 8.0))
    # BIDS units: T1map in seconds, TB1map and FF in percent (bids-specification suffixes.yaml)
    np.testing.assert_allclose(np.asarray(t1.dataobj)[3, 4, 1], s.maps["t1h2o"][1, 4, 3] / 1000, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(nib.load(tmp_path / "nii" / "s000_desc-mrf_TB1map.nii.gz").dataobj), 80.0, rtol=1e-6)
    doc = json.loads((tmp_path / "nii" / "s000_desc-water_T1map.json").read_text())
    # outside a BIDS dataset the sources are file: URIs (BIDS URIs need a dataset to resolve against)
    assert doc["Units"] == "s" and doc["Sources"] == [Path("in.h5").resolve().as_uri()]
    assert doc["EstimationSoftwareName"] == "mrfrecon" and "BasedOn" not in doc
    assert doc["Method"]["checkpoint"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert json.loads((tmp_path / "nii" / "s000_FFmap.json").read_text())["Units"] == "%"


def test_right_muscle_lands_at_the_patients_right_in_ras(tmp_path):
    """The phantoms put the patient's right on the image's left (radiological view) and anterior at
    the top; in the written NIfTI's world coordinates (RAS+) the right rectus femoris must have
    x > 0 and lie anterior (larger y) of the right biceps femoris."""
    from mrfrecon.io.nifti import export_maps
    from mrfrecon.phantoms import make_phantom

    ph = make_phantom("thigh", seed=3, matrix=64, slices=2)
    series = np.ones((2, 175, 64, 64), np.complex64) * 1j
    s = Scan(series=series, foreground=ph.foreground, sequence=Sequence.mrf_wf(), maps={"ff": ph.maps["ff"]},
             labels=ph.labels, label_names=ph.label_names, attrs={"voxel_mm": [350 / 64, 350 / 64, 8.0]})
    save_scan(tmp_path / "s.h5", s)
    s = load_scan(tmp_path / "s.h5")  # the file states its geometry
    export_maps(s.maps, tmp_path, "s", s.affine_ras(), labels=s.labels, label_names=s.label_names)
    img = nib.load(tmp_path / "s_dseg.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    lab = np.asarray(img.dataobj)
    rows = dict(line.split("\t") for line in (tmp_path / "s_dseg.tsv").read_text().splitlines()[1:])
    ids = {v: int(k) for k, v in rows.items()}

    def centre(name):
        ijk = np.argwhere(lab == ids[name])
        return (img.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].mean(1)

    rf, bf, lrf = centre("right_rectus_femoris"), centre("right_biceps_femoris"), centre("left_rectus_femoris")
    assert rf[0] > 20 and lrf[0] < -20  # right of the midline in RAS (x towards the patient's right)
    assert rf[1] > bf[1] + 20  # rectus femoris anterior of biceps femoris


def test_cohort_index(tmp_path):
    from mrfrecon.io import CohortIndex, split_counts

    assert split_counts(95) == (55, 20, 20) and split_counts(10) == (6, 2, 2) and split_counts(3) == (1, 1, 1)
    for i in range(3):
        save_scan(tmp_path / f"s{i}.h5", _scan(i))
    idx = CohortIndex(tmp_path, {f"s{i}": {"file": f"s{i}.h5", "region": "leg"} for i in range(3)},
                      {"train": ["s0"], "val": ["s1"], "test": ["s2"]})
    idx.save()
    back = CohortIndex.load(tmp_path)
    assert back.paths("test") == [tmp_path / "s2.h5"]
    (tmp_path / "s1.h5").unlink()
    with pytest.raises(MrfreconError, match="s1.h5' not found"):
        CohortIndex.load(tmp_path)
    with pytest.raises(MrfreconError, match="not a cohort folder"):
        CohortIndex.load(tmp_path / "..")
