"""ISMRMRD/MRD radial MRF raw data in (and out, for the project's own simulated k-space).

The vendor-neutral raw-data format (Inati et al., "ISMRM Raw data format", MRM 77:411-421, 2017;
PyPI ``ismrmrd``): an HDF5 file with an XML header and one acquisition per readout. Here every
spoke is one acquisition: ``idx.kspace_encode_step_1`` is its index in the train (0 … spokes−1),
``idx.slice`` its slice, ``idx.repetition`` the train it belongs to, ``data`` ``(coils,
samples)``; the trajectory, when the file has one (``trajectory_dimensions`` 2), is ``(kx, ky)``
in cycles per pixel of the image within [−0.5, 0.5] (the normalization of Gadgetron and BART),
else the sequence's golden-angle spokes (:func:`mrfrecon.acquisition.radial_trajectory`). Each
acquisition's ``position`` (the slice centre), ``read_dir``, ``phase_dir`` and ``slice_dir``
(patient coordinates, LPS+ as in DICOM) give the geometry: image columns along ``read_dir``, rows
along ``phase_dir``; the image matrix and field of view are ``reconSpace``'s.

Readout: the samples between ``discard_pre`` and ``discard_post``, symmetric about
``center_sample``, form the spoke; its length against the header's matrices gives the readout
oversampling (:func:`readout_layout`: siemens_to_ismrmrd writes ``2N`` samples under an encoded
matrix of ``N``, the project's writer ``2N`` under ``2N``). The oversampled samples are kept, at
spacing ``2π / samples`` radians per image pixel (the project's own convention, so that imported
and simulated series are reconstructed alike), or removed on request (``readout="remove"``).

Before the images (:mod:`mrfrecon.acquisition.rawprep`): the ``ACQ_IS_NOISE_MEASUREMENT``
acquisitions give the coil noise covariance that prewhitens every spoke (they never enter the
images), and SVD coil compression reduces the coils to virtual coils on request. Dummy scans,
navigators, phase-correction, feedback, calibration and phase-stabilization acquisitions are
skipped.

Reconstruction: coil sensitivities by Walsh's method (:mod:`mrfrecon.acquisition.walsh`) on the
time-averaged image (all spokes, ramp-weighted), then the project's KWIC view sharing
(:func:`mrfrecon.acquisition.kwic_reconstruct`) → the series ``(slices, frames, y, x)``.

Siemens twix ``.dat`` files convert to ISMRMRD with the ISMRMRD project's ``siemens_to_ismrmrd``;
``twixtools`` is not used (no twix file can be tested here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from ..sequence import Sequence
from .geometry import lps_to_ras
from .series import ImportedSeries, _check_complex

__all__ = ["ReadoutLayout", "read_ismrmrd", "readout_layout", "write_ismrmrd"]

_H1_3T_HZ = 127_731_000  # 1H Larmor frequency at 2.89 T (a Siemens "3 T" field), for the header only


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) or 1.0)


def write_ismrmrd(path: str | os.PathLike[str], kspace: np.ndarray, sequence: Sequence, affine: np.ndarray, *,
                  matrix: int, traj: np.ndarray | None = None, slice_thickness_mm: float | None = None,
                  noise: np.ndarray | None = None, dwell_us: float = 0.0, noise_dwell_us: float = 0.0) -> Path:
    """Write radial k-space ``(slices, coils, spokes, samples)`` as an ISMRMRD file, one
    acquisition per spoke; ``traj`` ``(spokes, samples, 2)`` in radians/pixel (stored in cycles
    per pixel) or ``None`` to leave the trajectory to the reader; ``affine`` the RAS+ affine of the
    image ``(x, y, slice)``. ``noise`` ``(coils, acquisitions, samples)``: noise-adjustment
    acquisitions written first (flag ``ACQ_IS_NOISE_MEASUREMENT``, counters 0, ``sample_time_us``
    ``noise_dwell_us``; the spokes get ``dwell_us``). Written to a temporary name and renamed when
    complete."""
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
    nz = None if noise is None else np.asarray(noise)
    if nz is not None and (nz.ndim != 3 or nz.shape[0] != n_coils or not np.iscomplexobj(nz)):
        raise MrfreconError(f"noise: expected complex ({n_coils} coils, acquisitions, samples), got {nz.dtype} {nz.shape}")
    n_noise = 0 if nz is None else nz.shape[1]
    table = np.empty(n_noise + n_slices * n_spokes, dtype=acquisition_dtype)
    for row in range(n_noise):
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(nz[:, row], np.complex64))
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        acq.sample_time_us = noise_dwell_us
        acq.scan_counter = row
        table[row]["head"] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
        table[row]["data"] = acq.data.view(np.float32).reshape(-1)
        table[row]["traj"] = acq.traj.view(np.float32).reshape(-1)
    row = n_noise
    for s in range(n_slices):
        pos = lps[:3, :2] @ centre + lps[:3, 2] * s + lps[:3, 3]
        for sp in range(n_spokes):
            t = None if traj is None else np.ascontiguousarray(np.asarray(traj[sp], np.float32) / np.float32(2 * np.pi))
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(k[s, :, sp], np.complex64), t)
            acq.idx.kspace_encode_step_1 = sp
            acq.idx.slice = s
            acq.center_sample = n_samples // 2
            acq.scan_counter = row
            acq.sample_time_us = dwell_us
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


#: acquisitions that are no imaging spokes (ISMRMRD ``ismrmrd.h`` flag numbers); noise is used apart
_NOT_IMAGING = ("ACQ_IS_DUMMYSCAN_DATA", "ACQ_IS_NAVIGATION_DATA", "ACQ_IS_PHASECORR_DATA", "ACQ_IS_RTFEEDBACK_DATA",
                "ACQ_IS_HPFEEDBACK_DATA", "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA", "ACQ_IS_PARALLEL_CALIBRATION",
                "ACQ_IS_PHASE_STABILIZATION_REFERENCE", "ACQ_IS_PHASE_STABILIZATION")
REPETITION_CHOICES = ("last", "all-average")
READOUT_CHOICES = ("keep", "remove")
_BLOCK = 1024  # acquisitions read from the file at a time: bounds memory at paper size with many coils


@dataclass(frozen=True)
class ReadoutLayout:
    """Where a spoke's useful samples lie in an acquisition of ``samples`` points.

    Attributes
    ----------
    start
        First sample used (``discard_pre``).
    length
        Samples used, ``2 × (center_sample − discard_pre)``: a spoke symmetric about its k-space
        centre, which is then at ``start + length // 2`` (the project's convention, sample
        ``samples // 2`` at k = 0).
    oversampling
        ``length / N`` with ``N`` the image matrix (reconSpace): the spacing of the samples is
        ``2π / length`` radians per image pixel.
    """

    start: int
    length: int
    oversampling: float


def readout_layout(samples: int, discard_pre: int, discard_post: int, center_sample: int, *, encoded: int,
                   recon: int, where: str) -> ReadoutLayout:
    """Check one acquisition's readout against the header and say which samples form the spoke.

    siemens_to_ismrmrd (ismrmrd/siemens_to_ismrmrd, ``parameter_maps/IsmrmrdParameterMap_Siemens.xsl``)
    writes, for non-Cartesian trajectories, ``encodedSpace.matrixSize.x`` = ``imageColumns`` and the
    encoded field of view = ``dReadoutFOV``, both *without* the readout oversampling (only Cartesian
    data get ``flReadoutOSFactor``), while the ADC delivers ``2N`` samples (the scanner's default
    oversampling); ``center_sample`` is the MDH ``ushKSpaceCentreColumn`` and ``discard_pre``/
    ``discard_post`` its ``sCutOff`` (``main.cpp``). The project's own writer puts the ``2N`` into
    ``encodedSpace``. So the spoke length (after the discards, symmetric about ``center_sample``)
    may be the encoded or the recon matrix, or twice either; anything else is refused.

    ``center_sample`` 0 (left unset by many writers) is taken as the middle of the kept samples.

    Parameters
    ----------
    samples, discard_pre, discard_post, center_sample
        The acquisition header's ``number_of_samples`` and fields of the same names.
    encoded, recon
        ``encodedSpace.matrixSize.x`` and ``reconSpace.matrixSize.x`` of the header.
    where
        File and acquisition, for the message.

    Returns
    -------
    ReadoutLayout
        The first sample and the length of the spoke, and its oversampling against ``recon``.
    """
    kept = samples - discard_pre - discard_post
    what = (f"{where}: {samples} samples per readout (discard_pre {discard_pre}, discard_post {discard_post}, "
            f"center_sample {center_sample})")
    if kept < 2:
        raise MrfreconError(f"{what}: fewer than 2 samples left after the discards")
    centre = center_sample - discard_pre if center_sample else kept // 2
    left, right = centre, kept - centre  # samples before the centre; the centre and after
    if not (left == right or right == left + 1):  # even: symmetric; odd: one extra sample at the end, dropped
        raise MrfreconError(f"{what}: the kept samples are not symmetric about the k-space centre (a partial echo, "
                            f"which KWIC's density compensation does not model): expected center_sample "
                            f"{discard_pre + kept // 2}")
    length = 2 * left
    fits = sorted({encoded, 2 * encoded, recon, 2 * recon})
    if length not in fits:
        raise MrfreconError(f"{what}: a spoke of {length} samples, which fits neither the header's readout length "
                            f"(encodedSpace matrixSize.x {encoded}) nor the image matrix (reconSpace matrixSize.x "
                            f"{recon}), nor twice either: expected {' or '.join(str(v) for v in fits)}")
    return ReadoutLayout(discard_pre, length, length / recon)


def _rows(ds: Any, rows: np.ndarray, field: str):
    """(row, value) of ``field`` for the acquisitions ``rows`` (ascending), read a block at a time."""
    for blk in np.unique(rows // _BLOCK):
        a = int(blk) * _BLOCK
        vals = ds.fields(field)[a:a + _BLOCK]
        for r in rows[(rows >= a) & (rows < a + _BLOCK)]:
            yield int(r), vals[int(r) - a]


def _acq_data(value: np.ndarray, coils: int, samples: int, where: str) -> np.ndarray:
    v = np.asarray(value, np.float32)
    if v.size != 2 * coils * samples:
        raise MrfreconError(f"{where}: data of {v.size} values, expected {coils} coils × {samples} complex samples")
    return v.view(np.complex64).reshape(coils, samples)


def _choose_repetitions(repetition: int | str, present: list[int], path: Path) -> list[int]:
    if repetition == "last":
        return present[-1:]
    if repetition == "all-average":
        return present
    if isinstance(repetition, (int, np.integer)) and not isinstance(repetition, bool):
        if int(repetition) in present:
            return [int(repetition)]
        raise MrfreconError(f"{path}: repetition {repetition}: the file has repetition(s) "
                            f"{', '.join(map(str, present))} (idx.repetition); choose one of them, 'last' or 'all-average'")
    raise MrfreconError(f"repetition: expected a repetition index (idx.repetition), 'last' or 'all-average', got {repetition!r}")


def _check_options(repetition: Any, readout: Any, coil_compression: Any) -> tuple[int | str, int | str | None]:
    """Validate the raw-data options (strings from the command line too) → (repetition, coil_compression)."""
    if isinstance(repetition, str) and repetition.strip().isdigit():
        repetition = int(repetition)
    if not (repetition in REPETITION_CHOICES or (isinstance(repetition, (int, np.integer))
                                                  and not isinstance(repetition, bool) and repetition >= 0)):
        raise MrfreconError(f"repetition (--repetition): expected a repetition index ≥ 0 (idx.repetition), 'last' or "
                            f"'all-average', got {repetition!r}")
    if readout not in READOUT_CHOICES:
        raise MrfreconError(f"readout: expected one of {', '.join(READOUT_CHOICES)}, got {readout!r}")
    if isinstance(coil_compression, str) and coil_compression.strip().isdigit():
        coil_compression = int(coil_compression)
    if not (coil_compression is None or coil_compression == "auto" or (
            isinstance(coil_compression, (int, np.integer)) and not isinstance(coil_compression, bool)
            and coil_compression >= 1)):
        raise MrfreconError(f"coil_compression (--virtual-coils): expected a number of virtual coils ≥ 1, 'auto' or "
                            f"none, got {coil_compression!r}")
    return repetition, coil_compression


def read_ismrmrd(path: str | os.PathLike[str], sequence: Sequence, *, window: int = 55,
                 sensitivity_window: int = 7, nthreads: int | None = None, recon: str = "kwic",
                 tv_weight: float | None = None, repetition: int | str = "last", readout: str = "keep",
                 prewhiten: bool = True, coil_compression: int | str | None = None) -> ImportedSeries:
    """Reconstruct the MRF series of an ISMRMRD radial acquisition (module docstring).

    Parameters
    ----------
    path
        ISMRMRD/MRD HDF5 file (group ``/dataset``).
    sequence
        The MRF sequence: spokes per repetition, frames, echo and repetition times to check.
    window, sensitivity_window, nthreads
        KWIC window (spokes), Walsh neighbourhood (pixels), NUFFT threads.
    recon, tv_weight
        ``"kwic"`` (view sharing) or ``"kwic-tv"`` (then KWIC + CS-TV in the temporal subspace,
        :func:`mrfrecon.acquisition.cstv.cstv_reconstruct`, with the Walsh sensitivities in its
        forward model; ``tv_weight`` default that of :class:`~mrfrecon.acquisition.cstv.CsTvOptions`).
    repetition
        Which train, by ``idx.repetition``: an index, ``"last"`` (default: the one the sequence's
        signal model keeps, :class:`~mrfrecon.sequence.Sequence`) or ``"all-average"`` (the mean of
        every repetition's k-space; the first train starts from equilibrium, the later ones after
        the recovery, so it differs from the dictionary for long T1).
    readout
        ``"keep"`` the oversampled readout, with the trajectory's sample spacing ``2π / samples``
        (default: the same numbers as the project's simulation), or ``"remove"`` it by cropping
        the projections (:func:`~mrfrecon.acquisition.rawprep.remove_readout_oversampling`; half the
        NUFFT points).
    prewhiten
        Use the ``ACQ_IS_NOISE_MEASUREMENT`` acquisitions, when there are any, to prewhiten the
        coils (:mod:`mrfrecon.acquisition.rawprep`). Noise acquisitions never enter the images.
    coil_compression
        None (every coil), a number of virtual coils, or ``"auto"`` (the fewest keeping
        :data:`~mrfrecon.acquisition.rawprep.AUTO_ENERGY` of the energy), per slice after
        prewhitening.

    Returns
    -------
    ImportedSeries
        series complex64 ``(slices, frames, y, x)``, RAS+ affine, notes (what was done), seconds
        per stage (read; prepare: prewhitening, compression, oversampling removal; sensitivities;
        kwic; cs-tv).
    """
    from ..acquisition.cstv import RECONS, CsTvOptions, cstv_reconstruct

    if recon not in RECONS:
        raise MrfreconError(f"recon: expected one of {', '.join(RECONS)}, got {recon!r}")
    tv = CsTvOptions() if tv_weight is None else CsTvOptions(weight=tv_weight)  # validates the weight first
    repetition, coil_compression = _check_options(repetition, readout, coil_compression)
    import h5py
    import ismrmrd

    from ..acquisition import kwic_reconstruct, kwic_weights
    from ..acquisition.nufft import Nufft2D
    from ..acquisition.rawprep import (apply_coil_matrix, coil_gram, dwell_time_scale, noise_covariance, noise_edge,
                                       prewhitening_matrix, remove_readout_oversampling)
    from ..acquisition.rawprep import coil_compression as coil_compression_of
    from ..acquisition.walsh import walsh_sensitivities

    import time

    t_start = time.perf_counter()
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise MrfreconError(f"{path}: not a readable ISMRMRD file ({e})") from None
    with f:
        if "dataset/xml" not in f or "dataset/data" not in f:
            raise MrfreconError(f"{path}: ISMRMRD: /dataset/xml or /dataset/data missing")
        ds = f["dataset/data"]
        try:
            xml = f["dataset/xml"][0]
            hd = ds.fields("head")[()]
        except (OSError, ValueError, KeyError, TypeError) as e:
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
            n_enc = int(enc.encodedSpace.matrixSize.x)
            fov = float(enc.reconSpace.fieldOfView_mm.x), float(enc.reconSpace.fieldOfView_mm.y)
            thick = float(enc.reconSpace.fieldOfView_mm.z)
        except (TypeError, ValueError, AttributeError):
            raise MrfreconError(f"{path}: ISMRMRD header: encodedSpace/reconSpace matrix or field of view missing or not numbers") from None
        if matrix < 2 or n_enc < 2 or min(fov) <= 0:
            raise MrfreconError(f"{path}: ISMRMRD header: recon matrix {matrix}, encoded readout {n_enc}, field of "
                                f"view {fov} mm do not describe an image")

        # ---- which acquisitions: noise apart, non-imaging skipped, one repetition (or all)
        flags = hd["flags"]

        def flagged(*names: str) -> np.ndarray:
            mask = np.uint64(sum(1 << (getattr(ismrmrd, n) - 1) for n in names))  # flag n is bit n−1
            return (flags & mask) != 0

        is_noise = flagged("ACQ_IS_NOISE_MEASUREMENT")
        imaging = np.flatnonzero(~is_noise & ~flagged(*_NOT_IMAGING))
        noise_rows = np.flatnonzero(is_noise)
        if imaging.size == 0:
            raise MrfreconError(f"{path}: no imaging acquisitions")
        reps_all = hd["idx"]["repetition"][imaging].astype(int)
        present = sorted(set(reps_all.tolist()))
        chosen = _choose_repetitions(repetition, present, path)
        rows = imaging[np.isin(reps_all, chosen)]
        rep = hd["idx"]["repetition"][rows].astype(int)

        # ---- readout layout: one per scan, fitting the header (oversampling from the samples)
        keys = ("active_channels", "number_of_samples", "discard_pre", "discard_post", "center_sample")
        lay = np.stack([hd[k][rows].astype(np.int64) for k in keys], axis=1)
        kinds, first = np.unique(lay, axis=0, return_index=True)
        layouts = {}
        for kind, i in sorted(zip(map(tuple, kinds), first), key=lambda t: t[1]):
            layouts[kind] = readout_layout(*map(int, kind[1:]), encoded=n_enc, recon=matrix,
                                           where=f"{path}: acquisition {int(rows[i])}")
        if len(layouts) > 1:
            (c0, n0, *_), (c1, n1, *_) = list(layouts)[:2]
            i1 = int(rows[sorted(first)[1]])
            raise MrfreconError(f"{path}: acquisition {i1}: {c1} coils × {n1} samples, expected {c0} × {n0} as in "
                                f"acquisition {int(rows[0])} (one readout layout, coils and discards per scan)")
        (kind, ro), = layouts.items()
        n_coils, n_samples_file = int(kind[0]), int(kind[1])
        if n_coils < 1:
            raise MrfreconError(f"{path}: acquisition {int(rows[0])}: active_channels 0")

        # ---- spokes per slice, per repetition
        sl = hd["idx"]["slice"][rows].astype(int)
        sp = hd["idx"]["kspace_encode_step_1"][rows].astype(int)
        slices = sorted(set(sl.tolist()))
        if slices != list(range(len(slices))):
            raise MrfreconError(f"{path}: slice counters {slices}: expected 0 … {len(slices) - 1}")
        for r_ in chosen:
            in_rep = rep == r_
            for s_ in slices:
                got = np.sort(sp[in_rep & (sl == s_)])
                what = f"slice {s_}" + (f" of repetition {r_}" if len(present) > 1 else "")
                if got.size != np.unique(got).size:
                    dup = int(got[np.flatnonzero(np.diff(got) == 0)[0]])
                    raise MrfreconError(f"{path}: spoke {dup} of slice {s_} in repetition {r_} appears twice "
                                        f"(idx.kspace_encode_step_1, idx.slice, idx.repetition)")
                if not np.array_equal(got, np.arange(sequence.spokes)):
                    span = f" (counters {got[0]} … {got[-1]})" if got.size else ""
                    raise MrfreconError(f"{path}: {what} has {got.size} spokes{span}, but the sequence has "
                                        f"{sequence.spokes}")

        # ---- k-space of the chosen repetition(s), the spoke's samples only
        n_use = ro.length
        ksp = np.zeros((len(slices), n_coils, sequence.spokes, n_use), np.complex64)
        cut = slice(ro.start, ro.start + n_use)
        for r, v in _rows(ds, rows, "data"):
            i = np.searchsorted(rows, r)
            ksp[sl[i], :, sp[i]] += _acq_data(v, n_coils, n_samples_file, f"{path}: acquisition {r}")[:, cut]
        if len(chosen) > 1:
            ksp /= np.float32(len(chosen))
        has_traj = int(hd["trajectory_dimensions"][rows[0]]) > 0
        traj: np.ndarray | None = None
        if has_traj:
            traj = np.empty((sequence.spokes, n_use, 2), np.float32)
            first_slice = rows[(sl == 0) & (rep == chosen[0])]
            for r, v in _rows(ds, first_slice, "traj"):
                tr = np.asarray(v, np.float32)
                if tr.size != 2 * n_samples_file:
                    raise MrfreconError(f"{path}: acquisition {r}: trajectory of {tr.size} values, expected "
                                        f"{n_samples_file} × 2 (trajectory_dimensions 2)")
                traj[sp[np.searchsorted(rows, r)]] = tr.reshape(n_samples_file, 2)[cut]

        # ---- noise acquisitions: coil noise covariance at the imaging dwell time
        noise_note: dict[str, Any] = {"acquisitions": int(noise_rows.size)}
        whiten = None
        if noise_rows.size and prewhiten:
            dwell = float(hd["sample_time_us"][rows[0]])
            parts = []
            for r, v in _rows(ds, noise_rows, "data"):
                c_, n_, pre, post = (int(hd[k][r]) for k in ("active_channels", "number_of_samples", "discard_pre", "discard_post"))
                if c_ != n_coils:
                    raise MrfreconError(f"{path}: noise acquisition {r} (ACQ_IS_NOISE_MEASUREMENT): {c_} coils, but the "
                                        f"imaging acquisitions have {n_coils}")
                x = _acq_data(v, c_, n_, f"{path}: noise acquisition {r}")[:, pre:n_ - post]
                # noise variance ∝ 1/dwell: bring every noise sample to the imaging dwell time
                parts.append(x / np.float32(dwell_time_scale(dwell, float(hd["sample_time_us"][r]))))
            noise = np.concatenate(parts, axis=1)
            try:
                whiten = prewhitening_matrix(noise_covariance(noise))
            except MrfreconError as e:
                raise MrfreconError(f"{path}: noise acquisitions (ACQ_IS_NOISE_MEASUREMENT): {e}") from None
            noise_dwell = sorted({float(hd["sample_time_us"][r]) for r in noise_rows})
            noise_note.update(samples=int(noise.shape[1]), prewhitened=True, noise_dwell_us=noise_dwell,
                              acquisition_dwell_us=dwell)
        else:
            noise_note["prewhitened"] = False
        geo = {}
        for s_ in slices:
            r = rows[(sl == s_) & (rep == chosen[0])][0]
            geo[s_] = tuple(np.asarray(hd[k][r], float) for k in ("position", "read_dir", "phase_dir", "slice_dir"))
    _check_complex(ksp, f"{path}: k-space")
    t_read = time.perf_counter()

    # ---- prewhitening and coil compression: one (virtual, coils) matrix per slice
    comp_note: dict[str, Any] = {}
    if whiten is not None or coil_compression is not None:
        mats = []
        grams = []
        for s_ in slices:
            g = coil_gram(ksp[s_])
            grams.append(g if whiten is None else whiten @ g @ whiten.conj().T)
        # the noise edge of the eigenvalues (rawprep's docstring): whitened noise has unit variance
        # per sample, 1/R after averaging R repetitions
        var = None if whiten is None else 1.0 / len(chosen)
        floors = [noise_edge(np.linalg.eigvalsh(g), ksp[0, 0].size, var) for g in grams]
        k_virtual = None
        if coil_compression == "auto":
            k_virtual = max(coil_compression_of(g, noise_power=p).virtual_coils for g, p in zip(grams, floors))
        elif coil_compression is not None:
            k_virtual = min(int(coil_compression), n_coils)
        kept = []
        for g, p in zip(grams, floors):
            if k_virtual is None:
                mats.append(whiten)
                continue
            cc = coil_compression_of(g, k_virtual, noise_power=p)
            kept.append((cc.signal_energy, cc.energy))
            mats.append(cc.matrix if whiten is None else cc.matrix @ whiten)
        ksp = apply_coil_matrix(ksp, np.stack(mats), inplace=k_virtual is None)
        if k_virtual is not None:
            comp_note = {"virtual_coils": int(k_virtual), "compression": str(coil_compression),
                         "compression_signal_energy": round(float(min(e for e, _ in kept)), 6),
                         "compression_energy": round(float(min(e for _, e in kept)), 6)}
    if readout == "remove" and ro.oversampling > 1:
        if n_use % matrix:
            raise MrfreconError(f"{path}: readout oversampling {ro.oversampling:g} ({n_use} samples for a {matrix} "
                                f"matrix) is not an integer: it cannot be removed (readout='keep')")
        factor = n_use // matrix
        ksp = remove_readout_oversampling(ksp, factor)
        if traj is not None:
            idx = n_use // 2 + factor * (np.arange(matrix) - matrix // 2)
            line = traj[:, n_use // 2:n_use // 2 + 1] + (np.arange(n_use) - n_use // 2)[None, :, None] * (
                (traj[:, n_use // 2 + 1] - traj[:, n_use // 2 - 1]) / 2)[:, None]
            if np.abs(traj - line).max() > 1e-3 * np.abs(traj).max():
                raise MrfreconError(f"{path}: the file's trajectory is not straight, evenly spaced spokes: readout "
                                    f"oversampling cannot be removed by cropping (readout='keep')")
            traj = np.ascontiguousarray(traj[:, idx])
    n_samples = ksp.shape[-1]
    if traj is not None:
        top = float(np.abs(traj).max())
        if not np.isfinite(traj).all() or top > 0.5 + 1e-4:
            raise MrfreconError(f"{path}: trajectory values up to {top:g}: expected cycles per pixel within [-0.5, 0.5]")
        traj = traj * np.float32(2 * np.pi)
        source = "file"
    else:
        # the sequence's golden-angle spokes, samples 2π/n_samples apart with k = 0 at n_samples // 2
        # (radial_trajectory's convention, whose oversampling need not be an integer here)
        radius = (np.arange(n_samples) - n_samples // 2) * (2.0 * np.pi / n_samples)
        theta = np.asarray(sequence.spoke_angles_rad(), np.float64)[:, None]
        traj = np.empty((sequence.spokes, n_samples, 2), np.float32)
        traj[..., 0] = radius * np.cos(theta)
        traj[..., 1] = radius * np.sin(theta)
        source = "sequence golden angle"
    n_virtual = ksp.shape[1]
    # time-averaged coil images (every spoke, ramp-weighted) → Walsh sensitivities → KWIC frames
    t_prep = time.perf_counter()
    full = kwic_weights(traj, sequence.spokes, sequence.spokes)
    op = Nufft2D(matrix, nthreads=nthreads)
    op.set_points(traj.reshape(-1, 2))
    avg = op.adjoint((ksp * full.weights[0][None, None]).reshape(len(slices), n_virtual, -1))
    sens = walsh_sensitivities(avg, window=sensitivity_window) if n_virtual > 1 else None
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
    rep_note = (f"{chosen[0]}" if len(chosen) == 1 else "average of " + ", ".join(map(str, chosen)))
    notes = {"kind": "ismrmrd", "coils": int(n_coils), "trajectory": source, "kwic_window": int(window),
             "recon": recon, **({"tv_weight": tv.weight} if recon == "kwic-tv" else {}),
             "sensitivities": "Walsh (2000) on the time-averaged image" if n_virtual > 1 else "single coil",
             "repetitions": present, "repetition": rep_note,
             "readout": {"samples": n_samples_file, "used": [ro.start, ro.start + n_use],
                         "oversampling": round(ro.oversampling, 6),
                         "oversampling_handling": "removed" if n_samples < n_use else "kept"},
             "noise": noise_note, **comp_note}
    seconds = {"read": t_read - t_start, "prepare": t_prep - t_read, "sensitivities": t_sens - t_prep,
               "kwic": t_kwic - t_sens, "cs-tv": t_tv - t_kwic}
    return ImportedSeries(series, lps_to_ras @ aff, [str(path)], notes, seconds)
