"""The scan file: one HDF5 file per scan (series, masks, maps, labels, sequence, attributes)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_h5
from ..errors import MrfreconError
from ..limits import check_maps
from ..sequence import Sequence
from .geometry import SIMULATED_AXCODES, affine_axcodes, affine_from_axcodes, check_affine
from .h5 import open_h5, read_dataset

SCAN_FORMAT = "mrfrecon.scan/1"
MAP_NAMES = ("t1h2o", "ff", "b1", "df", "t1fat", "pd")
MAP_UNITS = {"t1h2o": "ms", "ff": "fraction", "b1": "a.u.", "df": "Hz", "t1fat": "ms", "pd": "a.u.", "residual": "fraction"}
#: T1H2O is evaluated only where FF < 0.65: its confidence drops at high FF (Balsiger et al. 2019, sec. 2.3)
T1H2O_FF_LIMIT = 0.65


@dataclass
class Scan:
    """One MRF scan: the image series, its masks and maps, and how it was made.

    Attributes
    ----------
    series
        complex64 ``(slices, frames, y, x)``: the reconstructed MRF image series.
    foreground
        bool ``(slices, y, x)``: voxels with tissue signal.
    sequence
        The MRF sequence the series was acquired with.
    maps
        Ground-truth maps (simulation only), float32 ``(slices, y, x)`` each: ``t1h2o`` (ms), ``ff``,
        ``b1``, ``df`` (Hz), ``t1fat`` (ms), ``pd``.
    reference
        Reference maps from dictionary matching (same keys, plus ``residual``).
    labels, label_names
        int16 ROI label image ``(slices, y, x)`` (0 = background) and the name of every label.
    attrs
        JSON-serializable description: subject, region, condition, seed, simulation settings, ...
    affine
        float64 4 × 4: voxel index ``(x, y, slice)`` → patient RAS+ mm (:mod:`mrfrecon.io.geometry`);
        ``None`` for the scans mrfrecon simulates, whose geometry follows from ``attrs["voxel_mm"]``
        and the phantoms' orientation (see :meth:`affine_ras`).
    """

    series: np.ndarray
    foreground: np.ndarray
    sequence: Sequence
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    label_names: dict[int, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    affine: np.ndarray | None = None

    def voxel_mm(self) -> tuple[float, float, float]:
        """Voxel size (x, y, slice) in mm: from the affine, else ``attrs["voxel_mm"]``, else the
        paper's 1 × 1 × 8 mm."""
        if self.affine is not None:
            return tuple(float(v) for v in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))  # type: ignore[return-value]
        v = self.attrs.get("voxel_mm")
        return tuple(float(x) for x in v) if isinstance(v, list | tuple) and len(v) == 3 else (1.0, 1.0, 8.0)  # type: ignore[return-value]

    def affine_ras(self) -> np.ndarray:
        """The RAS+ affine of the voxel index ``(x, y, slice)``: :attr:`affine` when the scan has
        one, else built from :meth:`voxel_mm` and ``attrs["orientation"]`` (axis codes, default
        the simulated phantoms' ``LPS``: x → patient's left, y → posterior, slice → superior),
        centred on the field of view."""
        if self.affine is not None:
            return np.asarray(self.affine, dtype=np.float64)
        s, y, x = self.shape
        codes = tuple(self.attrs.get("orientation", SIMULATED_AXCODES))
        return affine_from_axcodes(self.voxel_mm(), (x, y, s), codes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, y, x)``."""
        s = self.series.shape
        return (s[0], s[2], s[3])

    def t1h2o_mask(self, source: str = "reference") -> np.ndarray:
        """Foreground ∧ FF < 0.65, with FF from the reference maps (or the ground truth when there
        is no reference, or when ``source="maps"``)."""
        maps = self.reference if (source == "reference" and "ff" in self.reference) else self.maps
        if "ff" not in maps:
            return self.foreground.copy()
        return self.foreground & (maps["ff"] < T1H2O_FF_LIMIT)


def save_scan(path: str | os.PathLike[str], scan: Scan, *, storage: str = "complex64") -> Path:
    """Write a scan file atomically. ``storage="float16"`` halves the series' size (real and
    imaginary parts as float16, relative error ≈ 5e-4, after scaling to the series' maximum)."""
    path = Path(path)
    _validate_scan(scan, str(path))
    if storage not in ("complex64", "float16"):
        raise MrfreconError(f"storage: expected 'complex64' or 'float16', got {storage!r}")
    s, t, y, x = scan.series.shape
    with atomic_h5(path) as f:
        f.attrs["format"] = SCAN_FORMAT
        f.attrs["mrfrecon_version"] = __version__
        f.attrs["sequence_json"] = scan.sequence.to_json()
        f.attrs["sequence_digest"] = scan.sequence.digest()
        f.attrs["attrs_json"] = json.dumps(scan.attrs)
        chunks = (1, min(t, 25), y, x)
        if storage == "float16":
            scale = float(np.abs(scan.series).max()) or 1.0
            parts = np.stack([scan.series.real, scan.series.imag], -1) / scale
            ds = f.create_dataset("series", data=parts.astype(np.float16), chunks=(*chunks, 2))
            ds.attrs["scale"] = scale
        else:
            ds = f.create_dataset("series", data=scan.series.astype(np.complex64), chunks=chunks)
        ds.attrs["storage"] = storage
        ds.attrs["axes"] = "slice, frame, y, x"
        f.create_dataset("masks/foreground", data=scan.foreground.astype(np.uint8), compression="gzip")
        for group, maps in (("maps", scan.maps), ("reference", scan.reference)):
            for k, v in maps.items():
                d = f.create_dataset(f"{group}/{k}", data=np.asarray(v, np.float32), compression="gzip", shuffle=True)
                d.attrs["unit"] = MAP_UNITS.get(k, "")
        if scan.labels is not None:
            d = f.create_dataset("labels", data=scan.labels.astype(np.int16), compression="gzip")
            d.attrs["names_json"] = json.dumps({str(k): v for k, v in scan.label_names.items()})
        # every scan file states its geometry, the simulated ones included
        aff = scan.affine_ras()
        d = f.create_dataset("geometry/affine", data=aff)
        d.attrs["space"] = "RAS+ mm of the voxel index (x, y, slice)"
        d.attrs["axcodes"] = "".join(affine_axcodes(aff))
    return path


def _json_attr(raw: Any, path: Path, key: str, kind: type) -> Any:
    """A JSON-valued HDF5 attribute, parsed; malformed JSON or another type is an error naming ``key``."""
    try:
        v = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise MrfreconError(f"{path}: {key}: not valid JSON") from None
    if not isinstance(v, kind):
        raise MrfreconError(f"{path}: {key}: expected a JSON {kind.__name__}, found {type(v).__name__}")
    return v


def _validate_scan(scan: Scan, where_: str) -> None:
    ser = scan.series
    if ser.ndim != 4 or not np.iscomplexobj(ser):
        raise MrfreconError(f"{where_}: series: expected complex (slices, frames, y, x), got {ser.dtype} {ser.shape}")
    if ser.size and not np.any(ser.imag):
        raise MrfreconError(f"{where_}: series: magnitude-only (no imaginary part anywhere): the dictionary's fingerprints "
                            "are complex and their phase carries the off-resonance and the water–fat shift; give the "
                            "complex series (or magnitude and phase)")
    if ser.shape[1] != scan.sequence.frames:
        raise MrfreconError(f"{where_}: series: {ser.shape[1]} frames, but the sequence has {scan.sequence.frames}")
    shape = scan.shape
    if scan.foreground.shape != shape:
        raise MrfreconError(f"{where_}: masks/foreground: expected shape {shape}, found {scan.foreground.shape}")
    for group, maps in (("maps", scan.maps), ("reference", scan.reference)):
        for k, v in maps.items():
            if np.shape(v) != shape:
                raise MrfreconError(f"{where_}: {group}/{k}: expected shape {shape}, found {np.shape(v)}")
            if not np.isfinite(v).all():
                raise MrfreconError(f"{where_}: {group}/{k}: contains NaN or infinite values")
    if scan.labels is not None and scan.labels.shape != shape:
        raise MrfreconError(f"{where_}: labels: expected shape {shape}, found {scan.labels.shape}")
    if scan.affine is not None:
        check_affine(scan.affine, where_)


def load_scan(path: str | os.PathLike[str], *, series: bool = True) -> Scan:
    """Read and validate a scan file; every problem is reported with the file and dataset name.

    ``series=False`` skips the (large) image series and returns an empty ``(slices, 0, y, x)`` one.
    """
    path = Path(path)
    with open_h5(path, "scan") as f:
        if f.attrs.get("format") != SCAN_FORMAT:
            raise MrfreconError(f"{path}: format: expected {SCAN_FORMAT!r}, found {f.attrs.get('format')!r} (not an mrfrecon scan)")
        try:
            seq = Sequence.from_json(str(f.attrs["sequence_json"]), f"{path}: sequence_json")
            attrs = _json_attr(f.attrs["attrs_json"], path, "attrs_json", dict)
        except KeyError as e:
            raise MrfreconError(f"{path}: attribute {e.args[0]} missing") from None
        if "series" not in f:
            raise MrfreconError(f"{path}: series: dataset missing")
        ds = f["series"]
        storage = ds.attrs.get("storage", "complex64")
        expect_ndim = 5 if storage == "float16" else 4
        if ds.ndim != expect_ndim or (storage == "float16" and ds.shape[-1] != 2):
            raise MrfreconError(f"{path}: series: expected (slices, frames, y, x) stored as {storage}, found shape {ds.shape}")
        if storage == "float16" and ds.dtype != np.float16 or storage == "complex64" and ds.dtype.kind != "c":
            raise MrfreconError(f"{path}: series: expected dtype {storage}, found {ds.dtype}")
        s, t, y, x = ds.shape[:4]
        if series:
            raw = read_dataset(f, "series")
            if storage == "float16":
                data = (raw[..., 0].astype(np.float32) + 1j * raw[..., 1].astype(np.float32)) * float(ds.attrs["scale"])
                data = data.astype(np.complex64)
            else:
                data = raw.astype(np.complex64, copy=False)
            if not np.isfinite(data).all():
                bad = np.argwhere(~np.isfinite(data))[0]
                raise MrfreconError(f"{path}: series: contains NaN or infinite values (first at index {tuple(int(i) for i in bad)})")
        else:
            data = np.zeros((s, 0, y, x), np.complex64)
        fg = read_dataset(f, "masks/foreground", ndim=3, dtype_kind="biu").astype(bool)
        groups: dict[str, dict[str, np.ndarray]] = {"maps": {}, "reference": {}}
        for g in groups:
            if g in f:
                for k in f[g]:
                    groups[g][k] = read_dataset(f, f"{g}/{k}", ndim=3, dtype_kind="f").astype(np.float32)
        affine = None
        if "geometry/affine" in f:
            affine = check_affine(read_dataset(f, "geometry/affine", ndim=2, dtype_kind="f"), str(path))
        labels, names = None, {}
        if "labels" in f:
            labels = read_dataset(f, "labels", ndim=3, dtype_kind="iu").astype(np.int16)
            try:
                names = {int(k): str(v) for k, v in _json_attr(f["labels"].attrs.get("names_json", "{}"), path,
                                                                "labels/names_json", dict).items()}
            except ValueError:
                raise MrfreconError(f"{path}: labels/names_json: expected an object of integer labels to names") from None
    if t != seq.frames:
        raise MrfreconError(f"{path}: series: {t} frames, but its sequence has {seq.frames}")
    if fg.shape != (s, y, x):
        raise MrfreconError(f"{path}: masks/foreground: expected shape {(s, y, x)}, found {fg.shape}")
    if not fg.any():
        raise MrfreconError(f"{path}: masks/foreground: no voxel in the foreground (nothing to match, train on or predict)")
    for g, maps in groups.items():  # stored maps in their physical ranges (mrfrecon.limits)
        for k, v in maps.items():
            if v.shape != (s, y, x):
                raise MrfreconError(f"{path}: {g}/{k}: expected shape {(s, y, x)}, found {v.shape}")
        check_maps(maps, f"{path}: {g}", foreground=fg)
    scan = Scan(series=data, foreground=fg, sequence=seq, maps=groups["maps"], reference=groups["reference"],
                labels=labels, label_names=names, attrs=attrs, affine=affine)
    if series:
        _validate_scan(scan, str(path))
    else:
        for grp, maps in (("maps", scan.maps), ("reference", scan.reference)):
            for k, v in maps.items():
                if v.shape != (s, y, x) or not np.isfinite(v).all():
                    raise MrfreconError(f"{path}: {grp}/{k}: expected finite values of shape {(s, y, x)}")
    return scan
