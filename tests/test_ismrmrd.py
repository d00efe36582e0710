"""ISMRMRD raw data: the project's own multi-coil simulated k-space written as ISMRMRD and read
back gives the same series as the direct path (Walsh sensitivities + KWIC); Walsh's method
recovers known sensitivities; bad raw data are one line, exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from mrf_writers import coefficient_images

from mrfrecon.acquisition import coil_sensitivities, kwic_reconstruct, kwic_weights, radial_trajectory, simulate_kspace
from mrfrecon.acquisition.nufft import Nufft2D
from mrfrecon.acquisition.walsh import walsh_sensitivities
from mrfrecon.cli import cli
from mrfrecon.io.geometry import affine_from_axcodes
from mrfrecon.io.ismrmrd import write_ismrmrd
from mrfrecon.io.readers import read_scan
from mrfrecon.io.scan import load_scan
from mrfrecon.phantoms import make_phantom
from mrfrecon.sequence import Sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MATRIX, COILS, SLICES = 32, 4, 2
SPOKE_CHECK = 7


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Multi-coil radial k-space of a thigh phantom, simulated as `mrfrecon.cohort.acquire` does
    (temporal basis → per-coil NUFFTs), and its direct reconstruction."""
    root = tmp_path_factory.mktemp("ismrmrd")
    seq = Sequence.mrf_wf()
    ph = make_phantom("thigh", seed=4, matrix=MATRIX, slices=SLICES)
    fg = ph.foreground
    basis, img, _ = coefficient_images(seq, ph, 4)
    traj = radial_trajectory(seq, matrix=MATRIX)
    sens_true = coil_sensitivities(COILS, MATRIX, seed=4)
    ksp = simulate_kspace(img, basis, traj, coils=sens_true, noise_std=1e-4, rng=np.random.default_rng(4))
    full = kwic_weights(traj, seq.spokes, seq.spokes)
    op = Nufft2D(MATRIX)
    op.set_points(traj.reshape(-1, 2))
    avg = op.adjoint((ksp * full.weights[0][None, None]).reshape(SLICES, COILS, -1))
    sens = walsh_sensitivities(avg)
    direct = kwic_reconstruct(ksp, traj, seq, coils=sens, matrix=MATRIX)
    aff = affine_from_axcodes((350 / MATRIX, 350 / MATRIX, 8.0), (MATRIX, MATRIX, SLICES))
    return {"root": root, "seq": seq, "ksp": ksp, "traj": traj, "direct": direct, "aff": aff, "sens": sens,
            "sens_true": sens_true, "fg": fg}


def test_walsh_recovers_known_sensitivities(raw):
    """Against the synthetic maps the k-space was made with: |<S_est, S_true>| ≈ 1 in the body
    (both unit-norm across coils, so 1 means the same direction up to a phase)."""
    agree = np.abs((raw["sens"] * raw["sens_true"][None].conj()).sum(1))
    assert np.median(agree[raw["fg"]]) > 0.99 and np.percentile(agree[raw["fg"]], 5) > 0.95


@pytest.mark.parametrize("with_traj", [True, False])
def test_ismrmrd_round_trip_gives_the_direct_series(raw, with_traj, tmp_path):
    path = write_ismrmrd(tmp_path / "raw.mrd", raw["ksp"], raw["seq"], raw["aff"], matrix=MATRIX,
                         traj=raw["traj"] if with_traj else None)
    r = CliRunner().invoke(cli, ["import", str(path), "--out", str(tmp_path / "scan.h5"), "--mask",
                                 str(_mask(raw, tmp_path))], obj={})
    assert r.exit_code == 0, r.output
    scan = load_scan(tmp_path / "scan.h5")
    assert scan.attrs["import"]["trajectory"] == ("file" if with_traj else "sequence golden angle")
    assert scan.attrs["import"]["coils"] == COILS
    import ismrmrd  # the file reads back through the ISMRMRD library itself too

    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    a = ds.read_acquisition(SPOKE_CHECK)
    ds.close()
    np.testing.assert_array_equal(a.data, raw["ksp"][0, :, SPOKE_CHECK])
    assert a.idx.kspace_encode_step_1 == SPOKE_CHECK
    np.testing.assert_allclose(scan.affine_ras(), raw["aff"], atol=1e-4)
    d, s = np.moveaxis(raw["direct"], 1, -1)[raw["fg"]], np.moveaxis(scan.series, 1, -1)[raw["fg"]]
    # the stored trajectory is cycles/pixel in float32: ×2π back differs in the last bits
    tol = 1e-4 if with_traj else 1e-6
    assert np.abs(s - d).max() <= tol * np.abs(d).max()


def _mask(raw, tmp_path):
    import nibabel as nib

    p = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(raw["fg"].transpose(2, 1, 0).astype(np.uint8), raw["aff"]), str(p))
    return p


def test_bad_raw_data_are_one_line(raw, tmp_path):
    seq, ksp = raw["seq"], raw["ksp"][:1]  # one slice is enough here
    cases = {
        "spokes": (write_ismrmrd(tmp_path / "a.mrd", ksp[:, :, :1399], seq, raw["aff"], matrix=MATRIX), (),
                   "has 1399 spokes"),
        "nan": (write_ismrmrd(tmp_path / "b.mrd", np.where(np.arange(64) == 3, np.nan, ksp).astype(np.complex64),
                              seq, raw["aff"], matrix=MATRIX), (), "NaN"),
        "timing": (write_ismrmrd(tmp_path / "c.mrd", ksp, seq, raw["aff"], matrix=MATRIX),
                   ("--echo-spacing", "1.63"), "none of the sequence's repetition times"),
    }
    for name, (path, extra, words) in cases.items():
        out = tmp_path / f"{name}.h5"
        r = CliRunner().invoke(cli, ["import", str(path), "--out", str(out), *extra], obj={})
        assert r.exit_code == 2 and words in r.output and r.output.count("\n") == 1, (name, r.output)
        assert not out.exists()
    from mrfrecon.errors import MrfreconError

    with pytest.raises(MrfreconError, match="the header's readout length"):
        # a readout the header does not announce, appended through the ISMRMRD library
        import ismrmrd

        path = write_ismrmrd(tmp_path / "d.mrd", ksp, seq, raw["aff"], matrix=MATRIX)
        ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
        a = ds.read_acquisition(5)
        b = ismrmrd.Acquisition.from_array(np.ascontiguousarray(a.data[:, :-2]))
        b.idx.kspace_encode_step_1, b.idx.slice = 1400, 0
        ds.append_acquisition(b)
        ds.close()
        read_scan(path)


def test_ismrmrd_import_with_cs_tv_gives_the_direct_cs_tv_series(raw, tmp_path):
    from mrfrecon.acquisition.cstv import CsTvOptions, cstv_reconstruct

    path = write_ismrmrd(tmp_path / "raw.mrd", raw["ksp"], raw["seq"], raw["aff"], matrix=MATRIX)
    r = CliRunner().invoke(cli, ["import", str(path), "--out", str(tmp_path / "scan.h5"), "--mask",
                                 str(_mask(raw, tmp_path)), "--recon", "kwic-tv", "--tv-weight", "0.02"], obj={})
    assert r.exit_code == 0, r.output
    scan = load_scan(tmp_path / "scan.h5")
    assert scan.attrs["import"]["recon"] == "kwic-tv" and scan.attrs["import"]["tv_weight"] == 0.02
    direct = cstv_reconstruct(raw["ksp"], raw["traj"], raw["seq"], options=CsTvOptions(weight=0.02), coils=raw["sens"],
                              start=raw["direct"])
    d, s = np.moveaxis(direct, 1, -1)[raw["fg"]], np.moveaxis(scan.series, 1, -1)[raw["fg"]]
    assert np.abs(s - d).max() <= 1e-4 * np.abs(d).max()
    assert np.abs(s - np.moveaxis(raw["direct"], 1, -1)[raw["fg"]]).max() > 1e-2 * np.abs(d).max()  # CS-TV did act
    bad = CliRunner().invoke(cli, ["import", str(path), "--out", str(tmp_path / "b.h5"), "--recon", "kwic-tv",
                                   "--tv-weight", "-1"], obj={})
    assert bad.exit_code == 2 and "--tv-weight" in bad.output and not (tmp_path / "b.h5").exists()
