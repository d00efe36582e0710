"""ISMRMRD/MRD radial MRF raw data in (and out, for the project's own simulated k-space).

The vendor-neutral raw-data format (Inati et al., "ISMRM Raw data format", MRM 77:411-421, 2017;
PyPI ``ismrmrd``): an HDF5 file with an XML header and one acquisition per readout. Here every
spoke is one acquisition: ``idx.kspace_encode_step_1`` is its index in the train (0 … spokes−1),
``idx.slice`` its slice, ``data`` ``(coils, samples)``; the trajectory, when the file has one
(``trajectory_dimensions`` 2), is ``(kx, ky)`` in cycles per pixel within [−0.5, 0.5] (the
normalization of Gadgetron and BART), else the sequence's golden-angle spokes
(:func:`mrfrecon.acquisition.radial_trajectory`). The header gives the matrices (encoded: the
readout samples; recon: the image) and fields of view; each acquisition's ``position`` (the
slice centre), ``read_dir``, ``phase_dir`` and ``slice_dir`` (patient coordinates, LPS+ as in
DICOM) give the geometry: image columns along ``read_dir``, rows along ``phase_dir``.

Reconstruction: coil sensitivities by Walsh's method (:mod:`mrfrecon.acquisition.walsh`) on the
time-averaged image (all spokes, ramp-weighted), then the project's KWIC view sharing
(:func:`mrfrecon.acquisition.kwic_reconstruct`) → the series ``(slices, frames, y, x)``.

Siemens twix ``.dat`` files convert to ISMRMRD with the ISMRMRD project's ``siemens_to_ismrmrd``;
``twixtools`` is not used (no twix file can be tested here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from ..sequence import Sequence
from .geometry import lps_to_ras
from .series import ImportedSeries, _check_complex

__all__ = ["read_ismrmrd", "write_ismrmrd"]

_H1_3T_HZ = 127_731_000  # 1H Larmor frequency at 2.89 T (a Siemens "3 T" field), for the header only


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) or 1.0)


def write_ismrmrd(path: str | os.PathLike[str], kspace: np.ndarray, sequence: Sequence, affine: np.ndarray, *,
                  matrix: int, traj: np.ndarray | None = None, slice_thickness_mm: float | None = None) -> Path:
    """Write radial k-space ``(slices, coils, spokes, samples)`` as an ISMRMRD file, one
    acquisition per spoke; ``traj`` ``(spokes, samples, 2)`` in radians/pixel (stored in cycles
    per pixel) or ``None`` to leave the trajectory to the reader; ``affine`` the RAS+ affine of the
    image ``(x, y, slice)``. Written to a temporary name and renamed when complete."""
    import ismrmrd
    import ismrmrd.xsd as xsd

    from ..atomic import atomic_path

    k = np.asarray(kspace)
    if k.ndim != 4 or not np.iscomplexobj(k):
        raise MrfreconError(f"kspace: expected complex (slices, coils, spokes, samples), got {k.dtype} {k.shape}")
    n_slices, n_coils, n_spokes, n_samples = k.shape
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, float)
    vox = [float(v) for v in np.linalg.norm(lps[:3, :3], axis=0)]
    thick = float(slice_thickness_mm or vox[2])
    fov = float(matrix * vox[0])
    head = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=_H1_3T_HZ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(receiverChannels=n_coils),
        sequenceParameters=xsd.sequenceParametersType(
            TR=[float(v) for v in np.unique(sequence.tr_ms)], TE=[float(v) for v in np.unique(sequence.te_ms)],
            TI=[float(sequence.ti_ms)], flipAngle_deg=[float(v) for v in np.unique(sequence.flip_angle_deg)],
            sequence_type="MRF-WF"))
    head.encoding.append(xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=n_samples, y=n_samples, z=1),
                                           fieldOfView_mm=xsd.fieldOfViewMm(x=fov * n_samples / matrix, y=fov * n_samples / matrix, z=thick)),
        reconSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=matrix, y=matrix, z=1),
                                         fieldOfView_mm=xsd.fieldOfViewMm(x=fov, y=fov, z=thick)),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=n_spokes - 1, center=0),
            slice=xsd.limitType(minimum=0, maximum=n_slices - 1, center=0)),
        trajectory=xsd.trajectoryType.RADIAL))
    import h5py
    from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

    target = Path(path)
    centre = np.array([(matrix - 1) / 2, (matrix - 1) / 2])
    table = np.empty(n_slices * n_spokes, dtype=acquisition_dtype)
    row = 0
    for s in range(n_slices):
        pos = lps[:3, :2] @ centre + lps[:3, 2] * s + lps[:3, 3]
        for sp in range(n_spokes):
            t = None if traj is None else np.ascontiguousarray(np.asarray(traj[sp], np.float32) / np.float32(2 * np.pi))
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(k[s, :, sp], np.complex64), t)
            acq.idx.kspace_encode_step_1 = sp
            acq.idx.slice = s
            acq.center_sample = n_samples // 2
            acq.scan_counter = row
            acq.position[:] = pos
            acq.read_dir[:] = _unit(lps[:3, 0])
            acq.phase_dir[:] = _unit(lps[:3, 1])
            acq.slice_dir[:] = _unit(lps[:3, 2])
            if sp == 0:
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
            if sp == n_spokes - 1:
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
            # the library's own row layout (ismrmrd.hdf5.Dataset.append_acquisition), all rows at once
            table[row]["head"] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
            table[row]["data"] = acq.data.view(np.float32).reshape(-1)
            table[row]["traj"] = acq.traj.view(np.float32).reshape(-1)
            row += 1
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group("dataset")
        g.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))[0] = xsd.ToXML(head)
        g.create_dataset("data", data=table, maxshape=(None,), chunks=True)
    return target


def _header(xml: bytes, path: Path) -> Any:
    import ismrmrd.xsd as xsd

    try:
        return xsd.CreateFromDocument(xml.decode() if isinstance(xml, bytes) else str(xml))
    except Exception as e:  # the XML parser raises several types
        raise MrfreconError(f"{path}: ISMRMRD XML header missing or invalid ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _check_timing(head: Any, seq: Sequence, path: Path) -> None:
    sp = getattr(head, "sequenceParameters", None)
    if sp is None:
        return
    tes = np.unique(seq.te_ms)
    for te in sp.TE or []:
        if not np.any(np.abs(tes - float(te)) < 0.01):
            raise MrfreconError(f"{path}: header TE {float(te):g} ms is none of the sequence's echo times "
                                f"({', '.join(f'{t:g}' for t in tes)} ms): another sequence or echo spacing (--sequence, --echo-spacing)")
    trs = np.unique(seq.tr_ms)
    for tr in sp.TR or []:
        if not np.any(np.abs(trs - float(tr)) < 0.01):
            raise MrfreconError(f"{path}: header TR {float(tr):g} ms is none of the sequence's repetition times "
                                f"({', '.join(f'{t:g}' for t in trs)} ms): another echo spacing (--echo-spacing) or sequence")
    if sp.TI and abs(float(sp.TI[0]) - seq.ti_ms) > 0.01:
        raise MrfreconError(f"{path}: header TI {float(sp.TI[0]):g} ms, but the sequence has {seq.ti_ms:g} ms")


def read_ismrmrd(path: str | os.PathLike[str], sequence: Sequence, *, window: int = 55,
                 sensitivity_window: int = 7, nthreads: int | None = None, recon: str = "kwic",
                 tv_weight: float | None = None) -> ImportedSeries:
    """Reconstruct the MRF series of an ISMRMRD radial acquisition (module docstring). The
    acquisitions are read as one table (the library reads one row per call: 6 ms each here).
    ``recon``: ``"kwic"`` (view sharing) or ``"kwic-tv"`` (then KWIC + CS-TV in the temporal
    subspace, :func:`mrfrecon.acquisition.cstv.cstv_reconstruct`, with the Walsh sensitivities
    in its forward model; ``tv_weight`` default that of :class:`~mrfrecon.acquisition.cstv.CsTvOptions`)."""
    from ..acquisition.cstv import RECONS, CsTvOptions, cstv_reconstruct

    if recon not in RECONS:
        raise MrfreconError(f"recon: expected one of {', '.join(RECONS)}, got {recon!r}")
    tv = CsTvOptions() if tv_weight is None else CsTvOptions(weight=tv_weight)  # validates the weight first
    import h5py
    import ismrmrd

    from ..acquisition import kwic_reconstruct, kwic_weights, radial_trajectory
    from ..acquisition.nufft import Nufft2D
    from ..acquisition.walsh import walsh_sensitivities

    import time

    t_start = time.perf_counter()
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "dataset/xml" not in f or "dataset/data" not in f:
                raise MrfreconError(f"{path}: ISMRMRD: /dataset/xml or /dataset/data missing")
            xml = f["dataset/xml"][0]
            table = f["dataset/data"][()]
    except OSError as e:
        raise MrfreconError(f"{path}: not a readable ISMRMRD file ({e})") from None
    head = _header(xml, path)
    _check_timing(head, sequence, path)
    if not head.encoding:
        raise MrfreconError(f"{path}: ISMRMRD header has no encoding")
    enc = head.encoding[0]
    traj_kind = getattr(enc.trajectory, "value", str(enc.trajectory))
    if traj_kind not in ("radial", "goldenangle", "other"):
        raise MrfreconError(f"{path}: trajectory {traj_kind!r}: expected a radial acquisition")
    try:
        matrix = int(enc.reconSpace.matrixSize.x)
        n_samples_hdr = int(enc.encodedSpace.matrixSize.x)
        fov = float(enc.reconSpace.fieldOfView_mm.x), float(enc.reconSpace.fieldOfView_mm.y)
        thick = float(enc.reconSpace.fieldOfView_mm.z)
    except (TypeError, ValueError, AttributeError):
        raise MrfreconError(f"{path}: ISMRMRD header: encodedSpace/reconSpace matrix or field of view missing or not numbers") from None
    if matrix < 2 or n_samples_hdr < matrix or min(fov) <= 0:
        raise MrfreconError(f"{path}: ISMRMRD header: recon matrix {matrix}, readout {n_samples_hdr} samples, field of "
                            f"view {fov} mm do not describe an image")
    hd = table["head"]
    skip = (1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)) | (1 << (ismrmrd.ACQ_IS_DUMMYSCAN_DATA - 1))
    rows = np.flatnonzero((hd["flags"] & np.uint64(skip)) == 0)
    if rows.size == 0:
        raise MrfreconError(f"{path}: no imaging acquisitions")
    n_coils = int(hd["active_channels"][rows[0]])
    bad = rows[(hd["active_channels"][rows] != n_coils) | (hd["number_of_samples"][rows] != n_samples_hdr)]
    if bad.size:
        i = int(bad[0])
        raise MrfreconError(f"{path}: acquisition {i}: {int(hd['active_channels'][i])} coils × {int(hd['number_of_samples'][i])} "
                            f"samples, expected {n_coils} × {n_samples_hdr} (the header's readout length)")
    sl = hd["idx"]["slice"][rows].astype(int)
    sp = hd["idx"]["kspace_encode_step_1"][rows].astype(int)
    slices = sorted(set(sl.tolist()))
    if slices != list(range(len(slices))):
        raise MrfreconError(f"{path}: slice counters {slices}: expected 0 … {len(slices) - 1}")
    for s_ in slices:
        got = np.sort(sp[sl == s_])
        if got.size != np.unique(got).size:
            dup = int(got[np.flatnonzero(np.diff(got) == 0)[0]])
            raise MrfreconError(f"{path}: spoke {dup} of slice {s_} appears twice")
        if not np.array_equal(got, np.arange(sequence.spokes)):
            raise MrfreconError(f"{path}: slice {s_} has {got.size} spokes (counters {got[0]} … {got[-1]}), but the "
                                f"sequence has {sequence.spokes}")
    has_traj = int(hd["trajectory_dimensions"][rows[0]]) > 0
    ksp = np.empty((len(slices), n_coils, sequence.spokes, n_samples_hdr), np.complex64)
    traj = np.empty((sequence.spokes, n_samples_hdr, 2), np.float32) if has_traj else None
    for r, s_, k_ in zip(rows, sl, sp, strict=True):
        ksp[s_, :, k_] = np.asarray(table["data"][r], np.float32).view(np.complex64).reshape(n_coils, n_samples_hdr)
        if traj is not None and s_ == 0:
            tr = np.asarray(table["traj"][r], np.float32)
            if tr.size != 2 * n_samples_hdr:
                raise MrfreconError(f"{path}: spoke {k_}: trajectory of {tr.size} values, expected {n_samples_hdr} × 2")
            traj[k_] = tr.reshape(n_samples_hdr, 2)
    geo = {}
    for s_ in slices:
        r = rows[sl == s_][0]
        geo[s_] = tuple(np.asarray(hd[f][r], float) for f in ("position", "read_dir", "phase_dir", "slice_dir"))
    _check_complex(ksp, f"{path}: k-space")
    if traj is not None:
        top = float(np.abs(traj).max())
        if not np.isfinite(traj).all() or top > 0.5 + 1e-4:
            raise MrfreconError(f"{path}: trajectory values up to {top:g}: expected cycles per pixel within [-0.5, 0.5]")
        traj = traj * np.float32(2 * np.pi)
        source = "file"
    else:
        if n_samples_hdr % matrix:
            raise MrfreconError(f"{path}: {n_samples_hdr} readout samples is not a multiple of the {matrix} matrix")
        traj = radial_trajectory(sequence, matrix=matrix, oversampling=n_samples_hdr // matrix)
        source = "sequence golden angle"
    # time-averaged coil images (every spoke, ramp-weighted) → Walsh sensitivities → KWIC frames
    t_read = time.perf_counter()
    full = kwic_weights(traj, sequence.spokes, sequence.spokes)
    op = Nufft2D(matrix, nthreads=nthreads)
    op.set_points(traj.reshape(-1, 2))
    avg = op.adjoint((ksp * full.weights[0][None, None]).reshape(len(slices), n_coils, -1))
    sens = walsh_sensitivities(avg, window=sensitivity_window) if n_coils > 1 else None
    t_sens = time.perf_counter()
    series = kwic_reconstruct(ksp, traj, sequence, window=window, coils=sens, matrix=matrix, nthreads=nthreads)
    t_kwic = time.perf_counter()
    if recon == "kwic-tv":
        series = cstv_reconstruct(ksp, traj, sequence, options=tv, coils=sens, start=series, window=window,
                                  nthreads=nthreads)
    t_tv = time.perf_counter()
    # geometry: columns along read_dir, rows along phase_dir, slice centres at position (LPS+)
    pos0, rd, pd, sd = geo[0]
    aff = np.eye(4)
    aff[:3, 0] = _unit(rd) * fov[0] / matrix
    aff[:3, 1] = _unit(pd) * fov[1] / matrix
    if len(slices) > 1:
        aff[:3, 2] = (geo[len(slices) - 1][0] - pos0) / (len(slices) - 1)
    else:
        aff[:3, 2] = _unit(sd) * (thick or 1.0)
    centre = np.array([(matrix - 1) / 2, (matrix - 1) / 2])
    aff[:3, 3] = pos0 - aff[:3, :2] @ centre
    notes = {"kind": "ismrmrd", "coils": int(n_coils), "trajectory": source, "kwic_window": int(window),
             "recon": recon, **({"tv_weight": tv.weight} if recon == "kwic-tv" else {}),
             "sensitivities": "Walsh (2000) on the time-averaged image" if n_coils > 1 else "single coil"}
    seconds = {"read": t_read - t_start, "sensitivities": t_sens - t_read, "kwic": t_kwic - t_sens,
               "cs-tv": t_tv - t_kwic}
    return ImportedSeries(series, lps_to_ras @ aff, [str(path)], notes, seconds)
