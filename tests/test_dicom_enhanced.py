"""Multi-frame DICOM and phase units: Enhanced MR as Siemens XA writes it (magnitude and phase in two
files or mixed in one), Legacy Converted Enhanced MR as highdicom writes it, each giving the very
series (and the same maps) as the classic images they hold; phase stored 0…4095 without its
rescale refused unless --phase-units says what it is; frames missing in the functional groups,
wrong echo times and duplicates refused in one line, exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from mrf_writers import (classic_datasets, match_maps, simulated_world, stored, write_classic, write_legacy,
                         write_xa_enhanced)

from mrfrecon.cli import cli
from mrfrecon.cohort import simulate_scan
from mrfrecon.dictionary import Dictionary, Grid
from mrfrecon.io.readers import read_scan
from mrfrecon.io.series import phase_radians
from mrfrecon.presets import load_preset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), obj={})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A simulated thigh scan and its classic-DICOM reading (:func:`mrf_writers.simulated_world`)."""
    return simulated_world(tmp_path_factory.mktemp("enhanced"), "thigh", 3)


def _same_series(world, scan) -> None:
    ref = world["ref"]
    np.testing.assert_array_equal(scan.series, ref.series)
    np.testing.assert_allclose(scan.affine_ras(), ref.affine_ras(), atol=1e-6)
    np.testing.assert_allclose(scan.affine_ras(), world["aff"], atol=1e-4)


def test_classic_path_reads_the_scan(world):
    """The reference itself: the stored integers give the simulated series back (16-bit magnitude,
    12-bit phase), in the scanner's phase units as the rescale pair states."""
    ref, scan = world["ref"], world["scan"]
    assert ref.attrs["import"]["phase_units"] == "scanner"
    assert "RescaleSlope 2" in ref.attrs["import"]["phase_units_from"]
    fg = scan.foreground
    err = np.abs(np.moveaxis(ref.series, 1, -1)[fg] - np.moveaxis(scan.series, 1, -1)[fg]).max()
    assert err / np.abs(scan.series).max() < 2e-3


@pytest.mark.parametrize("mixed", [False, True], ids=["two-files", "mixed-in-one"])
def test_siemens_xa_enhanced_gives_the_classic_series(world, tmp_path, mixed):
    files = write_xa_enhanced(world, tmp_path / "xa", mixed=mixed)
    scan = read_scan(files[0] if mixed else tmp_path / "xa", mask=world["root"] / "mask.nii.gz")
    _same_series(world, scan)
    notes = scan.attrs["import"]
    assert notes["frame_order"] == "TemporalPositionIndex" and notes["multiframe_files"] == len(files)
    assert notes["phase_units"] == "scanner" and notes["images"] == 2 * 2 * 175
    if not mixed:  # the two files given one by one, as `import MAG PHASE` does
        _same_series(world, read_scan(files[0], files[1], kind="dicom", mask=world["root"] / "mask.nii.gz"))


def _reverse_storage(ds):
    """The frames stored last to first: the order must come from the counters, not the storage."""
    n = int(ds.NumberOfFrames)
    px = np.frombuffer(ds.PixelData, np.uint16).reshape(n, -1)
    ds.PixelData = px[::-1].tobytes()
    ds.PerFrameFunctionalGroupsSequence = list(ds.PerFrameFunctionalGroupsSequence)[::-1]


def _index_values_only(ds):
    """Reversed, and TemporalPositionIndex left to the Dimension Index Values alone."""
    _reverse_storage(ds)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.FrameContentSequence[0].TemporalPositionIndex


@pytest.mark.parametrize("edit", [_reverse_storage, _index_values_only], ids=["reversed", "dimension-index-values"])
def test_frame_order_from_the_functional_groups(world, tmp_path, edit):
    files = write_xa_enhanced(world, tmp_path / "xa", mixed=True, edit=edit)
    scan = read_scan(files[0], mask=world["root"] / "mask.nii.gz")
    _same_series(world, scan)
    assert scan.attrs["import"]["frame_order"] == "TemporalPositionIndex"


def test_enhanced_maps_equal_the_classic_maps(world, tmp_path):
    files = write_xa_enhanced(world, tmp_path / "xa", mixed=True)
    a = match_maps(world, [world["classic"]], tmp_path / "classic")
    b = match_maps(world, [files[0]], tmp_path / "enhanced")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_legacy_converted_as_highdicom_writes_it(world, tmp_path):
    files = write_legacy(world, tmp_path / "legacy")
    scan = read_scan(tmp_path / "legacy", mask=world["root"] / "mask.nii.gz")
    _same_series(world, scan)
    assert scan.attrs["import"]["frame_order"] == "TemporalPositionIdentifier"
    assert len(files) == 2


def test_highdicom_legacy_converter(world, tmp_path):
    """The converter itself (where installed): one Legacy Converted Enhanced MR file per classic series."""
    hd = pytest.importorskip("highdicom")
    from pydicom.uid import generate_uid

    (tmp_path / "hd").mkdir()
    for i, part in enumerate(("M", "P")):
        out = hd.legacy.LegacyConvertedEnhancedMRImage(classic_datasets(world, part), series_instance_uid=generate_uid(),
                                                       series_number=100 + i, sop_instance_uid=generate_uid(),
                                                       instance_number=1)
        out.save_as(str(tmp_path / "hd" / f"{part}.dcm"))
    _same_series(world, read_scan(tmp_path / "hd", mask=world["root"] / "mask.nii.gz"))


# ----------------------------------------------------------------------------- phase units
def test_phase_units_rules():
    ph = np.array([-3.0, 0.5, 3.1])
    assert phase_radians(ph, "auto", "x")[1] == {"phase_units": "radians", "phase_units_from": "value range within ±π"}
    out, notes = phase_radians(np.array([-4096.0, 0.0, 4094.0]), "auto", "x")
    np.testing.assert_allclose(out, [-np.pi, 0, 4094 / 4096 * np.pi])
    assert notes["phase_units"] == "scanner"
    out, _ = phase_radians(np.array([0.0, 2048.0, 4095.0]), "uint12", "x")
    np.testing.assert_allclose(out, [-np.pi, 0.0, 4094 / 4096 * np.pi])  # = the Siemens rescale, then scanner units
    out, notes = phase_radians(np.array([0.0, 4095.0]), "auto", "x", ("scanner", "tags"))
    assert notes["phase_units_from"] == "tags"
    for values, words in (([0.0, 1000.0, 4095.0], "uint12"), ([-3000.0, 3000.0], "--phase-units"),
                          ([0.0, 6000.0], "--phase-units")):
        with pytest.raises(Exception, match=words):
            phase_radians(np.array(values), "auto", "f.dcm")
    with pytest.raises(Exception, match="do not fit phase units radians"):
        phase_radians(np.array([0.0, 4095.0]), "radians", "f.dcm")


@pytest.mark.parametrize("form", ["classic", "enhanced"])
def test_phase_without_rescale_is_refused_unless_stated(world, tmp_path, form):
    """Stored 0…4095 without RescaleSlope/Intercept: the old reader took them as ±4096 scanner units
    (phase in [0, π) only). Refused, naming --phase-units; --phase-units uint12 reads them right."""
    if form == "classic":
        src = write_classic(world, tmp_path / "in", rescale=False)
    else:
        src = write_xa_enhanced(world, tmp_path / "in", mixed=True, phase_rescale=False)[0]
    out = tmp_path / "scan.h5"
    r = run("import", src, "--out", out)
    assert r.exit_code == 2 and "--phase-units" in r.output and "0…4095" in r.output, r.output
    assert r.output.count("\n") == 1 and not out.exists()
    r = run("import", src, "--out", out, "--phase-units", "uint12", "--mask", world["root"] / "mask.nii.gz")
    assert r.exit_code == 0, r.output
    from mrfrecon.io.scan import load_scan

    s = load_scan(out)
    np.testing.assert_array_equal(s.series, world["ref"].series)
    assert s.attrs["import"]["phase_units"] == "uint12" and s.attrs["import"]["phase_units_from"] == "--phase-units"


# ----------------------------------------------------------------------------- bad input
def _drop_last_item(ds):
    del ds.PerFrameFunctionalGroupsSequence[-1]


def _no_position(ds):
    del ds.PerFrameFunctionalGroupsSequence[7].PlanePositionSequence


def _no_component(ds):
    item = ds.PerFrameFunctionalGroupsSequence[3].MRImageFrameTypeSequence[0]
    del item.ComplexImageComponent
    item.FrameType = ["ORIGINAL", "PRIMARY", "OTHER", "NONE"]


def _wrong_te(ds):
    ds.PerFrameFunctionalGroupsSequence[5].MREchoSequence[0].EffectiveEchoTime = 5.5


def _duplicate_tpi(ds):
    ds.PerFrameFunctionalGroupsSequence[4].FrameContentSequence[0].TemporalPositionIndex = 1


def _stack_contradiction(ds):
    ds.PerFrameFunctionalGroupsSequence[9].FrameContentSequence[0].InStackPositionNumber = 1
    ds.PerFrameFunctionalGroupsSequence[9].PlanePositionSequence[0].ImagePositionPatient = \
        ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence[0].ImagePositionPatient


def _one_frame_less(ds):  # a phase frame gone, NumberOfFrames and pixel data consistent with that
    n = int(ds.NumberOfFrames)
    del ds.PerFrameFunctionalGroupsSequence[n - 1]
    ds.NumberOfFrames = n - 1
    ds.PixelData = ds.PixelData[: (n - 1) * ds.Rows * ds.Columns * 2]


BAD = {
    "per-frame-items": (_drop_last_item, ["PerFrameFunctionalGroupsSequence (5200,9230)", "expected one item per frame"]),
    "no-position": (_no_position, ["frame 8", "PlanePositionSequence (0020,9113)", "ImagePositionPatient",
                                   "per-frame and shared"]),
    "no-component": (_no_component, ["frame 4", "MRImageFrameTypeSequence", "MAGNITUDE/PHASE"]),
    "echo-time": (_wrong_te, ["frame 6", "EffectiveEchoTime", "5.5 ms", "none of the sequence's echo times"]),
    "duplicate": (_duplicate_tpi, ["duplicated frame: TemporalPositionIndex 1"]),
    "frame-missing": (_one_frame_less, ["174 phase frames", "the sequence has 175"]),
    "stack": (_stack_contradiction, ["InStackPositionNumber 1", "Frame Content and Plane Position"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_multiframe_files_are_one_line(world, tmp_path, case):
    edit, words = BAD[case]
    src = write_xa_enhanced(world, tmp_path / "in", mixed=True, edit=edit)[0]
    out = tmp_path / "scan.h5"
    r = run("import", src, "--out", out)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    assert not out.exists()
    r = run("match", src, "--dictionary", world["root"] / "d.h5", "--out", tmp_path / "m")
    assert r.exit_code == 2 and not (tmp_path / "m").exists(), r.output


def test_misread_phase_is_a_large_error(world):
    """What the refusal prevents (docs/IMPORT.md quotes these numbers): stored 0…4095 phase taken as
    scanner units, as the old reader did, against the same integers read as uint12, matched on a
    simulated thigh slice (32², SNR 30, seed 11): median |ΔT1H2O| 600 ms, |ΔFF| 0.068, |ΔB1| 0.2."""
    from mrfrecon.matching import match

    seq = world["seq"]
    cfg = {**load_preset("tiny")["cohort"], "matrix": 32, "slices": 1, "snr": 30.0}
    scan = simulate_scan("s", "thigh", 11, cfg, seq, None)
    w = {"scan": scan, "seq": seq, "aff": scan.affine_ras(), "stored": stored(scan)}
    src = write_classic(w, world["root"] / "misread", rescale=False)
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[600, 2000, 50]]}, "t1fat_ms": {"values": [300, 350, 400]},
                           "b1": {"ranges": [[0.3, 1.0, 0.1]]}, "df_hz": {"ranges": [[-60, 60, 20]]}})
    d = Dictionary.build(seq, grid)
    fg = scan.foreground
    maps = {u: match(np.moveaxis(read_scan(src, phase_units=u).series, 1, -1)[fg], d) for u in ("scanner", "uint12")}
    delta = {k: float(np.median(np.abs(np.asarray(maps["scanner"][k]) - np.asarray(maps["uint12"][k]))))
             for k in ("t1h2o", "ff", "b1")}
    print("median |Δ| misread vs right:", delta)
    assert delta["t1h2o"] == pytest.approx(600, abs=50) and delta["ff"] == pytest.approx(0.068, abs=0.005)
    assert delta["b1"] == pytest.approx(0.2, abs=0.05)
