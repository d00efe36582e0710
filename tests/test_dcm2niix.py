"""dcm2niix NIfTI pairs: ``name.nii.gz`` + ``name_ph.nii.gz`` with their JSON sidecars, written as
dcm2niix writes a Siemens magnitude + phase series, give the very series (and maps) that the
classic DICOM images give; the sidecars' echo time and image types are checked, the phase units
come from the phase file's scl_slope/scl_inter, and a phase without them is refused unless
--phase-units says what it is."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from mrf_writers import match_maps, simulated_world, write_dcm2niix

from mrfrecon.cli import cli
from mrfrecon.io.readers import dcm2niix_partner, drop_partners, read_scan
from mrfrecon.io.scan import load_scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), obj={})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A simulated leg scan and its classic-DICOM reading (:func:`mrf_writers.simulated_world`)."""
    return simulated_world(tmp_path_factory.mktemp("dcm2niix"), "leg", 5)


def test_pair_gives_the_classic_series(world, tmp_path):
    mag = write_dcm2niix(world, tmp_path / "nii")
    scan = read_scan(mag, mask=world["root"] / "mask.nii.gz")  # the phase file is found beside
    # the same integers; the magnitude's slope passes through the NIfTI header's float32 scl_slope
    np.testing.assert_allclose(scan.series, world["ref"].series, rtol=2e-7, atol=0)
    np.testing.assert_allclose(scan.affine_ras(), world["ref"].affine_ras(), atol=1e-4)
    notes = scan.attrs["import"]
    assert notes["phase_units"] == "scanner" and "scl_slope 2" in notes["phase_units_from"]
    assert notes["echo_time_ms"] == pytest.approx(2.39) and len(notes["sidecars"]) == 2
    assert scan.attrs["subject"] == "MRF" and len(scan.attrs["source"]) == 2
    # the phase file named first finds its magnitude; a glob of both reads one scan
    np.testing.assert_array_equal(read_scan(tmp_path / "nii" / "MRF_ph.nii.gz").series, scan.series)
    both = sorted((tmp_path / "nii").glob("*.nii.gz"))
    assert drop_partners(both) == [mag]
    assert dcm2niix_partner(mag) == (mag, tmp_path / "nii" / "MRF_ph.nii.gz", "magnitude-phase")


def test_pair_maps_equal_the_classic_maps(world, tmp_path):
    mag = write_dcm2niix(world, tmp_path / "nii")
    maps = {name: match_maps(world, [src], tmp_path / name) for name, src in (("dicom", world["classic"]), ("nifti", mag))}
    for k in maps["dicom"]:  # the same atoms; FF's least squares sees the float32 slope's last bit
        np.testing.assert_allclose(maps["nifti"][k], maps["dicom"][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_phase_without_scaling_is_refused_unless_stated(world, tmp_path):
    mag = write_dcm2niix(world, tmp_path / "nii", phase_scl=False)
    out = tmp_path / "scan.h5"
    r = run("import", mag, "--out", out)
    assert r.exit_code == 2 and "--phase-units" in r.output and r.output.count("\n") == 1 and not out.exists(), r.output
    r = run("import", mag, "--out", out, "--phase-units", "uint12", "--mask", world["root"] / "mask.nii.gz")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(load_scan(out).series, world["ref"].series, rtol=2e-7, atol=0)


def test_bids_units_rad_states_radians(world, tmp_path):
    """A part-phase sidecar's Units "rad" (BIDS) is taken as stated: values outside ±π are refused."""
    folder = tmp_path / "bids"
    folder.mkdir()
    v = world["ref"].series.transpose(3, 2, 0, 1).astype(np.complex128)
    nib.save(nib.Nifti1Image(np.abs(v), world["aff"]), str(folder / "sub-01_part-mag_MRF.nii.gz"))
    nib.save(nib.Nifti1Image(np.angle(v) * 1000, world["aff"]), str(folder / "sub-01_part-phase_MRF.nii.gz"))
    (folder / "sub-01_part-phase_MRF.json").write_text(json.dumps({"Units": "rad", "EchoTime": 0.00239}))
    r = run("import", folder / "sub-01_part-mag_MRF.nii.gz", "--out", tmp_path / "s.h5")
    assert r.exit_code == 2 and "do not fit phase units radians" in r.output and "Units rad" in r.output, r.output


BAD = {
    "echo-time": (dict(mag_sidecar={"EchoTime": 0.0025}), "", ["MRF.json", "EchoTime 0.0025 s (2.5 ms)",
                                                            "none of the sequence's echo times"]),
    "not-phase": (dict(phase_sidecar={"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}), "",
                  ["MRF_ph.nii.gz", "a magnitude image", "given as the phase part"]),
    "bad-json": ({}, "MRF_ph.json", ["MRF_ph.json", "not a readable JSON sidecar"]),
    "magnitude-only": ({}, "MRF_ph.nii.gz", ["says a magnitude image", "MRF_ph.nii.gz", "no phase file"]),
    "phmag": ({}, "phMag", ["_phMag", "separate files"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_pairs_are_one_line(world, tmp_path, case):
    kw, damage, words = BAD[case]
    mag = write_dcm2niix(world, tmp_path / "nii", **kw)
    if damage == "MRF_ph.json":
        (tmp_path / "nii" / damage).write_text("{not json")
    elif damage == "MRF_ph.nii.gz":
        (tmp_path / "nii" / damage).unlink()
    elif damage == "phMag":
        mag = mag.rename(mag.with_name("MRF_phMag.nii.gz"))
    out = tmp_path / "scan.h5"
    r = run("import", mag, "--out", out)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    assert not out.exists()
