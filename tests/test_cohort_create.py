"""`mrfrecon cohort create`: a training cohort from scans in every importable format, as the real
tools write them (dcm2niix pairs in one folder per subject, classic Siemens DICOM, siemens_to_ismrmrd
radial raw data, NumPy, an mrfrecon scan), with ROI segmentations as NIfTI label images and a BIDS
dseg.tsv table; end to end through `train --init`, `predict` and `evaluate --rois`; resumable and
locked; every bad input one line, exit status 2, nothing written.

Small and fast: thigh phantoms at 24² × 2 slices, a 10-frame sequence (80 spokes of the MRF-WF
schedule), a small dictionary.
"""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from mrf_writers import coefficient_images, stored, write_classic, write_dcm2niix
from test_ismrmrd_raw import write_siemens

import mrfrecon.assemble as assemble
from mrfrecon.acquisition import coil_sensitivities, radial_trajectory, simulate_kspace
from mrfrecon.assemble import create_cohort, parse_split, read_label_table, split_sizes
from mrfrecon.cli import cli
from mrfrecon.cohort import reference_maps
from mrfrecon.dictionary import Dictionary, Grid
from mrfrecon.errors import MrfreconError
from mrfrecon.fs import FolderLock
from mrfrecon.io import CohortIndex, Scan, load_scan, save_scan
from mrfrecon.io.geometry import affine_from_axcodes
from mrfrecon.io.readers import read_scan
from mrfrecon.phantoms import make_phantom
from mrfrecon.physics import simulate
from mrfrecon.sequence import Sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")
N, SLICES, FRAMES = 24, 2, 10  # N is test_ismrmrd_raw's matrix (its writer's header)
VOXEL = (350.0 / N, 350.0 / N, 8.0)
KEYS = ("t1h2o", "t1fat", "b1", "df", "ff", "pd")


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), obj={})


def short_sequence() -> Sequence:
    """80 spokes of the MRF-WF schedule (every ~18th), 8 per frame → 10 frames."""
    full = Sequence.mrf_wf()
    idx = np.linspace(0, full.spokes - 1, 8 * FRAMES).astype(int)
    return Sequence(flip_angle_deg=full.flip_angle_deg[idx], te_ms=full.te_ms[idx], tr_ms=full.tr_ms[idx],
                    ti_ms=full.ti_ms, spokes_per_frame=8, name="mrf-wf-short")


def image_series(seq: Sequence, ph, seed: int, snr: float = 40.0) -> np.ndarray:
    """complex64 ``(slices, frames, y, x)``: the phantom's fingerprints plus complex noise."""
    fg = ph.foreground
    fp = simulate(seq, *(ph.maps[k][fg].astype(np.float64) for k in KEYS))
    series = np.zeros((fg.size, seq.frames), np.complex64)
    series[np.flatnonzero(fg)] = fp
    series = series.reshape(*fg.shape, seq.frames).transpose(0, 3, 1, 2)
    rng = np.random.default_rng(seed)
    sd = np.abs(fp).mean() / snr
    return (series + sd * (rng.standard_normal(series.shape) + 1j * rng.standard_normal(series.shape))).astype(np.complex64)


def raw_kspace(seq: Sequence, ph, seed: int, coils: int = 2) -> np.ndarray:
    """Radial k-space ``(slices, coils, spokes, 2N)`` of the phantom (golden angle, oversampling 2)."""
    basis, img, _ = coefficient_images(seq, ph, 3)
    traj = radial_trajectory(seq, matrix=N)
    ksp = simulate_kspace(img, basis, traj, coils=coil_sensitivities(coils, N, seed=seed))
    rng = np.random.default_rng(seed)
    sd = 0.02 * np.abs(ksp).mean()
    return (ksp + sd * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape))).astype(np.complex64)


def save_nifti(vol_syx: np.ndarray, aff: np.ndarray, path, dtype=np.int16) -> None:
    """A ``(slices, y, x)`` volume as NIfTI ``(x, y, z)`` with the scan's affine (sform and qform)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ascontiguousarray(vol_syx.transpose(2, 1, 0)).astype(dtype), aff)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=1)
    nib.save(img, str(path))


def write_table(names: dict[int, str], path) -> None:
    path.write_text("index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(names.items())))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six thigh scans in five formats, their segmentations (the phantoms' labels) and a table."""
    root = tmp_path_factory.mktemp("cohort_create")
    seq = short_sequence()
    aff = affine_from_axcodes(VOXEL, (N, N, SLICES))  # LPS, as the simulated scans
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[600, 2000, 100]]}, "t1fat_ms": {"values": [300, 400]},
                           "b1": {"ranges": [[0.4, 1.2, 0.1]]}, "df_hz": {"values": [-40, -20, 0, 20, 40]}})
    Dictionary.build(seq, grid).save(root / "d.h5")
    ph = {i: make_phantom("thigh", seed=i, matrix=N, slices=SLICES) for i in range(1, 7)}
    w = {"root": root, "seq": seq, "aff": aff, "ph": ph, "inputs": {}}

    def scan_of(i):
        return Scan(series=image_series(seq, ph[i], i), foreground=ph[i].foreground, sequence=seq, affine=aff,
                    attrs={"subject": f"sub-{i:02d}"})

    for i in (1, 2):  # dcm2niix, one folder per subject, the same file names (-f %p)
        s = scan_of(i)
        w["inputs"][i] = write_dcm2niix({"scan": s, "seq": seq, "aff": aff, "stored": stored(s)}, root / "nii" / f"sub-{i:02d}")
    s = scan_of(3)  # classic DICOM as a Siemens console exports it
    w["inputs"][3] = write_classic({"scan": s, "seq": seq, "aff": aff, "stored": stored(s)}, root / "dicom" / "sub-03")
    (root / "raw").mkdir()  # siemens_to_ismrmrd radial raw data (oversampled readout, header without it)
    w["inputs"][4] = write_siemens(root / "raw" / "sub-04_MRF.h5", {"seq": seq, "aff": aff}, [raw_kspace(seq, ph[4], 4)])
    (root / "npy").mkdir()  # NumPy in the order (x, y, z, t): no geometry in the file
    np.save(root / "npy" / "sub-05_MRF.npy", scan_of(5).series.transpose(3, 2, 0, 1))
    w["inputs"][5] = root / "npy" / "sub-05_MRF.npy"
    (root / "scans").mkdir()  # an mrfrecon scan (as `mrfrecon import` writes one)
    w["inputs"][6] = save_scan(root / "scans" / "sub-06.h5", scan_of(6))
    names = ph[1].label_names
    write_table(names, root / "labels.tsv")
    for i in range(1, 7):  # the segmentations: BIDS dseg names in one folder, a dseg.tsv at its top
        save_nifti(ph[i].labels, aff, root / "rois" / f"sub-{i:02d}" / f"sub-{i:02d}_dseg.nii.gz")
    write_table(names, root / "rois" / "dseg.tsv")
    save_nifti(ph[3].foreground, aff, root / "masks" / "sub-03_mask.nii.gz", np.uint8)
    return w


def inputs(world, which=range(1, 7)) -> list:
    return [world["inputs"][i] for i in which]


def npy_options() -> list[str]:
    return ["--axes", "x,y,z,t", "--voxel-mm", ",".join(f"{v!r}" for v in VOXEL), "--orientation", "LPS"]


def create(world, out, *extra, which=range(1, 7)):
    return run("cohort", "create", *inputs(world, which), "--dictionary", world["root"] / "d.h5", "--out", out,
               *(npy_options() if 5 in which else []), *extra)


@pytest.fixture(scope="module")
def made(world, tmp_path_factory):
    """The cohort of all six scans, with ROIs from the folder and one mask."""
    out = tmp_path_factory.mktemp("made") / "cohort"
    r = create(world, out, "--rois", world["root"] / "rois", "--mask", world["root"] / "masks",
               "--seed", 3)
    assert r.exit_code == 0, r.output
    return out


# --------------------------------------------------------------------------- the cohort
def test_cohort_of_every_format(world, made):
    idx = CohortIndex.load(made)
    ids = {"sub-01_MRF": "sub-01", "sub-02_MRF": "sub-02", "sub-03": "sub-03", "sub-04_MRF": "sub-04",
           "sub-05_MRF": "sub-05", "sub-06": "sub-06"}  # dcm2niix's MRF.nii.gz take their folders' subject
    assert {k: v["subject"] for k, v in idx.subjects.items()} == ids
    assert {k: v["kind"] for k, v in idx.subjects.items()} == {
        "sub-01_MRF": "nifti", "sub-02_MRF": "nifti", "sub-03": "dicom", "sub-04_MRF": "ismrmrd", "sub-05_MRF": "numpy",
        "sub-06": "scan"}
    assert {k: len(v) for k, v in idx.split.items()} == {"train": 4, "val": 1, "test": 1}  # 55/20/20 of 6 subjects
    a = idx.attrs
    assert a["kind"] == "scans" and a["ground_truth"] is False and a["frames"] == FRAMES and not a["mixed_pixel_size"]
    assert a["split"] == {"fractions": "55/20/20", "seed": 3, "by": "subject"}
    assert list(a["pixel_mm"]) == ["14.58 × 14.58 mm"]
    for sid, e in idx.subjects.items():
        scan = load_scan(idx.path(sid))
        i = int(e["subject"][-2:])
        ph = world["ph"][i]
        assert scan.series.shape == (SLICES, FRAMES, N, N) and not scan.maps
        assert set(scan.reference) == {"t1h2o", "ff", "b1", "df", "t1fat", "pd", "residual"}
        fg = scan.foreground
        assert fg.any() and (scan.reference["t1h2o"][fg] > 0).all() and (scan.reference["t1h2o"][~fg] == 0).all()
        np.testing.assert_array_equal(scan.labels, ph.labels)
        assert set(scan.label_names.values()) >= {"left_rectus_femoris", "right_biceps_femoris"}
        assert scan.attrs["cohort_kind"] == "scans" and "FF < 0.65" in scan.attrs["masks"]["t1h2o"]
        assert e["t1h2o_voxels"] == int((fg & (scan.reference["ff"] < 0.65)).sum()) < e["foreground_voxels"]
        np.testing.assert_allclose(scan.affine_ras(), world["aff"], atol=1e-3)
        if sid == "sub-03":  # the mask given for it
            np.testing.assert_array_equal(fg, ph.foreground)
    # the references are the matching of the imported series (the simulated cohorts' method)
    d = Dictionary.load(world["root"] / "d.h5")
    got = load_scan(made / "sub-03.h5")
    direct = read_scan(world["inputs"][3], sequence=world["seq"])
    ref = reference_maps(direct.series, got.foreground, d)
    for k in ("t1h2o", "ff", "b1"):
        np.testing.assert_array_equal(got.reference[k], ref[k])
    np.testing.assert_allclose(got.series, direct.series, rtol=1e-6)
    assert not (made / assemble.STAGING).exists() and not (made / ".mrfrecon.lock").exists()


def test_end_to_end_train_init_predict_evaluate(world, made, tmp_path):
    """imported scans → cohort create → train --init → predict → evaluate with the ROIs (R²)."""
    from mrfrecon.training import train

    kw = ["--width", "0.1", "--patch", "8", "--epochs", "1"]
    init = train("proposed", made, tmp_path / "pre", preset="tiny", width=0.1, patch=8, epochs=1, log=None)
    r = run("train", "--model", "proposed", "--cohort", made, "--out", tmp_path / "fine", "--init", init, *kw)
    assert r.exit_code == 0, r.output
    ck = tmp_path / "fine" / "checkpoint_best.pt"
    test = CohortIndex.load(made).paths("test")
    r = run("predict", "--checkpoint", ck, *test, "--out", tmp_path / "pred", "--no-nifti")
    assert r.exit_code == 0, r.output
    r = run("evaluate", "--predictions", tmp_path / "pred", "--cohort", made, "--out", tmp_path / "eval",
            "--rois", "major-muscles")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "eval" / "summary.csv")))
    r2 = {row["map"]: row for row in rows if row["metric"] == "r2_determination"}
    assert set(r2) == {"t1h2o", "ff", "b1"}
    for row in r2.values():  # the 20 muscle ROIs of the test scan enter R²
        assert int(row["n"]) >= 10 and np.isfinite(float(row["mean"])) and row["rois"] == "major-muscles"
    # the experiments take it as a simulated cohort
    r = run("experiment", "occlusion", "--checkpoint", ck, "--cohort", made, "--out", tmp_path / "occ", "--threads", "1")
    assert r.exit_code == 0 and "most important frames" in r.output, r.output
    # a cohort of real scans has no ground truth to train on or to evaluate against: refused with the reason
    r = run("train", "--model", "proposed", "--cohort", made, "--out", tmp_path / "gt", "--target", "ground-truth", *kw)
    assert r.exit_code == 2 and "cohort of real scans" in r.output and "--target reference" in r.output, r.output
    assert r.output.count("\n") == 1 and not (tmp_path / "gt" / "log.csv").exists()
    r = run("evaluate", "--predictions", tmp_path / "pred", "--cohort", made, "--out", tmp_path / "ev2",
            "--against", "ground-truth")
    assert r.exit_code == 2 and "real scan" in r.output, r.output


def test_compare_refuses_ground_truth_before_training(made, tmp_path):
    """experiment compare --target both|ground-truth on real scans: one line before any training (the
    training would refuse the ground-truth runs only after the reference runs)."""
    for target in ("both", "ground-truth"):
        r = run("experiment", "compare", "--preset", "tiny", "--cohort", made, "--out", tmp_path / target,
                "--target", target)
        lines = [line for line in r.output.splitlines() if not line.startswith("torch threads:")]  # the threads line
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("mrfrecon: error:"), r.output
        assert "cohort of real scans" in r.output and "--target reference" in r.output, r.output
        assert not (tmp_path / target).exists()


# --------------------------------------------------------------------------- resume, split, lock
def test_rerun_keeps_scans_and_a_new_split_rewrites_only_the_index(world, tmp_path):
    out = tmp_path / "c"
    which = (1, 3, 6)
    assert create(world, out, "--split", "1/1/1", which=which).exit_code == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    info: dict = {}
    idx = create_cohort(inputs(world, which), out, world["root"] / "d.h5", split="1/1/1", seed=5, info=info)
    assert sorted(info["kept"]) == ["sub-01_MRF", "sub-03", "sub-06"] and not info["seconds"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == stamps
    assert sorted(sum(idx.split.values(), [])) == sorted(info["kept"]) and idx.attrs["seed"] == 5
    # a new segmentation for one scan: that scan is refused (made otherwise) unless --overwrite
    seg = tmp_path / "seg.nii.gz"
    save_nifti(world["ph"][1].labels, world["aff"], seg)
    r = create(world, out, "--split", "1/1/1", "--rois", f"sub-01={seg}", "--labels", world["root"] / "labels.tsv",
               which=which)
    assert r.exit_code == 2 and "sub-01_MRF.h5: made with other settings (segmentation)" in r.output, r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == stamps
    r = create(world, out, "--split", "1/1/1", "--rois", f"sub-01={seg}", "--labels", world["root"] / "labels.tsv",
               "--overwrite", which=which)
    assert r.exit_code == 0, r.output
    assert load_scan(out / "sub-01_MRF.h5", series=False).labels is not None
    assert load_scan(out / "sub-03.h5", series=False).labels is None  # kept as it was
    # inputs left out of a rerun are refused: their scans would stay in the folder, unlisted
    r = create(world, out, "--split", "1/1/1", which=(3, 6))
    assert r.exit_code == 2 and "of inputs not given now" in r.output, r.output
    # the two kinds of cohort do not mix in one folder
    from mrfrecon.cohort import simulate_cohort

    with pytest.raises(MrfreconError, match="made with other settings"):
        simulate_cohort(out, preset="tiny", subjects=1)
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "cohort-settings.json").write_text(json.dumps({"preset": "tiny", "seed": 0}))
    r = create(world, sim, which=which)
    assert r.exit_code == 2 and "holds a simulated cohort (preset 'tiny')" in r.output, r.output


def test_interrupted_run_resumes_without_importing_again(world, tmp_path, monkeypatch):
    out = tmp_path / "c"
    which = (1, 3, 5, 6)
    real_save = assemble.save_scan
    calls = {"save": 0, "read": 0}

    def dying(path, scan, **kw):
        if path.parent == out:  # the second finished scan: killed
            calls["save"] += 1
            if calls["save"] == 2:
                raise KeyboardInterrupt
        return real_save(path, scan, **kw)

    monkeypatch.setattr(assemble, "save_scan", dying)
    args = dict(read_options={"axes": "x,y,z,t", "voxel_mm": VOXEL, "orientation": "LPS"})
    with pytest.raises(KeyboardInterrupt):
        create_cohort(inputs(world, which), out, world["root"] / "d.h5", **args)
    assert len(list(out.glob("*.h5"))) == 1 and len(list((out / assemble.STAGING).glob("*.h5"))) == 3
    assert not (out / "cohort.json").exists() and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(assemble, "save_scan", real_save)
    real_read = assemble.read_scan

    def counting(*a, **kw):
        calls["read"] += 1
        return real_read(*a, **kw)

    monkeypatch.setattr(assemble, "read_scan", counting)
    info: dict = {}
    idx = create_cohort(inputs(world, which), out, world["root"] / "d.h5", info=info, **args)
    assert calls["read"] == 0 and len(info["kept"]) == 1 and len(info["seconds"]) == 3
    assert len(idx.subjects) == 4 and not (out / assemble.STAGING).exists()


def test_a_second_writer_is_refused(world, tmp_path):
    out = tmp_path / "c"
    with FolderLock(out, "cohort"):
        r = create(world, out, which=(1, 3, 6))
    assert r.exit_code == 2 and "another mrfrecon process" in r.output, r.output
    assert not out.exists()


def test_split_file_and_mixed_pixel_size_stated(world, tmp_path):
    split = tmp_path / "subjects.tsv"
    split.write_text("subject\tsplit\tage\nsub-01\ttrain\t40\nsub-03\tvalidation\t51\nsub-06\ttest\t33\n")
    other = tmp_path / "sub-07.h5"  # an mrfrecon scan of 10 mm pixels
    s = load_scan(world["inputs"][6])
    s.affine = affine_from_axcodes((10.0, 10.0, 8.0), (N, N, SLICES))
    s.attrs = {"subject": "sub-07"}
    save_scan(other, s)
    out = tmp_path / "c"
    args = [*inputs(world, (1, 3, 6)), other, "--dictionary", world["root"] / "d.h5", "--out", out]
    r = run("cohort", "create", *args, "--split-file", split)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "sub-07" in r.output and "not listed" in r.output, r.output
    with open(split, "a") as fh:
        fh.write("sub-07\ttrain\t60\n")
    r = run("cohort", "create", *args, "--split-file", split)
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "pixel size" in r.output and "14.58 × 14.58 mm (sub-01_MRF, sub-03, sub-06)" in r.output
    assert "10 × 10 mm (sub-07)" in r.output and "--allow-mixed-pixel-size" in r.output and not out.exists()
    r = run("cohort", "create", *args, "--split-file", split, "--allow-mixed-pixel-size")
    assert r.exit_code == 0, r.output
    idx = CohortIndex.load(out)
    assert idx.split == {"train": ["sub-01_MRF", "sub-07"], "val": ["sub-03"], "test": ["sub-06"]}
    assert idx.attrs["mixed_pixel_size"] and idx.attrs["allow_mixed_pixel_size"]
    assert idx.attrs["pixel_mm"] == {"14.58 × 14.58 mm": ["sub-01_MRF", "sub-03", "sub-06"], "10 × 10 mm": ["sub-07"]}


def test_split_sizes_and_the_split_keeps_a_subjects_scans_together(world, tmp_path):
    assert split_sizes(95, parse_split("55/20/20")) == (55, 20, 20)
    assert split_sizes(6, parse_split("55/20/20")) == (4, 1, 1)
    assert split_sizes(3, parse_split("0.8/0.2/0")) == (2, 1, 0)
    assert split_sizes(3, parse_split("1/0/0")) == (3, 0, 0)
    # two sessions of one subject (BIDS names): one split for both
    folder = tmp_path / "bids"
    folder.mkdir()
    src = load_scan(world["inputs"][6])
    for ses in (1, 2):
        save_scan(folder / f"sub-09_ses-{ses}_MRF.h5", src)
    out = tmp_path / "c"
    idx = create_cohort([folder / "sub-09_ses-1_MRF.h5", folder / "sub-09_ses-2_MRF.h5", *inputs(world, (1, 3))], out,
                        world["root"] / "d.h5", split="1/1/1", seed=1)
    where = {sid: k for k, ids in idx.split.items() for sid in ids}
    assert where["sub-09_ses-1_MRF"] == where["sub-09_ses-2_MRF"]
    assert idx.subjects["sub-09_ses-2_MRF"]["subject"] == "sub-09"


# --------------------------------------------------------------------------- bad input: one line, exit 2, nothing written
def _shifted(world, tmp_path):
    aff = world["aff"].copy()
    aff[:3, 3] += [0.0, 5.0, 0.0]  # a third of a voxel
    save_nifti(world["ph"][1].labels, aff, tmp_path / "seg.nii.gz")
    return [f"--rois=sub-01={tmp_path / 'seg.nii.gz'}", "--labels", world["root"] / "labels.tsv"]


def _cropped(world, tmp_path):
    save_nifti(world["ph"][1].labels[:, :, :20], world["aff"], tmp_path / "seg.nii.gz")
    return [f"--rois=sub-01={tmp_path / 'seg.nii.gz'}", "--labels", world["root"] / "labels.tsv"]


def _unknown_label(world, tmp_path):
    write_table({11: "right_rectus_femoris"}, tmp_path / "few.tsv")
    return ["--rois", world["root"] / "rois", "--labels", tmp_path / "few.tsv"]


def _split_file(text):
    def make(world, tmp_path):
        (tmp_path / "s.tsv").write_text(text)
        return ["--split-file", tmp_path / "s.tsv"]
    return make


def _other_sequence(world, tmp_path):
    s = load_scan(world["inputs"][6])
    seq = short_sequence()
    s.sequence = Sequence(flip_angle_deg=seq.flip_angle_deg, te_ms=seq.te_ms, tr_ms=seq.tr_ms + 0.5, ti_ms=seq.ti_ms,
                          spokes_per_frame=8, name="mrf-wf-short-tr")
    save_scan(tmp_path / "sub-08.h5", s)
    return [tmp_path / "sub-08.h5"]


def _other_frames(world, tmp_path):
    s = load_scan(world["inputs"][6])
    full = Sequence.mrf_wf()
    idx = np.linspace(0, full.spokes - 1, 96).astype(int)
    s.sequence = Sequence(flip_angle_deg=full.flip_angle_deg[idx], te_ms=full.te_ms[idx], tr_ms=full.tr_ms[idx],
                          ti_ms=full.ti_ms, spokes_per_frame=8, name="mrf-wf-12")
    s.series = np.concatenate([s.series, s.series[:, :2]], axis=1)
    save_scan(tmp_path / "sub-08.h5", s)
    return [tmp_path / "sub-08.h5"]


BAD = {
    "segmentation-affine": (_shifted, ["seg.nii.gz: geometry: affine origin", "by 5 mm", "scan sub-01_MRF"]),
    "segmentation-shape": (_cropped, ["seg.nii.gz: geometry: shape (x, y, slices) (20, 24, 2)", "(24, 24, 2)"]),
    "label-not-in-table": (_unknown_label, ["sub-01_dseg.nii.gz: label(s) 1, 2, 5, 12", "not in the label table"]),
    "split-missing-subject": (_split_file("subject\tsplit\nsub-01\ttrain\nsub-03\tval\nsub-06\ttest\nsub-42\ttest\n"),
                              ["s.tsv: line 5: subject 'sub-42' is not among the inputs"]),
    "split-twice": (_split_file("subject\tsplit\nsub-01\ttrain\nsub-03\tval\nsub-01\ttest\nsub-06\ttest\n"),
                    ["s.tsv: line 4: subject 'sub-01' is listed twice (also on line 2)"]),
    "split-value": (_split_file("subject\tsplit\nsub-01\ttrain\nsub-03\tdev\nsub-06\ttest\n"),
                    ["s.tsv: line 3: split 'dev': expected train, val or test"]),
    "split-columns": (_split_file("id,fold\nsub-01,train\n"),
                      ["s.tsv: line 1: expected tab-separated columns subject and split"]),
    "sequence": (_other_sequence, ["sequence: scan sub-08 was acquired with sequence 'mrf-wf-short-tr'", "d.h5"]),
    "frame-count": (_other_frames, ["frame count: scan sub-08 has 12 frames", "10"]),
    "split-text": (lambda w, t: ["--split", "60/40"], ["--split '60/40': expected three non-negative numbers"]),
    "rois-key": (lambda w, t: ["--rois", f"sub-99={w['root'] / 'labels.tsv'}"], ["'sub-99' names none of the inputs"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, case):
    make, words = BAD[case]
    extra = make(world, tmp_path)
    files = [e for e in extra if not str(e).startswith("-") and str(e).endswith(".h5")]
    opts = [e for e in extra if e not in files]
    out = tmp_path / "c"
    r = run("cohort", "create", *inputs(world, (1, 3, 6)), *files, "--dictionary", world["root"] / "d.h5", "--out", out,
            *opts)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    assert not out.exists()


def test_names_and_subjects_of_the_inputs(world, tmp_path):
    from mrfrecon.assemble import plan_inputs

    mag = world["inputs"][1]
    ph = mag.with_name("MRF_ph.nii.gz")
    for given in ([mag, ph], [ph], [mag]):  # a shell glob names both parts; either part names the pair
        (p,) = plan_inputs(given)
        assert (p.id, p.subject, p.kind, sorted(f.name for f in p.files)) == \
            ("sub-01_MRF", "sub-01", "nifti", ["MRF.nii.gz", "MRF_ph.nii.gz"])
    a, b = tmp_path / "patient1", tmp_path / "patient2"  # no BIDS names: ids from the folders, one subject each
    for f in (a, b):
        f.mkdir()
        save_scan(f / "scan.h5", load_scan(world["inputs"][6]))
    plans = plan_inputs([a / "scan.h5", b / "scan.h5"])
    assert [(p.id, p.subject) for p in plans] == [("patient1_scan", "patient1_scan"), ("patient2_scan", "patient2_scan")]
    with pytest.raises(MrfreconError, match="given twice"):
        plan_inputs([a / "scan.h5", a / ".." / "patient1" / "scan.h5"])


def test_label_table_format(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("index\tname\tabbreviation\n0\tbackground\tBG\n11\tright_rectus_femoris\tRF\n12\tleft_rectus_femoris\tRF\n")
    assert read_label_table(p) == {11: "right_rectus_femoris", 12: "left_rectus_femoris"}
    for text, msg in (("index\tname\n3\ta\n3\tb\n", "line 3: label 3 is listed twice"),
                      ("index\tname\n3\ta\n4\ta\n", "name 'a' is used by labels 3 and 4"),
                      ("index\tname\nx\ta\n", "index 'x': expected an integer"),
                      ("label,name\n1,a\n", "line 1: expected tab-separated columns index and name")):
        p.write_text(text)
        with pytest.raises(MrfreconError, match=msg):
            read_label_table(p)


def test_cohort_json_is_what_the_index_reader_and_check_accept(made):
    from mrfrecon.check import check_path

    kind, problems = check_path(made)
    assert kind == "cohort" and not problems, problems
    doc = json.loads((made / "cohort-settings.json").read_text())
    assert doc["kind"] == "scans" and set(doc["scans"]) == set(CohortIndex.load(made).subjects)
    assert os.path.basename(doc["dictionary"]) == "d.h5"
