"""Scanner files for the import tests, written with pydicom and nibabel the way the real tools write
them (tests/test_dicom_enhanced.py, tests/test_dcm2niix.py): one simulated scan, stored as 16-bit
magnitude and Siemens 12-bit phase (0…4095 with RescaleSlope 2, RescaleIntercept −4096), as

- classic MR Image Storage files (one file per slice, frame and part; ImageType M/P);
- Enhanced MR Image Storage as Siemens XA writes it (functional groups, DICOM PS3.3 C.7.6.16 and
  Table A.36-2), magnitude and phase in two files or mixed in one;
- Legacy Converted Enhanced MR Image Storage laid out as highdicom's converter lays it out
  (PS3.3 Table A.71-2; checked against highdicom 0.28.2's output);
- a dcm2niix pair: ``name.nii.gz`` + ``name_ph.nii.gz`` with JSON sidecars.

Every form holds the same stored integers, so every reader must give the same series:
:func:`simulated_world` makes the scan and the classic-DICOM reference the tests compare against,
:func:`match_maps` the maps of ``mrfrecon match`` on any of the forms. For raw data (ISMRMRD,
tests/test_ismrmrd*.py, tests/test_cohort_create.py), :func:`coefficient_images` gives a phantom's
temporal basis and coefficient images, the input of ``mrfrecon.acquisition.simulate_kspace``.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as Seq
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from mrfrecon.acquisition import lowrank_series
from mrfrecon.cli import cli
from mrfrecon.cohort import simulate_scan
from mrfrecon.dictionary import Dictionary, Grid
from mrfrecon.io.readers import read_scan
from mrfrecon.physics import simulate, simulate_projected
from mrfrecon.presets import load_preset
from mrfrecon.sequence import Sequence

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LEGACY_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def stored(scan) -> dict[str, Any]:
    """The stored integers of the scan's series: magnitude (uint16, with its slope) and phase
    (uint16 0…4095, Siemens: rescaled −4096…4094 for −π…π), both ``(slices, frames, y, x)``."""
    mag = np.abs(scan.series).astype(np.float64)
    slope = float(mag.max()) / 60000.0
    phase_scanner = np.angle(scan.series.astype(np.complex128)) / np.pi * 4096
    return {"M": np.round(mag / slope).astype(np.uint16), "P": np.clip(np.round((phase_scanner + 4096) / 2), 0,
                                                                         4095).astype(np.uint16),
            "slope": slope}


def geometry(aff: np.ndarray) -> dict[str, Any]:
    """DICOM geometry (LPS+) of a RAS affine of (x, y, slice)."""
    return {"row": RAS_TO_LPS @ aff[:3, 0] / np.linalg.norm(aff[:3, 0]),
            "col": RAS_TO_LPS @ aff[:3, 1] / np.linalg.norm(aff[:3, 1]),
            "spacing": np.linalg.norm(aff[:3, :3], axis=0),
            "ipp": lambda k: RAS_TO_LPS @ (aff @ [0, 0, k, 1])[:3]}


def simulated_world(root: Path, anatomy: str, seed: int) -> dict[str, Any]:
    """A simulated ``anatomy`` scan (tiny preset, 24², 2 slices, SNR 30, ``seed``) and what the
    import tests compare every form against: its stored integers (:func:`stored`), a small
    dictionary ``root/d.h5``, the foreground as ``root/mask.nii.gz``, the classic DICOM images of
    the integers (``classic``, :func:`write_classic`) and the series the classic-DICOM path reads
    from them (``ref``). Keys: root, scan, seq, aff, stored, classic, ref."""
    seq = Sequence.mrf_wf()
    cfg = {**load_preset("tiny")["cohort"], "matrix": 24, "slices": 2, "snr": 30.0}
    scan = simulate_scan("sub-01", anatomy, seed, cfg, seq, None)
    aff = scan.affine_ras()
    w = {"root": root, "scan": scan, "seq": seq, "aff": aff, "stored": stored(scan)}
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[700, 1700, 100]]}, "t1fat_ms": {"values": [300, 400]},
                           "b1": {"values": [0.5, 0.7, 0.9]}, "df_hz": {"values": [-30, 0, 30]}})
    Dictionary.build(seq, grid).save(root / "d.h5")
    nib.save(nib.Nifti1Image(scan.foreground.transpose(2, 1, 0).astype(np.uint8), aff), str(root / "mask.nii.gz"))
    w["classic"] = write_classic(w, root / "classic")
    w["ref"] = read_scan(w["classic"], mask=root / "mask.nii.gz")
    return w


def match_maps(world, inputs, out: Path, *extra) -> dict[str, np.ndarray]:
    """T1H2O, FF and B1 of ``mrfrecon match`` on ``inputs`` with the world's dictionary and mask
    (written to ``out``; the command must succeed)."""
    r = CliRunner().invoke(cli, list(map(str, ["match", *inputs, "--dictionary", world["root"] / "d.h5", "--out", out,
                                               "--mask", world["root"] / "mask.nii.gz", *extra])), obj={})
    assert r.exit_code == 0, r.output
    with h5py.File(next(out.glob("*_maps.h5"))) as f:
        return {k: f[f"maps/{k}"][()] for k in ("t1h2o", "ff", "b1")}


def frame_te_ms(seq) -> np.ndarray:
    """Each frame's echo time (ms): the TE of its spokes (the TE blocks are whole frames)."""
    return np.asarray(seq.te_ms).reshape(seq.frames, seq.spokes_per_frame)[:, 0]


def dicom_file(sop_class: str) -> FileDataset:
    """An empty DICOM file of ``sop_class`` (explicit VR little endian) with new SOP instance UIDs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds


def _common(ds: Dataset, study: dict[str, str], series_uid: str, series_number: int) -> None:
    """Patient, study, series and equipment attributes (what a converter expects to find)."""
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "MRF^Test", "sub-01", "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study["uid"], "20240101", "120000", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", series_uid, series_number
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = study["for"], ""
    ds.Manufacturer, ds.ManufacturerModelName = "SIEMENS", "MAGNETOM Vida"
    ds.ContentDate, ds.ContentTime = "20240101", "120000"


def _pixels(ds: Dataset, rows: int, cols: int, bits_stored: int = 16) -> None:
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0


def study_uids() -> dict[str, str]:
    return {"uid": generate_uid(), "for": generate_uid()}


def classic_datasets(world, part: str, *, rescale: bool = True, study: dict[str, str] | None = None) -> list[FileDataset]:
    """Classic MR images of one part (``M`` or ``P``), one per slice and frame, as a Siemens V/XA
    console exports them: ImageType ORIGINAL\\PRIMARY\\M|P\\ND, TemporalPositionIdentifier, EchoTime,
    the phase stored 0…4095 with RescaleSlope 2 and RescaleIntercept −4096 (``rescale=False``: the
    rescale pair lost, as an anonymiser or a custom sequence may leave it)."""
    scan, aff, seq = world["scan"], world["aff"], world["seq"]
    st, geo, te = world["stored"], geometry(world["aff"]), frame_te_ms(seq)
    s, t, ny, nx = scan.series.shape
    study = study or study_uids()
    series_uid = generate_uid()
    out = []
    for k in range(s):
        for f in range(t):
            ds = dicom_file(MRImageStorage)
            _common(ds, study, series_uid, 5 if part == "M" else 6)
            ds.ImageType = ["ORIGINAL", "PRIMARY", part, "ND"]
            ds.ImagePositionPatient = [float(v) for v in geo["ipp"](k)]
            ds.ImageOrientationPatient = [float(v) for v in (*geo["row"], *geo["col"])]
            ds.PixelSpacing = [float(geo["spacing"][1]), float(geo["spacing"][0])]
            ds.SliceThickness = float(geo["spacing"][2])
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "2D"
            ds.EchoTime, ds.RepetitionTime = float(te[f]), float(te[f]) + 1.11
            ds.TemporalPositionIdentifier = f + 1
            ds.AcquisitionNumber = 1
            ds.InstanceNumber = k * t + f + 1
            ds.AcquisitionDate, ds.AcquisitionTime = "20240101", f"1200{f // 60:02d}.{f % 60:03d}"
            _pixels(ds, ny, nx, 16 if part == "M" else 12)
            if part == "M":
                ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = st["slope"], 0.0, "US"
            elif rescale:
                ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2.0, -4096.0, "US"
            ds.PixelData = st[part][k, f].tobytes()
            out.append(ds)
    return out


def write_classic(world, folder: Path, *, rescale: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    study = study_uids()
    for part in ("M", "P"):
        for i, ds in enumerate(classic_datasets(world, part, rescale=rescale, study=study)):
            ds.save_as(str(folder / f"{part}{i:05d}.dcm"), enforce_file_format=True)
    return folder


def _item(**kw: Any) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def _dimension(pointer: int, group: int, label: str, org: str) -> Dataset:
    return _item(DimensionOrganizationUID=org, DimensionIndexPointer=pointer, FunctionalGroupPointer=group,
                 DimensionDescriptionLabel=label)


def write_xa_enhanced(world, folder: Path, *, mixed: bool, phase_rescale: bool = True,
                      edit=None) -> list[Path]:
    """Enhanced MR Image Storage as Siemens XA consoles export it: all slices and frames of a part in
    one file (``mixed``: both parts in one file, ComplexImageComponent MIXED at the top level).

    Shared groups: Pixel Measures, Plane Orientation. Per frame: Frame Content (StackID "1",
    InStackPositionNumber, TemporalPositionIndex, DimensionIndexValues in the Dimension Index
    Sequence's order), Plane Position, MR Echo (EffectiveEchoTime: it changes over the MRF train),
    MR Image Frame Type (FrameType, ComplexImageComponent) and Pixel Value Transformation (required
    for MONOCHROME2, Table A.36-2; per frame where the parts differ). Frames are stored time-major
    (all slices of frame 1, then frame 2, ...), the parts interleaved in a mixed file.
    ``edit(ds)`` may break the file before it is saved (the tests of bad input).
    """
    scan, seq, st, geo = world["scan"], world["seq"], world["stored"], geometry(world["aff"])
    te = frame_te_ms(seq)
    s, t, ny, nx = scan.series.shape
    folder.mkdir(parents=True, exist_ok=True)
    study = study_uids()
    groups = [("M", "P")] if mixed else [("M",), ("P",)]
    paths = []
    for n_file, parts in enumerate(groups):
        ds = dicom_file(ENHANCED_MR)
        _common(ds, study, generate_uid(), 5 + n_file)
        ds.SoftwareVersions = "syngo MR XA30"
        kind = "MIXED" if mixed else ("MAGNITUDE" if parts == ("M",) else "PHASE")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M" if parts == ("M",) else "P" if parts == ("P",) else "MIXED", "NONE"]
        ds.ComplexImageComponent = kind
        ds.PixelPresentation, ds.VolumetricProperties, ds.VolumeBasedCalculationTechnique = "MONOCHROME", "VOLUME", "NONE"
        ds.AcquisitionContrast, ds.ContentQualification = "MIXED", "PRODUCT"
        ds.InstanceNumber, ds.AcquisitionNumber = 1, 1
        org = generate_uid()
        ds.DimensionOrganizationSequence = Seq([_item(DimensionOrganizationUID=org)])
        dims = [_dimension(0x00209056, 0x00209111, "Stack ID", org),
                _dimension(0x00209057, 0x00209111, "In-Stack Position Number", org),
                _dimension(0x00209128, 0x00209111, "Temporal Position Index", org)]
        if mixed:
            dims.append(_dimension(0x00089208, 0x00189226, "Complex Image Component", org))
        ds.DimensionIndexSequence = Seq(dims)
        shared = _item(PixelMeasuresSequence=Seq([_item(PixelSpacing=[float(geo["spacing"][1]), float(geo["spacing"][0])],
                                                         SliceThickness=float(geo["spacing"][2]))]),
                       PlaneOrientationSequence=Seq([_item(ImageOrientationPatient=[float(v) for v in (*geo["row"],
                                                                                                      *geo["col"])])]))
        per, frames = [], []
        for f in range(t):
            for k in range(s):
                for part in parts:
                    slope, inter = (st["slope"], 0.0) if part == "M" else (2.0, -4096.0)
                    item = _item(
                        FrameContentSequence=Seq([_item(
                            StackID="1", InStackPositionNumber=k + 1, TemporalPositionIndex=f + 1,
                            FrameAcquisitionNumber=1,
                            DimensionIndexValues=[1, k + 1, f + 1] + ([1 if part == "M" else 2] if mixed else []))]),
                        PlanePositionSequence=Seq([_item(ImagePositionPatient=[float(v) for v in geo["ipp"](k)])]),
                        MREchoSequence=Seq([_item(EffectiveEchoTime=float(te[f]))]),
                        MRImageFrameTypeSequence=Seq([_item(
                            FrameType=["ORIGINAL", "PRIMARY", part, "NONE"],
                            ComplexImageComponent="MAGNITUDE" if part == "M" else "PHASE",
                            PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
                            VolumeBasedCalculationTechnique="NONE", AcquisitionContrast="MIXED")]))
                    if part == "M" or phase_rescale:
                        item.PixelValueTransformationSequence = Seq([_item(RescaleIntercept=inter, RescaleSlope=slope,
                                                                           RescaleType="US")])
                    per.append(item)
                    frames.append(st[part][k, f])
        ds.SharedFunctionalGroupsSequence = Seq([shared])
        ds.PerFrameFunctionalGroupsSequence = Seq(per)
        ds.NumberOfFrames = len(frames)
        _pixels(ds, ny, nx)
        ds.PixelData = np.stack(frames).astype(np.uint16).tobytes()
        if edit is not None:
            edit(ds)
        p = folder / f"enhanced{n_file + 1}.dcm"
        ds.save_as(str(p), enforce_file_format=True)
        paths.append(p)
    return paths


def write_legacy(world, folder: Path) -> list[Path]:
    """Legacy Converted Enhanced MR Image Storage laid out as highdicom's converter writes it (one
    file per classic series, i.e. per part): shared MR Image Frame Type (FrameType = the classic
    ImageType), Plane Orientation, Pixel Measures, Pixel Value Transformation; per frame Frame
    Content (DimensionIndexValues = the classic InstanceNumber, the one dimension), Plane Position
    and the Unassigned Per-Frame Converted Attributes (InstanceNumber, TemporalPositionIdentifier,
    EchoTime, which vary between the classic images)."""
    folder.mkdir(parents=True, exist_ok=True)
    study = study_uids()
    paths = []
    for part in ("M", "P"):
        src = classic_datasets(world, part, study=study)
        ds = dicom_file(LEGACY_ENHANCED_MR)
        _common(ds, study, generate_uid(), 105 if part == "M" else 106)
        ds.ImageType = ["ORIGINAL", "PRIMARY", part, "NONE"]
        ds.InstanceNumber = 1
        org = generate_uid()
        ds.DimensionOrganizationSequence = Seq([_item(DimensionOrganizationUID=org)])
        ds.DimensionIndexSequence = Seq([_dimension(0x00200013, 0x00209171,
                                                    "Instance Number of converted legacy instance", org)])
        first = src[0]
        ds.SharedFunctionalGroupsSequence = Seq([_item(
            MRImageFrameTypeSequence=Seq([_item(FrameType=ds.ImageType, PixelPresentation="MONOCHROME",
                                                VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE")]),
            PlaneOrientationSequence=Seq([_item(ImageOrientationPatient=first.ImageOrientationPatient)]),
            UnassignedSharedConvertedAttributesSequence=Seq([_item(ScanningSequence="GR", SequenceVariant="SP",
                                                                   MRAcquisitionType="2D")]),
            PixelMeasuresSequence=Seq([_item(SliceThickness=first.SliceThickness, PixelSpacing=first.PixelSpacing)]),
            PixelValueTransformationSequence=Seq([_item(RescaleIntercept=first.RescaleIntercept,
                                                        RescaleSlope=first.RescaleSlope, RescaleType="US")]))])
        ds.PerFrameFunctionalGroupsSequence = Seq([_item(
            FrameContentSequence=Seq([_item(FrameAcquisitionNumber=1, DimensionIndexValues=int(c.InstanceNumber))]),
            PlanePositionSequence=Seq([_item(ImagePositionPatient=c.ImagePositionPatient)]),
            UnassignedPerFrameConvertedAttributesSequence=Seq([_item(
                InstanceNumber=c.InstanceNumber, TemporalPositionIdentifier=c.TemporalPositionIdentifier,
                EchoTime=c.EchoTime, RepetitionTime=c.RepetitionTime)]),
            ConversionSourceAttributesSequence=Seq([_item(ReferencedSOPClassUID=c.SOPClassUID,
                                                          ReferencedSOPInstanceUID=c.SOPInstanceUID)]))
            for c in src])
        ds.NumberOfFrames = len(src)
        _pixels(ds, first.Rows, first.Columns, first.BitsStored)
        ds.PixelData = b"".join(c.PixelData for c in src)
        p = folder / f"legacy_{part}.dcm"
        ds.save_as(str(p), enforce_file_format=True)
        paths.append(p)
    return paths


def write_dcm2niix(world, folder: Path, stem: str = "MRF", *, phase_scl: bool = True,
                   sidecars: bool = True, mag_sidecar: dict | None = None, phase_sidecar: dict | None = None) -> Path:
    """The pair dcm2niix writes for a Siemens magnitude + phase series (``-f %p``): ``stem.nii.gz``
    and ``stem_ph.nii.gz`` (the ``_ph`` post-fix, FILENAMING.md), 4-D ``(x, y, z, t)``, the stored
    integers kept losslessly with the DICOM rescale in ``scl_slope``/``scl_inter`` (issue 406: phase
    2 and −4096; ``phase_scl=False``: a phase without rescale, which dcm2niix then writes as 1 and 0)
    and BIDS sidecars (EchoTime in s, ImageType with PHASE appended for the phase)."""
    st, aff, seq = world["stored"], world["aff"], world["seq"]
    folder.mkdir(parents=True, exist_ok=True)
    te = float(frame_te_ms(seq)[0]) / 1000.0

    def save(arr: np.ndarray, path: Path, slope: float, inter: float) -> None:
        img = nib.Nifti1Image(np.ascontiguousarray(arr.transpose(3, 2, 0, 1)).astype(np.uint16), aff)  # (x, y, z, t)
        img.header.set_qform(aff, code=1)
        img.header.set_sform(aff, code=1)
        raw = bytearray(img.to_bytes())
        # nibabel sets scl_* itself when it saves an array; write dcm2niix's: the stored integers
        # unchanged, the DICOM rescale in scl_slope/scl_inter (NIfTI-1 header bytes 112 and 116)
        struct.pack_into(img.header.endianness + "ff", raw, 112, slope, inter)
        with gzip.open(path, "wb") as fh:
            fh.write(bytes(raw))

    save(st["M"], folder / f"{stem}.nii.gz", st["slope"], 0.0)
    save(st["P"], folder / f"{stem}_ph.nii.gz", *((2.0, -4096.0) if phase_scl else (1.0, 0.0)))
    if sidecars:
        base = {"Modality": "MR", "Manufacturer": "Siemens", "ManufacturersModelName": "MAGNETOM_Vida",
                "SoftwareVersions": "syngo_MR_XA30", "MRAcquisitionType": "2D", "SeriesDescription": "MRF",
                "ProtocolName": "MRF", "EchoTime": te, "RepetitionTime": te + 0.00111,
                "ConversionSoftware": "dcm2niix", "ConversionSoftwareVersion": "v1.0.20241211"}
        mag = {**base, "SeriesNumber": 5, "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"], **(mag_sidecar or {})}
        pha = {**base, "SeriesNumber": 6, "ImageType": ["ORIGINAL", "PRIMARY", "P", "ND", "PHASE"], **(phase_sidecar or {})}
        (folder / f"{stem}.json").write_text(json.dumps(mag, indent=2))
        (folder / f"{stem}_ph.json").write_text(json.dumps(pha, indent=2))
    return folder / f"{stem}.nii.gz"


def coefficient_images(seq, ph, stride: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The phantom ``ph`` under ``seq`` as ``mrfrecon.cohort.acquire`` simulates it for k-space: the
    temporal basis (99.99 % of the energy of every ``stride``-th foreground voxel's per-spoke
    signal), the coefficient images ``(slices, K, y, x)`` complex64 (0 outside the foreground) and
    the mean frame magnitude of that subset (the signal level an SNR refers to)."""
    keys = ("t1h2o", "t1fat", "b1", "df", "ff", "pd")
    fg = ph.foreground
    p = {k: ph.maps[k][fg].astype(np.float64) for k in keys}
    x_sub = simulate(seq, *(p[k][::stride] for k in keys), per_spoke=True)
    basis, _ = lowrank_series(x_sub, energy=0.9999)
    coeffs = np.zeros((fg.size, basis.shape[1]), np.complex64)
    coeffs[np.flatnonzero(fg)] = simulate_projected(seq, basis.conj(), *(p[k] for k in keys))
    img = np.ascontiguousarray(coeffs.reshape(*fg.shape, -1).transpose(0, 3, 1, 2))
    return basis, img, float(np.abs(seq.frame_mean(x_sub)).mean())
