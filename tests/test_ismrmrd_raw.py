"""ISMRMRD radial raw data as siemens_to_ismrmrd writes it: readout oversampling (2N samples under
a header matrix of N), center_sample and discards, noise-adjustment acquisitions, repetitions of
the train, and SVD coil compression. Each file is checked against the direct path (Walsh
sensitivities + KWIC on the same k-space, as in tests/test_ismrmrd.py); the numerics against closed
forms and numpy's SVD.

The fixtures follow the public conventions of ismrmrd/siemens_to_ismrmrd (commit 8854d00,
``parameter_maps/IsmrmrdParameterMap_Siemens.xsl``: for non-Cartesian trajectories
``encodedSpace.matrixSize.x`` = ``imageColumns`` and the field of view = ``dReadoutFOV``, without
``flReadoutOSFactor``; ``relativeReceiverNoiseBandwidth`` 0.793; ``main.cpp``: ``center_sample`` =
``ushKSpaceCentreColumn``, ``discard_pre``/``discard_post`` = ``sCutOff``, noise-adjustment scans
flagged ``ACQ_IS_NOISE_MEASUREMENT`` with their own ``sample_time_us`` and zero counters,
``idx.repetition`` = the MDH repetition counter).
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from mrf_writers import coefficient_images

from mrfrecon.acquisition import (coil_sensitivities, image_noise_std, kwic_reconstruct, kwic_weights, radial_trajectory,
                                  simulate_kspace)
from mrfrecon.acquisition.nufft import Nufft2D
from mrfrecon.acquisition.rawprep import (AUTO_ENERGY, apply_coil_matrix, choose_virtual_coils, coil_compression,
                                          coil_gram, dwell_time_scale, noise_covariance, noise_edge,
                                          prewhitening_matrix, remove_readout_oversampling)
from mrfrecon.acquisition.walsh import walsh_sensitivities
from mrfrecon.cli import cli
from mrfrecon.errors import MrfreconError
from mrfrecon.io.geometry import affine_from_axcodes
from mrfrecon.io.ismrmrd import read_ismrmrd, readout_layout
from mrfrecon.io.readers import read_scan
from mrfrecon.io.scan import load_scan
from mrfrecon.phantoms import make_phantom
from mrfrecon.sequence import Sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")
N, COILS, SLICES = 24, 8, 2
DWELL_US, NOISE_DWELL_US = 2.5, 5.0  # imaging and noise-adjustment sample times (µs)
NOISE_FLAG = 1 << 18  # ACQ_IS_NOISE_MEASUREMENT is flag 19 (ismrmrd.h): bit 18


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two repetitions of the train of a thigh phantom (the first from equilibrium, the second after
    the sequence's recovery, as the scanner plays them), 8 coils with correlated noise of unequal
    variances (frame SNR 30), noise-adjustment samples of that noise at twice the dwell time."""
    root = tmp_path_factory.mktemp("raw")
    seq = Sequence.mrf_wf()
    ph = make_phantom("thigh", seed=5, matrix=N, slices=SLICES)
    traj = radial_trajectory(seq, matrix=N)  # 2N samples per spoke
    sens = coil_sensitivities(COILS, N, seed=5)
    rng = np.random.default_rng(5)
    clean = []
    for s in (dataclasses.replace(seq, repetitions=1), seq):  # repetition 0, repetition 1
        basis, img, level = coefficient_images(s, ph, 3)
        clean.append(simulate_kspace(img, basis, traj, coils=sens))
    sigma = level / 30.0 / float(image_noise_std(1.0, kwic_weights(traj, seq, 55)).mean())
    mix = np.tril(rng.normal(size=(COILS, COILS)) + 1j * rng.normal(size=(COILS, COILS))) * 0.3
    mix[np.diag_indices(COILS)] = np.linspace(0.5, 2.0, COILS)  # unequal noise levels, correlated coils
    psi = sigma ** 2 * (mix @ mix.conj().T)  # noise covariance per sample at the imaging dwell time

    def noise(shape):
        z = (rng.normal(size=(COILS, *shape)) + 1j * rng.normal(size=(COILS, *shape))) / np.sqrt(2)
        return sigma * np.einsum("ab,b...->a...", mix, z)

    acq = [(k + np.moveaxis(noise((SLICES, *k.shape[2:])), 0, 1)).astype(np.complex64) for k in clean]
    # noise variance ∝ 1/dwell: sampled at twice the dwell time, the noise has half the variance
    noise_acq = (noise((32, 256)) * np.sqrt(DWELL_US / NOISE_DWELL_US)).astype(np.complex64)  # (coils, acqs, samples)
    aff = affine_from_axcodes((350 / N, 350 / N, 8.0), (N, N, SLICES))
    fg = ph.foreground
    mask = root / "mask.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(fg.transpose(2, 1, 0).astype(np.uint8), aff), str(mask))
    return {"root": root, "seq": seq, "traj": traj, "clean": clean, "acq": acq, "noise": noise_acq, "psi": psi,
            "aff": aff, "fg": fg, "mask": mask}


def direct(world, ksp, traj=None):
    """The direct path: Walsh sensitivities on the time-averaged image, then KWIC (as the reader)."""
    seq, traj = world["seq"], world["traj"] if traj is None else traj
    full = kwic_weights(traj, seq.spokes, seq.spokes)
    op = Nufft2D(N)
    op.set_points(traj.reshape(-1, 2))
    avg = op.adjoint((ksp * full.weights[0][None, None]).reshape(ksp.shape[0], ksp.shape[1], -1))
    return kwic_reconstruct(ksp, traj, seq, coils=walsh_sensitivities(avg), matrix=N)


def direct_acq(world, i):
    """The direct series of repetition ``i`` of the acquired k-space, computed once."""
    key = f"direct{i}"
    if key not in world:
        world[key] = direct(world, world["acq"][i])
    return world[key]


def write_siemens(path, world, reps, *, noise=None, pre=0, post=0, samples=None, enc=N, recon=N, centre=None):
    """An ISMRMRD file laid out as siemens_to_ismrmrd writes radial data (module docstring):
    header readout matrix ``enc`` (N, without oversampling), ``reps`` k-space ``(slices, coils,
    spokes, 2N)`` one per repetition, ``pre``/``post`` junk samples around each spoke announced in
    discard_pre/discard_post, center_sample at the k-space centre, no trajectory; noise
    acquisitions ``(coils, acquisitions, samples)`` first, flagged, with zero counters."""
    import ismrmrd
    import ismrmrd.xsd as xsd
    from ismrmrd.hdf5 import acquisition_dtype

    seq, aff = world["seq"], world["aff"]
    n_sl, n_c, n_sp, n_s = reps[0].shape
    fov = 350.0
    head = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=123_255_000),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            receiverChannels=n_c, relativeReceiverNoiseBandwidth=0.793, systemVendor="SIEMENS"),
        sequenceParameters=xsd.sequenceParametersType(
            TR=[float(v) for v in np.unique(seq.tr_ms)], TE=[float(v) for v in np.unique(seq.te_ms)],
            TI=[float(seq.ti_ms)], flipAngle_deg=[float(v) for v in np.unique(seq.flip_angle_deg)]))
    head.encoding.append(xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=enc, y=n_sp, z=1),
                                           fieldOfView_mm=xsd.fieldOfViewMm(x=fov, y=fov, z=8.0)),
        reconSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=recon, y=recon, z=1),
                                         fieldOfView_mm=xsd.fieldOfViewMm(x=fov, y=fov, z=8.0)),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=n_sp - 1, center=0),
            slice=xsd.limitType(minimum=0, maximum=n_sl - 1, center=0),
            repetition=xsd.limitType(minimum=0, maximum=len(reps) - 1, center=0)),
        trajectory=xsd.trajectoryType.RADIAL))
    n_noise = 0 if noise is None else noise.shape[1]
    table = np.zeros(n_noise + len(reps) * n_sl * n_sp, dtype=acquisition_dtype)
    h = table["head"]
    h["version"] = 1
    h["available_channels"] = h["active_channels"] = n_c
    h["scan_counter"] = np.arange(1, table.size + 1)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    unit = [lps[:3, i] / np.linalg.norm(lps[:3, i]) for i in range(3)]
    h["read_dir"], h["phase_dir"], h["slice_dir"] = unit
    junk = np.full((n_c, 1), 1e3 + 1e3j, np.complex64)  # what discard_pre/post announce: never to be used
    for i in range(n_noise):
        h["flags"][i] = NOISE_FLAG
        h["number_of_samples"][i] = noise.shape[2]
        h["sample_time_us"][i] = NOISE_DWELL_US
        table["data"][i] = np.ascontiguousarray(noise[:, i]).view(np.float32).reshape(-1)
        table["traj"][i] = np.zeros(0, np.float32)
    row = n_noise
    n_tot = n_s + pre + post if samples is None else samples
    for r, ksp in enumerate(reps):
        for s in range(n_sl):
            pos = lps[:3, :2] @ np.array([(N - 1) / 2, (N - 1) / 2]) + lps[:3, 2] * s + lps[:3, 3]
            for k in range(n_sp):
                h["number_of_samples"][row] = n_tot
                h["discard_pre"][row], h["discard_post"][row] = pre, post
                h["center_sample"][row] = pre + n_s // 2 if centre is None else centre
                h["sample_time_us"][row] = DWELL_US
                h["position"][row] = pos
                h["idx"]["kspace_encode_step_1"][row], h["idx"]["slice"][row], h["idx"]["repetition"][row] = k, s, r
                h["flags"][row] = ((1 << (ismrmrd.ACQ_FIRST_IN_SLICE - 1)) if k == 0 else 0) | (
                    (1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1)) if k == n_sp - 1 else 0)
                d = np.concatenate([np.repeat(junk, pre, 1), ksp[s, :, k], np.repeat(junk, post, 1)], axis=1)
                if samples is not None:
                    d = np.resize(d, (n_c, samples))
                table["data"][row] = np.ascontiguousarray(d, np.complex64).view(np.float32).reshape(-1)
                table["traj"][row] = np.zeros(0, np.float32)
                row += 1
    with h5py.File(path, "w") as f:
        g = f.create_group("dataset")
        g.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))[0] = xsd.ToXML(head)
        g.create_dataset("data", data=table, maxshape=(None,), chunks=True)
    return path


def fp(world, series):
    """Foreground fingerprints ``(voxels, frames)``."""
    return np.moveaxis(np.asarray(series), 1, -1)[world["fg"]]


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def shape_error(a, b):
    """Relative error of fingerprints ``a`` against ``b`` with a free complex factor per voxel (the
    PD and phase that matching solves for): what the maps see of a difference."""
    c = (b.conj() * a).sum(-1, keepdims=True) / (np.abs(b) ** 2).sum(-1, keepdims=True)
    return float(np.linalg.norm(a - c * b) / np.linalg.norm(a))


def import_cli(path, out, *extra, mask=None):
    args = ["import", str(path), "--out", str(out), *([] if mask is None else ["--mask", str(mask)]), *map(str, extra)]
    return CliRunner().invoke(cli, args, obj={})


# --------------------------------------------------------------------------- numerics (closed forms)
def test_remove_readout_oversampling_gives_the_samples_of_a_projection_inside_the_fov():
    """A spoke of 2N samples whose projection lies in the central N points: removal returns its
    samples 2j exactly (centre N → N/2), and the units of the k-space stay."""
    rng = np.random.default_rng(0)
    n = 32
    proj = np.zeros((3, 2 * n), np.complex128)
    proj[:, n - n // 2 + 2: n + n // 2 - 2] = rng.normal(size=(3, n - 4)) + 1j * rng.normal(size=(3, n - 4))
    # k-space of the projection, centred: sample m at k = (m − n)·2π/(2n)
    k = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(proj, axes=-1), axis=-1), axes=-1)
    out = remove_readout_oversampling(k.astype(np.complex64), 2)
    assert out.shape == (3, n) and out.dtype == np.complex64
    np.testing.assert_allclose(out, k[:, ::2], rtol=0, atol=2e-5 * np.abs(k).max())
    # the k-space centre stays at samples // 2, with its value (the projection's integral)
    np.testing.assert_allclose(out[:, n // 2], proj.sum(-1), rtol=1e-5)
    with pytest.raises(MrfreconError, match="not a multiple"):
        remove_readout_oversampling(k[:, :-1].astype(np.complex64), 2)


def test_prewhitening_gives_identity_noise_covariance():
    """Known covariance → W Ψ Wᴴ = I exactly; sampled noise of that covariance → its whitened
    sample covariance is I within the sampling error; the dwell-time factor is √(t_a / t_n)."""
    rng = np.random.default_rng(1)
    c = 6
    a = rng.normal(size=(c, c)) + 1j * rng.normal(size=(c, c))
    psi = a @ a.conj().T + 0.5 * np.eye(c)
    w = prewhitening_matrix(psi)
    np.testing.assert_allclose(w @ psi @ w.conj().T, np.eye(c), atol=1e-10)
    assert np.allclose(np.triu(w, 1), 0)  # L⁻¹ is lower triangular
    n = 200_000
    z = (rng.normal(size=(c, n)) + 1j * rng.normal(size=(c, n))) / np.sqrt(2)
    x = np.linalg.cholesky(psi) @ z
    est = noise_covariance(x.astype(np.complex64))
    np.testing.assert_allclose(est, psi, atol=6 * np.abs(psi).max() / np.sqrt(n))
    white = w @ x
    np.testing.assert_allclose(white @ white.conj().T / n, np.eye(c), atol=6 / np.sqrt(n))
    # data sampled at dwell t_a have t_n/t_a times the noise variance of noise sampled at t_n
    assert dwell_time_scale(2.5, 5.0) == pytest.approx(np.sqrt(0.5)) and dwell_time_scale(0.0, 5.0) == 1.0
    with pytest.raises(MrfreconError, match="channel 2 has no noise"):
        prewhitening_matrix(np.diag([1.0, 1.0, 0.0]))
    with pytest.raises(MrfreconError, match="not positive definite"):
        prewhitening_matrix(np.ones((3, 3)))


def test_coil_compression_is_numpy_svd():
    """The virtual coils are the leading left singular vectors of the coil data: same singular
    values as numpy's SVD, the same subspace, and the discarded energy is Σᵢ>ₖ sᵢ²."""
    rng = np.random.default_rng(2)
    c, n, k = 10, 4000, 3
    signal = (rng.normal(size=(c, 4)) + 1j * rng.normal(size=(c, 4))) @ np.diag([9.0, 5.0, 2.0, 1.0])
    x = (signal @ rng.normal(size=(4, n)) + 0.3 * (rng.normal(size=(c, n)) + 1j * rng.normal(size=(c, n))))
    x = x.astype(np.complex64)
    u, s, _ = np.linalg.svd(x.astype(np.complex128), full_matrices=False)
    cc = coil_compression(coil_gram(x), k)
    # the Gram is accumulated in complex64 blocks (fast at paper size): float32 precision of s₁
    np.testing.assert_allclose(cc.singular_values, s, rtol=0, atol=1e-5 * s[0])
    # same subspace: |U_svdᴴ Aᴴ| is the identity up to the phases the SVD leaves free
    np.testing.assert_allclose(np.abs(u[:, :k].conj().T @ cc.matrix.conj().T), np.eye(k), atol=1e-6)
    np.testing.assert_allclose(cc.matrix @ cc.matrix.conj().T, np.eye(k), atol=1e-12)
    y = apply_coil_matrix(x[None, :, None], cc.matrix)[0, :, 0]
    np.testing.assert_allclose(y, cc.matrix @ x, rtol=1e-5, atol=1e-4)
    lost = np.linalg.norm(x - cc.matrix.conj().T @ y) ** 2
    assert lost == pytest.approx((s[k:] ** 2).sum(), rel=1e-4)
    assert cc.energy == pytest.approx((s[:k] ** 2).sum() / (s ** 2).sum(), rel=1e-6)


def test_automatic_choice_counts_signal_energy_above_the_noise():
    """With 24 coils of which 3 carry signal, a plain energy fraction is dominated by the 21
    noise components; the signal-energy criterion (above the noise floor) picks 3."""
    noise_power = 1000.0
    lam = np.r_[[400_000.0, 20_000.0, 1_000.0], np.zeros(21)] + noise_power
    s = np.sqrt(lam)
    assert choose_virtual_coils(s, AUTO_ENERGY, noise_power) == 3
    assert choose_virtual_coils(s, AUTO_ENERGY) == 3  # the smallest eigenvalue as the floor
    assert choose_virtual_coils(s, 0.99, noise_power) == 2
    e = np.cumsum(lam) / lam.sum()
    assert int(np.searchsorted(e, AUTO_ENERGY) + 1) > 20  # what a plain energy criterion would keep
    with pytest.raises(MrfreconError, match="energy"):
        choose_virtual_coils(s, 1.5)
    # sampled white noise: its eigenvalues spread about samples·σ² (Marchenko-Pastur); the noise edge
    # lies above all of them, so 3 signal components in 24 coils still give 3
    rng = np.random.default_rng(3)
    c, n = 24, 20_000
    sig = (rng.normal(size=(c, 3)) * [3.0, 1.0, 0.5]) @ (rng.normal(size=(3, n)) + 1j * rng.normal(size=(3, n)))
    x = sig + (rng.normal(size=(c, n)) + 1j * rng.normal(size=(c, n))) / np.sqrt(2)
    lam = np.linalg.eigvalsh(coil_gram(x.astype(np.complex64)))
    noise_only = np.linalg.eigvalsh(coil_gram(x - sig))
    edge = noise_edge(lam, n, 1.0)
    assert noise_only.max() < edge < 1.3 * n and noise_edge(lam, n) >= edge
    assert choose_virtual_coils(np.sqrt(lam[::-1]), AUTO_ENERGY, edge) == 3
    assert choose_virtual_coils(np.sqrt(lam[::-1]), AUTO_ENERGY, lam.min()) > 3  # a floor at the lower end


def test_readout_layout_reads_both_conventions():
    """siemens_to_ismrmrd (header N, 2N samples), the project's writer (encoded 2N, recon N), no
    oversampling, discards around the spoke, center_sample unset; partial echoes and lengths that
    fit no matrix are refused with the fields named."""
    assert readout_layout(96, 0, 0, 48, encoded=48, recon=48, where="f").oversampling == 2
    assert readout_layout(96, 0, 0, 48, encoded=96, recon=48, where="f").oversampling == 2
    assert readout_layout(48, 0, 0, 24, encoded=48, recon=48, where="f").oversampling == 1
    lay = readout_layout(106, 4, 6, 52, encoded=48, recon=48, where="f")
    assert (lay.start, lay.length, lay.oversampling) == (4, 96, 2)
    assert readout_layout(97, 0, 0, 0, encoded=48, recon=48, where="f").length == 96  # unset centre, odd: last dropped
    with pytest.raises(MrfreconError, match=r"f: 96 samples .*center_sample 40\): .*not symmetric.*expected center_sample 48"):
        readout_layout(96, 0, 0, 40, encoded=48, recon=48, where="f")
    with pytest.raises(MrfreconError, match=r"fits neither the header's readout length \(encodedSpace matrixSize.x 48\) "
                                            r"nor the image matrix \(reconSpace matrixSize.x 48\).*expected 48 or 96"):
        readout_layout(144, 0, 0, 72, encoded=48, recon=48, where="f")


# --------------------------------------------------------------------------- files as siemens_to_ismrmrd writes them
@pytest.mark.parametrize("pre, post", [(0, 0), (4, 6)])
def test_siemens_oversampled_readout_gives_the_direct_series(world, tmp_path, pre, post):
    """2N samples per spoke under a header matrix of N (the issue's refused case), with and without
    discarded samples around the spoke: the same series as the direct path on the 2N samples."""
    path = write_siemens(tmp_path / "raw.h5", world, [world["acq"][1]], pre=pre, post=post)
    r = import_cli(path, tmp_path / "scan.h5", mask=world["mask"])
    assert r.exit_code == 0, r.output
    scan = load_scan(tmp_path / "scan.h5")
    notes = scan.attrs["import"]
    assert notes["readout"] == {"samples": 2 * N + pre + post, "used": [pre, pre + 2 * N], "oversampling": 2.0,
                                "oversampling_handling": "kept"}
    assert notes["noise"] == {"acquisitions": 0, "prewhitened": False} and notes["repetitions"] == [0]
    assert rel(fp(world, scan.series), fp(world, direct_acq(world, 1))) < 1e-6
    np.testing.assert_allclose(scan.affine_ras(), world["aff"], atol=1e-4)


def test_removing_the_oversampling_costs_little(world, tmp_path):
    """``readout="remove"`` (crop the projections to the field of view, half the NUFFT points)
    against keeping the 2N samples: within 5 % (measured 1.9 % here, 1.6-3 % at 48²-128²,
    docs/IMPORT.md), and
    identical to the direct path on the cropped k-space."""
    path = write_siemens(tmp_path / "raw.h5", world, [world["acq"][1]])
    kept = read_ismrmrd(path, world["seq"])
    cut = read_ismrmrd(path, world["seq"], readout="remove")
    assert cut.notes["readout"]["oversampling_handling"] == "removed"
    ref = direct(world, remove_readout_oversampling(world["acq"][1], 2), radial_trajectory(world["seq"], N, 1))
    assert rel(fp(world, cut.series), fp(world, ref)) < 1e-5
    assert shape_error(fp(world, cut.series), fp(world, kept.series)) < 0.05


def test_noise_scans_prewhiten_and_never_enter_the_images(world, tmp_path):
    """Noise acquisitions first in the file, with zero counters (spoke 0 of slice 0, repetition 0,
    another readout length): the coils are prewhitened with their covariance (brought from the noise
    dwell time to the imaging one) and the series is the direct path on the k-space whitened with the
    true covariance, within the covariance's sampling error (8,192 noise samples; measured 0.08 %,
    asserted 0.5 %). Without
    prewhitening the correlated noise of unequal variance costs accuracy (measured: 4.7 % against
    2.9 % fingerprint error to the noise-free series)."""
    path = write_siemens(tmp_path / "raw.h5", world, [world["acq"][1]], noise=world["noise"])
    got = read_ismrmrd(path, world["seq"])
    assert got.notes["noise"] == {"acquisitions": 32, "samples": 8192, "prewhitened": True,
                                  "noise_dwell_us": [NOISE_DWELL_US], "acquisition_dwell_us": DWELL_US}
    w_true = prewhitening_matrix(world["psi"])
    whitened = apply_coil_matrix(world["acq"][1], w_true)
    ref = fp(world, direct(world, whitened))
    assert shape_error(fp(world, got.series), ref) < 0.005
    # the covariance at the imaging dwell time: the noise samples scaled by √(t_n / t_a) (without
    # that, the estimate would be half the true one here)
    with h5py.File(path) as f:
        t = f["dataset/data"][:32]
    x = np.concatenate([np.asarray(v, np.float32).view(np.complex64).reshape(COILS, -1) for v in t["data"]], axis=1)
    est = noise_covariance(x * np.float32(np.sqrt(NOISE_DWELL_US / DWELL_US)))
    assert np.abs(w_true @ est @ w_true.conj().T - np.eye(COILS)).max() < 0.1
    plain = read_ismrmrd(path, world["seq"], prewhiten=False)
    assert plain.notes["noise"]["prewhitened"] is False
    truth = fp(world, direct(world, world["clean"][1]))
    assert shape_error(fp(world, got.series), truth) < 0.9 * shape_error(fp(world, plain.series), truth)


def test_two_repetitions_in_one_file(world, tmp_path):
    """Both trains in one file: the last by default (the one the sequence's signal model keeps),
    any by index, or the mean of both; an index the file lacks is one line naming those it has."""
    a0, a1 = world["acq"]
    path = write_siemens(tmp_path / "raw.h5", world, [a0, a1])
    seq = world["seq"]
    last = read_ismrmrd(path, seq)
    assert last.notes["repetitions"] == [0, 1] and last.notes["repetition"] == "1"
    assert rel(fp(world, last.series), fp(world, direct_acq(world, 1))) < 1e-6
    first = read_ismrmrd(path, seq, repetition=0)
    assert rel(fp(world, first.series), fp(world, direct_acq(world, 0))) < 1e-6
    mean = read_ismrmrd(path, seq, repetition="all-average")
    assert mean.notes["repetition"] == "average of 0, 1"
    assert rel(fp(world, mean.series), fp(world, direct(world, ((a0 + a1) / np.float32(2)).astype(np.complex64)))) < 1e-5
    # the first train (from equilibrium) is not the second: the choice matters (0.4 % in the series)
    c0, c1 = world["clean"]
    assert np.linalg.norm(c0 - c1) > 1e-3 * np.linalg.norm(c1)
    r = import_cli(path, tmp_path / "s.h5", "--repetition", "0", mask=world["mask"])
    assert r.exit_code == 0, r.output
    assert load_scan(tmp_path / "s.h5").attrs["import"]["repetition"] == "0"
    bad = import_cli(path, tmp_path / "b.h5", "--repetition", "2")
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "repetition 2: the file has repetition(s) 0, 1" in bad.output
    assert not (tmp_path / "b.h5").exists()


def test_a_spoke_twice_in_one_repetition_names_the_repetition(world, tmp_path):
    path = write_siemens(tmp_path / "raw.h5", world, [world["acq"][0][:1], world["acq"][1][:1]])
    with h5py.File(path, "r+") as f:
        t = f["dataset/data"][()]
        row = world["seq"].spokes + 4  # repetition 1, slice 0, spoke 4 → counter 3
        t["head"]["idx"]["kspace_encode_step_1"][row] = 3
        f["dataset/data"][...] = t
    r = import_cli(path, tmp_path / "s.h5")
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "spoke 3 of slice 0 in repetition 1 appears twice" in r.output and str(path) in r.output
    assert read_ismrmrd(path, world["seq"], repetition=0).series.shape[0] == 1  # repetition 0 is whole


def test_coil_compression_in_the_reader(world, tmp_path):
    """8 coils → 3 virtual coils, and the automatic choice, after prewhitening: the series within
    0.5 % (fingerprint shape; measured 0.11 % for 3, 0.03 % for the automatic 4) of the all-coil
    series; the virtual-coil count and the energy kept are
    in the scan's notes; more virtual coils than coils keeps them all."""
    path = write_siemens(tmp_path / "raw.h5", world, [world["acq"][1]], noise=world["noise"])
    seq = world["seq"]
    ref = fp(world, read_ismrmrd(path, seq).series)
    three = read_ismrmrd(path, seq, coil_compression=3)
    assert three.notes["virtual_coils"] == 3 and three.notes["coils"] == COILS
    assert shape_error(fp(world, three.series), ref) < 0.005
    r = import_cli(path, tmp_path / "auto.h5", "--virtual-coils", "auto", mask=world["mask"])
    assert r.exit_code == 0 and "note:" not in r.output, r.output
    r = import_cli(path, tmp_path / "all.h5", mask=world["mask"])  # 8 coils, no compression asked: a hint
    assert r.exit_code == 0 and f"note: {COILS} coils reconstructed without compression; --virtual-coils auto" in r.output
    auto = load_scan(tmp_path / "auto.h5")
    notes = auto.attrs["import"]
    assert 1 <= notes["virtual_coils"] < COILS and notes["compression"] == "auto"
    assert notes["compression_signal_energy"] >= AUTO_ENERGY
    assert shape_error(fp(world, auto.series), ref) < 0.005
    many = read_ismrmrd(path, seq, coil_compression=64)
    assert many.notes["virtual_coils"] == COILS and shape_error(fp(world, many.series), ref) < 1e-4


def test_bad_raw_layouts_are_one_line(world, tmp_path):
    """A readout that fits no matrix (3N samples under N), a partial echo, noise acquisitions with
    another coil count, and bad option values: one line naming the file and field, exit 2,
    nothing written."""
    one = [world["acq"][1][:1]]
    noise_short = world["noise"][:4]
    cases = {
        "length": (write_siemens(tmp_path / "a.h5", world, one, samples=3 * N, centre=3 * N // 2), (),
                   "fits neither the header's readout length (encodedSpace matrixSize.x 24)"),
        "echo": (write_siemens(tmp_path / "b.h5", world, one, centre=N - 5), (), "not symmetric about the k-space centre"),
        "noise": (_noise_coils(tmp_path / "c.h5", world, one, noise_short), (),
                  "noise acquisition 0 (ACQ_IS_NOISE_MEASUREMENT): 4 coils, but the imaging acquisitions have 8"),
        "virtual": (write_siemens(tmp_path / "d.h5", world, one), ("--virtual-coils", "0"), "--virtual-coils"),
        "repetition": (tmp_path / "d.h5", ("--repetition", "first"), "--repetition"),
    }
    for name, (path, extra, words) in cases.items():
        out = tmp_path / f"{name}.out.h5"
        r = import_cli(path, out, *extra)
        assert r.exit_code == 2 and words in r.output and r.output.count("\n") == 1, (name, r.output)
        assert not out.exists()
        if name in ("length", "echo", "noise"):
            assert str(path) in r.output


def _noise_coils(path, world, reps, noise):
    """A file whose noise acquisitions have fewer channels than the imaging ones."""
    write_siemens(path, world, reps, noise=world["noise"][:, :2])
    with h5py.File(path, "r+") as f:
        t = f["dataset/data"][()]
        for i in range(2):
            t["head"]["active_channels"][i] = noise.shape[0]
            t["data"][i] = np.ascontiguousarray(noise[:, i]).view(np.float32).reshape(-1)
        f["dataset/data"][...] = t
    return path


def test_read_scan_passes_the_raw_options(world, tmp_path):
    """The Python API takes the same choices (``read_scan(..., repetition=, coil_compression=)``)."""
    path = write_siemens(tmp_path / "raw.h5", world, [world["acq"][0], world["acq"][1]])
    scan = read_scan(path, mask=world["mask"], repetition=0, coil_compression=2)
    assert scan.attrs["import"]["repetition"] == "0" and scan.attrs["import"]["virtual_coils"] == 2


def test_in_place_coil_matrix_is_the_copy():
    rng = np.random.default_rng(4)
    k = (rng.normal(size=(2, 5, 7, 9)) + 1j * rng.normal(size=(2, 5, 7, 9))).astype(np.complex64)
    a = rng.normal(size=(2, 5, 5)) + 1j * rng.normal(size=(2, 5, 5))
    ref = apply_coil_matrix(k, a)
    np.testing.assert_allclose(ref, np.einsum("soc,sc...->so...", a, k), rtol=1e-5, atol=1e-5)
    same = apply_coil_matrix(k, a, inplace=True)
    assert same is k
    np.testing.assert_array_equal(same, ref)
