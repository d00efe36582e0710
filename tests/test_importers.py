"""Series from outside: a simulated scan exported to NIfTI (complex, magnitude + phase), NumPy,
MATLAB (v5, v7.3) and DICOM (written with pydicom here) and imported again gives the same maps
from `match` and `predict` as the HDF5 path; bad input is one line, exit 2, nothing written;
the estimated foreground is measured against the simulation's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from mrfrecon.cli import cli
from mrfrecon.cohort import simulate_scan
from mrfrecon.dictionary import Dictionary, Grid
from mrfrecon.io.foreground import estimate_foreground
from mrfrecon.io.readers import read_scan
from mrfrecon.io.scan import load_scan, save_scan
from mrfrecon.presets import load_preset
from mrfrecon.sequence import Sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), obj={})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One simulated thigh scan (32², 2 slices), a small dictionary, an untrained checkpoint."""
    import torch

    from mrfrecon.checkpoint import save_checkpoint
    from mrfrecon.data import MapNorm
    from mrfrecon.models import build

    root = tmp_path_factory.mktemp("importers")
    seq = Sequence.mrf_wf()
    cfg = {**load_preset("tiny")["cohort"], "matrix": 32, "slices": 2, "snr": 30.0}
    scan = simulate_scan("sub-01", "thigh", 7, cfg, seq, None)
    save_scan(root / "sub-01.h5", scan)
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[700, 1700, 100]]}, "t1fat_ms": {"values": [300, 350, 400]},
                           "b1": {"values": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}, "df_hz": {"values": [-40, -20, 0, 20, 40]}})
    Dictionary.build(seq, grid).save(root / "d.h5")
    torch.manual_seed(0)
    net = build("proposed", frames=175, maps=3, width=0.1)
    meta = {"spec": net.spec, "map_norm": MapNorm(("t1h2o", "ff", "b1"), (500.0, 0.0, 0.3), (2300.0, 1.0, 1.0)).to_dict(),
            "maps": ["t1h2o", "ff", "b1"], "sequence_json": seq.to_json(), "sequence_digest": seq.digest(),
            "frames": 175, "target": "reference", "epoch": 0, "val_nrmse": 1.0}
    save_checkpoint(root / "ck.pt", net.state_dict(), meta)
    aff = scan.affine_ras()
    nib.save(nib.Nifti1Image(scan.foreground.transpose(2, 1, 0).astype(np.uint8), aff), str(root / "mask.nii.gz"))
    return {"root": root, "scan": scan, "seq": seq, "aff": aff}


def _xyzt(series: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(series.transpose(3, 2, 0, 1))  # (s, t, y, x) → (x, y, z, t)


def _export(world, kind: str, folder: Path) -> list[Path]:
    """Write the scan's series as ``kind``; return the paths to give `import`/`match`."""
    scan, aff = world["scan"], world["aff"]
    folder.mkdir(parents=True, exist_ok=True)
    v = _xyzt(scan.series)
    if kind == "nifti-complex":
        p = folder / "sub-01_MRF.nii.gz"
        nib.save(nib.Nifti1Image(v, aff), str(p))
        return [p]
    if kind == "nifti-magphase":  # BIDS part- names: the phase file is found by name
        mag, pha = folder / "sub-01_part-mag_MRF.nii.gz", folder / "sub-01_part-phase_MRF.nii.gz"
        v = v.astype(np.complex128)  # float64 parts: the recombined complex64 series is the stored one
        nib.save(nib.Nifti1Image(np.abs(v), aff), str(mag))
        nib.save(nib.Nifti1Image(np.angle(v), aff), str(pha))
        return [mag]
    if kind == "npy":
        p = folder / "sub-01.npy"
        np.save(p, np.ascontiguousarray(scan.series.transpose(1, 0, 2, 3)))  # t, z, y, x
        return [p]
    if kind == "npz-realimag":
        p = folder / "sub-01.npz"
        np.savez(p, real=v.real, imag=v.imag)
        return [p]
    if kind == "mat5":
        p = folder / "sub-01.mat"
        scipy.io.savemat(str(p), {"series": v})
        return [p]
    if kind == "mat73":  # HDF5 with MATLAB's 512-byte header; MATLAB's (x, y, z, t) stored reversed
        p = folder / "sub-01.mat"
        with h5py.File(p, "w", userblock_size=512) as f:
            cplx = np.dtype([("real", "<f4"), ("imag", "<f4")])
            a = np.empty(v.T.shape, cplx)
            a["real"], a["imag"] = v.T.real, v.T.imag
            f.create_dataset("series", data=a).attrs["MATLAB_class"] = np.bytes_("single")
        with open(p, "r+b") as fh:
            fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116, b" "))
            fh.seek(124)
            fh.write(b"\x00\x02IM")
        return [p]
    if kind == "dicom":
        return [_write_dicom(world, folder / "dicom")]
    raise AssertionError(kind)


def _write_dicom(world, folder: Path, *, drop: tuple[int, int] | None = None, duplicate: bool = False,
                 magnitude_only: bool = False, slices: int | None = None) -> Path:
    """A magnitude + phase MRF series as DICOM files (Siemens-style ImageType M/P, phase stored
    0…4095 with slope 2 and intercept −4096, frames numbered by TemporalPositionIdentifier)."""
    from mrf_writers import dicom_file
    from pydicom.uid import MRImageStorage, generate_uid

    scan, aff = world["scan"], world["aff"]
    folder.mkdir(parents=True, exist_ok=True)
    s, t, ny, nx = scan.series.shape
    s = slices or s
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    row_dir = ras_to_lps @ aff[:3, 0] / np.linalg.norm(aff[:3, 0])
    col_dir = ras_to_lps @ aff[:3, 1] / np.linalg.norm(aff[:3, 1])
    dx, dy, dz = np.linalg.norm(aff[:3, :3], axis=0)
    mag = np.abs(scan.series)
    slope = float(mag.max()) / 60000.0
    series_uid = generate_uid()
    n = 0
    for k in range(s):
        ipp = ras_to_lps @ (aff @ [0, 0, k, 1])[:3]
        for f in range(t):
            for part in ("M",) if magnitude_only else ("M", "P"):
                if drop == (k, f) and part == "P":
                    continue
                ds = dicom_file(MRImageStorage)
                ds.Modality, ds.SeriesInstanceUID = "MR", series_uid
                ds.ImageType = ["ORIGINAL", "PRIMARY", part, "ND"]
                ds.ImagePositionPatient = [float(v) for v in ipp]
                ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
                ds.PixelSpacing = [float(dy), float(dx)]
                ds.SliceThickness = float(dz)
                ds.TemporalPositionIdentifier = f + 1
                ds.InstanceNumber = n + 1
                ds.Rows, ds.Columns = ny, nx
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
                if part == "M":
                    stored = np.round(mag[k, f] / slope)
                    ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
                else:
                    phase_scanner = np.angle(scan.series[k, f]) / np.pi * 4096  # −4096 … 4096
                    stored = np.clip(np.round((phase_scanner + 4096) / 2), 0, 4095)
                    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -4096.0
                ds.PixelData = stored.astype(np.uint16).tobytes()
                n += 1
                ds.save_as(str(folder / f"im{n:05d}.dcm"), enforce_file_format=True)
                if duplicate and n == 3:
                    ds.SOPInstanceUID = generate_uid()
                    ds.save_as(str(folder / "im_dup.dcm"), enforce_file_format=True)
    return folder


def _match_folder(world, inputs: list[Path], out: Path, *extra) -> dict[str, np.ndarray]:
    r = run("match", *inputs, "--dictionary", world["root"] / "d.h5", "--out", out, *extra)
    assert r.exit_code == 0, r.output
    maps_file = next(out.glob("*_maps.h5"))
    with h5py.File(maps_file) as f:
        return {k: f[f"maps/{k}"][()] for k in f["maps"]}


def _predict(world, inputs: list[Path], out: Path, *extra) -> dict[str, np.ndarray]:
    r = run("predict", "--checkpoint", world["root"] / "ck.pt", *inputs, "--out", out, *extra)
    assert r.exit_code == 0, r.output
    with h5py.File(next(out.glob("*_maps.h5"))) as f:
        return {k: f[f"maps/{k}"][()] for k in f["maps"]}


@pytest.fixture(scope="module")
def reference(world):
    root = world["root"]
    return {"match": _match_folder(world, [root / "sub-01.h5"], root / "ref_match"),
            "predict": _predict(world, [root / "sub-01.h5"], root / "ref_predict")}


EXACT = {"nifti-complex": (), "nifti-magphase": (), "npy": ("--axes", "t,z,y,x"), "npz-realimag": ("--axes", "x,y,z,t"),
         "mat5": ("--axes", "x,y,z,t"), "mat73": ("--axes", "x,y,z,t")}


@pytest.mark.parametrize("kind", list(EXACT))
def test_round_trip_gives_the_same_maps(world, reference, kind, tmp_path):
    inputs = _export(world, kind, tmp_path / "in")
    mask = ("--mask", world["root"] / "mask.nii.gz")
    fg = world["scan"].foreground
    m = _match_folder(world, inputs, tmp_path / "match", *EXACT[kind], *mask)
    for k in ("t1h2o", "ff", "b1", "df", "t1fat"):
        np.testing.assert_allclose(m[k][fg], reference["match"][k][fg], rtol=1e-5, atol=1e-5, err_msg=k)
    p = _predict(world, inputs, tmp_path / "pred", *EXACT[kind], *mask)
    for k in ("t1h2o", "ff", "b1"):
        np.testing.assert_allclose(p[k], reference["predict"][k], rtol=1e-4, atol=1e-4, err_msg=k)
    # import writes a scan that keeps the geometry
    r = run("import", *inputs, "--out", tmp_path / "scan.h5", *EXACT[kind], *mask)
    assert r.exit_code == 0, r.output
    s = load_scan(tmp_path / "scan.h5")
    if kind.startswith("nifti"):
        np.testing.assert_allclose(s.affine_ras(), world["aff"], atol=1e-4)
    np.testing.assert_array_equal(s.foreground, fg)


def test_dicom_round_trip(world, reference, tmp_path):
    """DICOM stores 16-bit integers: the series comes back quantized (magnitude to 1/60000 of its
    maximum, phase to 2π/4096), and nearly every voxel gets the same atom."""
    folder = _export(world, "dicom", tmp_path)[0]
    scan = read_scan(folder, mask=world["root"] / "mask.nii.gz")
    ref = world["scan"]
    np.testing.assert_allclose(scan.affine_ras(), world["aff"], atol=1e-4)
    assert scan.attrs["import"]["frame_order"] == "TemporalPositionIdentifier"
    assert scan.attrs["import"]["phase_units"] == "scanner"
    fg = ref.foreground
    a, b = np.moveaxis(scan.series, 1, -1)[fg], np.moveaxis(ref.series, 1, -1)[fg]
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err < 2e-3
    m = _match_folder(world, [folder], tmp_path / "match", "--mask", world["root"] / "mask.nii.gz")
    same = np.isclose(m["t1h2o"][fg], reference["match"]["t1h2o"][fg]) & np.isclose(m["b1"][fg], reference["match"]["b1"][fg])
    assert same.mean() > 0.97, same.mean()
    np.testing.assert_allclose(m["ff"][fg], reference["match"]["ff"][fg], atol=0.02)


def test_dicom_bad_series_are_one_line(world, tmp_path):
    d = world["root"] / "d.h5"
    cases = {"missing": dict(drop=(0, 10)), "duplicated": dict(duplicate=True), "magnitude": dict(magnitude_only=True)}
    expect = {"missing": "frames", "duplicated": "duplicated frame", "magnitude": "magnitude images only"}
    for name, kw in cases.items():
        folder = _write_dicom(world, tmp_path / name, slices=1, **kw)  # one slice shows each fault
        out = tmp_path / f"{name}.h5"
        r = run("import", folder, "--out", out)
        assert r.exit_code == 2 and expect[name] in r.output and r.output.count("\n") == 1, r.output
        assert not out.exists()
    import pydicom  # one image of another pixel spacing: mixed geometry

    folder = _write_dicom(world, tmp_path / "mixed", slices=1)
    f = sorted(folder.glob("*.dcm"))[5]
    ds = pydicom.dcmread(str(f))
    ds.PixelSpacing = [1.0, 1.0]
    ds.save_as(str(f))
    r = run("import", folder, "--out", tmp_path / "mixed.h5")
    assert r.exit_code == 2 and "mixed geometry" in r.output and "PixelSpacing" in r.output, r.output
    r = run("match", tmp_path / "magnitude", "--dictionary", d, "--out", tmp_path / "m")
    assert r.exit_code == 2 and "magnitude" in r.output and not (tmp_path / "m").exists()


def test_bad_inputs_are_one_line_and_write_nothing(world, tmp_path):
    scan = world["scan"]
    v = _xyzt(scan.series)
    cases = {}
    np.save(tmp_path / "mag.npy", np.abs(v))
    cases["mag.npy"] = (("--axes", "x,y,z,t"), "magnitude-only")
    np.save(tmp_path / "wrong_axes.npy", v)
    cases["wrong_axes.npy"] = (("--axes", "t,x,y,z"), "axis z has 175")
    np.save(tmp_path / "short.npy", v[..., :100])
    cases["short.npy"] = (("--axes", "x,y,z,t"), "no axis has the sequence's 175 frames")
    np.save(tmp_path / "noaxes.npy", v)
    cases["noaxes.npy"] = ((), "--axes")
    bad = v.copy()
    bad[3, 4, 0, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    cases["nan.npy"] = (("--axes", "x,y,z,t"), "NaN")
    nib.save(nib.Nifti1Image(np.abs(v).astype(np.float32), world["aff"]), str(tmp_path / "mag.nii.gz"))
    cases["mag.nii.gz"] = ((), "magnitude-only")
    nib.save(nib.Nifti1Image(v[..., :100], world["aff"]), str(tmp_path / "short.nii.gz"))
    cases["short.nii.gz"] = ((), "175 frames")
    (tmp_path / "notes.txt").write_text("hello")
    cases["notes.txt"] = ((), "supported: ")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    cases["other.h5"] = ((), "neither an mrfrecon scan nor ISMRMRD")
    for name, case in cases.items():
        extra, words = case
        for cmd in (("import", tmp_path / name, "--out", tmp_path / "o.h5"),
                    ("match", tmp_path / name, "--dictionary", world["root"] / "d.h5", "--out", tmp_path / "o")):
            r = run(*cmd, *extra)
            assert r.exit_code == 2, (name, r.output)
            assert words in r.output and r.output.count("\n") == 1 and "Traceback" not in r.output, (name, r.output)
        assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o").exists()
    r = run("predict", "--checkpoint", world["root"] / "ck.pt", tmp_path / "mag.nii.gz", "--out", tmp_path / "p")
    assert r.exit_code == 2 and "magnitude-only" in r.output and not (tmp_path / "p").exists()


def test_out_is_checked_before_any_work(world, tmp_path):
    (tmp_path / "afile").write_text("x")
    src = world["root"] / "sub-01.h5"
    r = run("match", src, "--dictionary", world["root"] / "d.h5", "--out", tmp_path / "afile" / "maps")
    assert r.exit_code == 2 and "afile" in r.output and "is a file" in r.output
    r = run("match", src, "--dictionary", world["root"] / "d.h5", "--out", tmp_path / "maps.nii.gz")
    assert r.exit_code == 2 and "folder" in r.output
    r = run("predict", "--checkpoint", world["root"] / "ck.pt", src, "--out", tmp_path / "afile")
    assert r.exit_code == 2 and "is a file" in r.output
    r = run("import", src, "--out", src)
    assert r.exit_code == 2 and "input" in r.output


def test_match_writes_bids_maps_with_sidecars(world, reference, tmp_path):
    out = world["root"] / "ref_match"
    names = sorted(p.name for p in out.iterdir())
    assert "sub-01_desc-water_T1map.nii.gz" in names and "sub-01_FFmap.json" in names and "sub-01_dseg.tsv" in names
    doc = json.loads((out / "sub-01_desc-water_T1map.json").read_text())
    assert doc["Units"] == "s" and "dictionary" in doc["Method"] and len(doc["Method"]["dictionary"]["sha256"]) == 64
    img = nib.load(out / "sub-01_desc-water_T1map.nii.gz")
    np.testing.assert_allclose(img.affine, world["aff"], atol=1e-5)
    fg = world["scan"].foreground
    np.testing.assert_allclose(np.asarray(img.dataobj).transpose(2, 1, 0)[fg], reference["match"]["t1h2o"][fg] / 1000, rtol=1e-6)
    side = json.loads((world["root"] / "ref_predict" / "sub-01_desc-mrf_TB1map.json").read_text())
    assert side["Units"] == "%" and "checkpoint" in side["Method"]


def test_estimated_foreground_against_ground_truth(world):
    """The documented method, measured on simulated scans (docs/IMPORT.md records the numbers)."""
    seq = world["seq"]
    cfg = {**load_preset("tiny")["cohort"], "matrix": 48, "slices": 2, "snr": 10.0}
    for region, seed in (("thigh", 1), ("leg", 2)):
        s = simulate_scan("x", region, seed, cfg, seq, None)
        fg, gt = estimate_foreground(s.series), s.foreground
        dice = 2 * (fg & gt).sum() / (fg.sum() + gt.sum())
        muscle = s.labels >= 11
        assert dice > 0.95, (region, dice)
        assert (fg & muscle).sum() / muscle.sum() > 0.99, region  # the ROIs of R² are kept
        assert (fg & ~gt).sum() / gt.sum() < 0.03, region
