"""A cohort from a user's own scans: ``mrfrecon cohort create INPUTS… --dictionary D --out DIR``.

The second way to fill a cohort folder (the first is :func:`mrfrecon.cohort.simulate_cohort`):
scans in any format :func:`mrfrecon.io.readers.read_scan` reads (mrfrecon scans, NIfTI and
dcm2niix pairs, DICOM, ISMRMRD raw data, NumPy/MATLAB with ``axes``) become scan files with

- reference maps from two-component dictionary matching, the method of the simulated cohorts'
  references (:func:`mrfrecon.cohort.reference_maps`, ``match``'s defaults);
- the paper's masks: the foreground (a mask given per scan, else the scan's own, else estimated),
  less the voxels matching cannot fit (zero or non-finite fingerprints); T1H2O is scored where the
  reference FF < 0.65 (:func:`mrfrecon.metrics.masks_for`, from the stored reference FF);
- optionally the scan's ROI segmentation (a NIfTI label image on the scan's voxel grid and a label
  table, BIDS ``dseg.tsv``: columns ``index`` and ``name``) as its ``labels``, for R²;
- a ``cohort.json`` with the split, drawn by subject (every scan of a subject lands in one split)
  from fractions and a seed, or read from a table of ``subject`` and ``split``.

Every scan must have the dictionary's sequence (digest and frame count) and one in-plane pixel
size (or the cohort states that it mixes them). Everything the user gives is checked before any
scan is matched; a bad input is one :class:`~mrfrecon.errors.MrfreconError` line naming the file,
the field and what was expected, and no scan file, index or settings file is written.

Resumable as :func:`~mrfrecon.cohort.simulate_cohort` is: one process writes a folder at a time
(:class:`mrfrecon.fs.FolderLock`); every file is written under a temporary name and renamed when
complete (:mod:`mrfrecon.atomic`); imported series wait for their reference maps in a hidden
staging folder, so an interrupted run neither imports nor matches a scan twice. A scan already in
the folder is kept when it was made from the same input files (path, size, modification time),
options, segmentation, mask, dictionary and mrfrecon version; a scan made otherwise is refused
unless ``overwrite``. Changing only the split rewrites only ``cohort.json``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .atomic import atomic_write_text
from .cohort import SETTINGS_NAME, reference_maps
from .dictionary import Dictionary
from .errors import MrfreconError
from .fs import FolderLock, remove_stale_temps
from .io.cohort import INDEX_NAME, SPLITS, CohortIndex
from .io.readers import bids_partner, dcm2niix_partner, detect_kind, drop_partners, read_scan, scan_stem
from .io.scan import MAP_NAMES, T1H2O_FF_LIMIT, Scan, load_scan, save_scan

__all__ = ["COHORT_KIND", "DEFAULT_SPLIT", "PIXEL_RTOL", "PlannedScan", "assign_files", "create_cohort", "parse_split",
           "plan_inputs", "read_label_image", "read_label_table", "read_split_file", "split_sizes"]

#: ``attrs["kind"]`` of the index of a cohort made from real scans (no ground truth).
COHORT_KIND = "scans"
#: The paper's split (55/20/20 of 95 subjects), as fractions of the subjects.
DEFAULT_SPLIT = "55/20/20"
#: Pixel sizes within this relative difference are one size (NIfTI stores affines as float32).
PIXEL_RTOL = 1e-3
#: Segmentation affines may differ from the scan's by this fraction of a voxel (float32 rounding).
GEOMETRY_TOL_VOXELS = 0.01
STAGING = ".mrfrecon-import"
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test",
                  "testing": "test"}
_READ_KEYS = ("axes", "pair", "phase_units", "voxel_mm", "orientation")
#: The reading options each kind of input uses (the others leave its scan unchanged).
_READ_KEYS_OF = {"scan": (), "ismrmrd": (), "dicom": ("phase_units",), "nifti": ("axes", "pair", "phase_units"),
                 "numpy": _READ_KEYS, "matlab": _READ_KEYS}


# ============================================================================ inputs → planned scans
@dataclass
class PlannedScan:
    """One input of the cohort and what goes with it.

    ``id``: the scan's name in the cohort (``<id>.h5``; letters, digits, ``_`` and ``-``);
    ``subject``: the BIDS ``sub-<label>`` of its path, else ``id`` (the split keeps a subject's
    scans together); ``path``: the input as given (a file, or a DICOM folder); ``files``: every
    file it is read from (a pair's other part included); ``segmentation``, ``labels``, ``mask``:
    its ROI label image, label table and foreground mask, if any.
    """

    id: str
    subject: str
    path: Path
    kind: str
    files: list[Path]
    segmentation: Path | None = None
    labels: Path | None = None
    mask: Path | None = None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "scan"


def _subject_of(path: Path) -> str | None:
    """``sub-<label>`` from the file name, else from the nearest of its three folders named so
    (BIDS: ``sub-01/ses-1/anat/``; not further up, where a folder's name says nothing of a scan)."""
    for part in (path.name, *(p.name for p in list(path.resolve().parents)[:3])):
        m = re.search(r"(?:^|_)sub-([A-Za-z0-9]+)(?=_|\.|$)", part)
        if m:
            return f"sub-{m.group(1)}"
    return None


def _input_files(path: Path, kind: str) -> list[Path]:
    """The files an input is read from: a DICOM folder's files, a NIfTI pair's two parts, else itself."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    files = [path]
    if kind == "nifti":
        found = bids_partner(path)
        if found is not None and found[0].exists():
            files.append(found[0])
        elif (pair := dcm2niix_partner(path)) is not None:
            files = [pair[0], pair[1]]
    return files


def plan_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[PlannedScan]:
    """The scans of ``inputs`` with their cohort ids and subjects (nothing is read but names and
    the first bytes that tell a file's kind).

    The other part of a BIDS or dcm2niix pair listed beside its first part is dropped (a shell glob
    names both). Ids are the inputs' stems (:func:`~mrfrecon.io.readers.scan_stem`; a DICOM folder's
    name); stems that collide (dcm2niix's ``MRF.nii.gz`` in one folder per subject) take their
    folders' names in front until they differ. Raises :class:`MrfreconError` for a missing input,
    one given twice, or an unsupported kind.
    """
    if not inputs:
        raise MrfreconError("inputs: no scans given")
    paths = [Path(p) for p in inputs]
    seen: dict[Path, Path] = {}
    for p in paths:
        if not p.exists():
            raise MrfreconError(f"{p}: no such file or folder")
        r = p.resolve()
        if r in seen:
            raise MrfreconError(f"{p}: given twice (also as {seen[r]})")
        seen[r] = p
    paths = drop_partners(paths)
    kinds = [detect_kind(p) for p in paths]
    # a dcm2niix pair is named by its first part, whichever of the two is given
    firsts = [pair[0] if k == "nifti" and (pair := dcm2niix_partner(p)) is not None else p
              for p, k in zip(paths, kinds, strict=True)]
    stems = [_safe(p.name if p.is_dir() else scan_stem(p)) for p in firsts]
    subjects = [_subject_of(p) for p in paths]
    # a subject named only by a folder (dcm2niix's sub-01/MRF.nii.gz) goes into the id, so that the
    # id does not depend on which other inputs are given (a resumed run finds the same names)
    stems = [st if sub is None or sub in st else _safe(f"{sub}_{st}") for st, sub in zip(stems, subjects, strict=True)]
    ids = list(stems)
    for depth in range(1, 64):
        clash = {i for i, s in enumerate(ids) if ids.count(s) > 1}
        if not clash:
            break
        for i in clash:
            parents = [q.name for q in paths[i].resolve().parents][:depth][::-1]
            ids[i] = _safe("_".join([*parents, stems[i]]))
    plans = []
    for p, kind, sid, sub in zip(paths, kinds, ids, subjects, strict=True):
        plans.append(PlannedScan(id=sid, subject=sub or sid, path=p, kind=kind, files=_input_files(p, kind)))
    return plans


def _match_key(key: str, plans: Sequence[PlannedScan]) -> list[PlannedScan]:
    """The planned scans a ``KEY`` of ``KEY=FILE`` names: a scan id, the input as given or its file
    name, or a subject with one scan."""
    hit = [s for s in plans if key in (s.id, str(s.path), s.path.name) or Path(key).resolve() == s.path.resolve()]
    if not hit:
        hit = [s for s in plans if s.subject == key]
        if len(hit) > 1:
            raise MrfreconError(f"{key}: subject {key} has {len(hit)} scans ({', '.join(s.id for s in hit)}); name one")
    return hit


def _find_in_folder(folder: Path, names: Sequence[str]) -> Path | None:
    """The one NIfTI file under ``folder`` named ``<name>.nii[.gz]`` for the first name that has one."""
    for name in names:
        found = sorted({*folder.rglob(f"{name}.nii.gz"), *folder.rglob(f"{name}.nii")})
        if len(found) > 1:
            raise MrfreconError(f"{folder}: {len(found)} files named {name}.nii[.gz] ({', '.join(map(str, found[:3]))}); "
                                "name the one to use with SCAN=FILE")
        if found:
            return found[0]
    return None


def assign_files(specs: Sequence[str], plans: Sequence[PlannedScan], option: str, suffix: str) -> dict[str, Path]:
    """Scan id → file from ``specs``: ``SCAN=FILE`` (SCAN: a scan id, the input as given, its
    file name, or a subject with one scan) or a folder searched for ``<scan id>_<suffix>.nii[.gz]``,
    else ``<subject>_<suffix>.nii[.gz]`` (a subject with one scan). Explicit pairs win over a
    folder. Raises for a key that names no input, a scan named twice, or a missing file."""
    out: dict[str, Path] = {}
    folders = []
    for spec in specs:
        key, sep, value = spec.rpartition("=")
        if not sep:
            folder = Path(spec)
            if not folder.is_dir():
                raise MrfreconError(f"{option} {spec!r}: expected SCAN=FILE or a folder (no such folder)")
            folders.append(folder)
            continue
        f = Path(value)
        if not key or not value:
            raise MrfreconError(f"{option} {spec!r}: expected SCAN=FILE")
        hit = _match_key(key, plans)
        if not hit:
            raise MrfreconError(f"{option} {spec!r}: {key!r} names none of the inputs (scans: "
                                f"{', '.join(s.id for s in plans[:8])}{' …' if len(plans) > 8 else ''})")
        if not f.is_file():
            raise MrfreconError(f"{option} {spec!r}: {f}: no such file")
        for s in hit:
            if s.id in out:
                raise MrfreconError(f"{option}: scan {s.id} is given twice ({out[s.id]} and {f})")
            out[s.id] = f
    if len(folders) > 1:
        raise MrfreconError(f"{option}: one folder at most (got {', '.join(map(str, folders))})")
    for folder in folders:
        for s in plans:
            if s.id in out:
                continue
            alone = sum(t.subject == s.subject for t in plans) == 1
            found = _find_in_folder(folder, [f"{s.id}_{suffix}"] + ([f"{s.subject}_{suffix}"] if alone else []))
            if found is not None:
                out[s.id] = found
    return out


# ============================================================================ ROIs: label images and tables
def read_label_table(path: str | os.PathLike[str]) -> dict[int, str]:
    """A label table: tab-separated, a header with columns ``index`` and ``name`` (BIDS
    ``dseg.tsv``; other columns ignored), one row per label. Index 0 (background) is skipped.

    Returns
    -------
    dict
        label value (1 … 32767) → name.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MrfreconError(f"{p}: not a readable UTF-8 label table ({getattr(e, 'strerror', None) or e})") from None
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise MrfreconError(f"{p}: empty label table (expected a header with columns index and name)")
    head = [c.strip().lower() for c in rows[0]]
    if "index" not in head or "name" not in head:
        raise MrfreconError(f"{p}: line 1: expected tab-separated columns index and name (BIDS dseg.tsv), found {rows[0]!r}")
    i_col, n_col = head.index("index"), head.index("name")
    out: dict[int, str] = {}
    names: dict[str, int] = {}
    for line, r in enumerate(rows[1:], start=2):
        if len(r) <= max(i_col, n_col):
            raise MrfreconError(f"{p}: line {line}: expected {len(head)} tab-separated columns, found {len(r)}")
        raw, name = r[i_col].strip(), r[n_col].strip()
        try:
            idx = int(raw)
        except ValueError:
            raise MrfreconError(f"{p}: line {line}: index {raw!r}: expected an integer label value") from None
        if not 0 <= idx <= 32767:
            raise MrfreconError(f"{p}: line {line}: index {idx}: expected 0 to 32767")
        if not name:
            raise MrfreconError(f"{p}: line {line}: label {idx} has no name")
        if idx == 0:
            continue
        if idx in out:
            raise MrfreconError(f"{p}: line {line}: label {idx} is listed twice")
        if name in names:
            raise MrfreconError(f"{p}: line {line}: name {name!r} is used by labels {names[name]} and {idx}")
        out[idx], names[name] = name, idx
    if not out:
        raise MrfreconError(f"{p}: no label other than 0 (background)")
    return out


def _geometry_mismatch(affine: np.ndarray, scan_affine: np.ndarray) -> str | None:
    """What differs between two voxel → RAS+ affines beyond :data:`GEOMETRY_TOL_VOXELS` of a voxel."""
    a, b = np.asarray(affine, float), np.asarray(scan_affine, float)
    vox = np.linalg.norm(b[:3, :3], axis=0)
    tol = GEOMETRY_TOL_VOXELS * float(vox.min())
    for col, what in ((0, "x axis"), (1, "y axis"), (2, "slice axis"), (3, "origin")):
        d = float(np.abs(a[:3, col] - b[:3, col]).max())
        if d > tol:
            got = ", ".join(f"{v:.4g}" for v in a[:3, col])
            want = ", ".join(f"{v:.4g}" for v in b[:3, col])
            return f"affine {what} ({got}) mm differs from the scan's ({want}) mm by {d:.3g} mm (tolerance {tol:.3g} mm)"
    return None


def read_label_image(path: str | os.PathLike[str], shape: tuple[int, int, int], affine: np.ndarray, scan: str,
                     what: str = "segmentation") -> np.ndarray:
    """A NIfTI label image on a scan's voxel grid, as int16 ``(slices, y, x)``.

    Parameters
    ----------
    path
        NIfTI ``(x, y[, z])`` (a trailing axis of length 1 is dropped) of non-negative integer labels.
    shape
        The scan's ``(slices, y, x)``.
    affine
        The scan's voxel ``(x, y, slice)`` → RAS+ mm affine (4 × 4); the image's (nibabel's: sform,
        else qform) must equal it within :data:`GEOMETRY_TOL_VOXELS` of a voxel.
    scan
        The scan's name, for messages.
    what
        ``"segmentation"`` or ``"mask"``, for messages.

    Raises :class:`MrfreconError` (one line naming the file) for an unreadable file, another
    shape or affine, or values that are not integer labels 0 … 32767.
    """
    import nibabel as nib

    p = Path(path)
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        raise MrfreconError(f"{p}: a {what} must be a NIfTI image (.nii, .nii.gz) on the scan's voxel grid")
    try:
        img = nib.load(str(p))
        vol = np.asarray(img.dataobj)
        aff = np.asarray(img.affine, np.float64)
    except Exception as e:  # nibabel raises several types for bad files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MrfreconError(f"{p}: not a readable NIfTI {what} ({msg})") from None
    while vol.ndim > 3 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    vol = vol[..., None] if vol.ndim == 2 else vol
    s, ny, nx = shape
    if vol.ndim != 3 or vol.shape != (nx, ny, s):
        raise MrfreconError(f"{p}: geometry: shape (x, y, slices) {tuple(vol.shape)} does not match scan {scan}'s "
                            f"{(nx, ny, s)}; the {what} must be on the scan's voxel grid")
    bad = _geometry_mismatch(aff, affine)
    if bad is not None:
        raise MrfreconError(f"{p}: geometry: {bad} for scan {scan}; the {what} must be on the scan's voxel grid")
    if vol.dtype.kind not in "biuf":
        raise MrfreconError(f"{p}: {what} of data type {vol.dtype}: expected integer labels")
    v = vol.astype(np.float64)
    if not np.isfinite(v).all():
        raise MrfreconError(f"{p}: {what} contains NaN or infinite values")
    if what == "mask":  # non-zero is foreground, whatever the values (0/1, 0/255, probabilities)
        return np.ascontiguousarray(np.transpose(v != 0, (2, 1, 0))).astype(np.int16)
    frac = np.abs(v - np.round(v))
    if (frac > 1e-3).any():
        raise MrfreconError(f"{p}: {what} value {float(v[frac > 1e-3][0]):g}: expected integer labels")
    v = np.round(v)
    if v.min() < 0 or v.max() > 32767:
        bad_v = float(v.min() if v.min() < 0 else v.max())
        raise MrfreconError(f"{p}: {what} value {bad_v:g}: expected labels 0 to 32767")
    return np.ascontiguousarray(np.transpose(v, (2, 1, 0))).astype(np.int16)


def _label_table_for(seg: Path, labels: Path | None, folder: Path | None) -> Path:
    """``labels`` if given, else ``<segmentation stem>.tsv`` beside it, else a ``dseg.tsv`` in its
    folder or in the ROI folder (BIDS: a table for every segmentation at the top)."""
    if labels is not None:
        return labels
    stem = seg.name[: -len(".nii.gz")] if seg.name.lower().endswith(".nii.gz") else seg.stem
    cands = [seg.with_name(f"{stem}.tsv"), seg.parent / "dseg.tsv"] + ([folder / "dseg.tsv"] if folder else [])
    for c in cands:
        if c.is_file():
            return c
    raise MrfreconError(f"{seg}: no label table: give --labels TABLE.tsv, or put {stem}.tsv (tab-separated columns "
                        "index and name, BIDS dseg.tsv) beside it")


# ============================================================================ split
def parse_split(text: str) -> tuple[float, float, float]:
    """``"55/20/20"`` → the train/val/test fractions (any three non-negative numbers with a positive
    sum, normalized)."""
    parts = str(text).split("/")
    try:
        v = tuple(float(x) for x in parts)
    except ValueError:
        v = ()
    if len(v) != 3 or not all(math.isfinite(x) and x >= 0 for x in v) or sum(v) <= 0:
        raise MrfreconError(f"--split {text!r}: expected three non-negative numbers train/val/test, e.g. 55/20/20")
    total = sum(v)
    return (v[0] / total, v[1] / total, v[2] / total)


def split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train/val/test sizes of ``n`` subjects: ``fractions`` rounded by largest remainder (ties to
    train, then val), at least one validation and one test subject (when their fraction is not 0)
    once n ≥ 3 — as :func:`mrfrecon.io.cohort.split_counts` does for the paper's split."""
    raw = [f * n for f in fractions]
    counts = [int(math.floor(r + 1e-9)) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in (1, 2):
            if fractions[i] > 0 and counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    return counts[0], counts[1], counts[2]


def read_split_file(path: str | os.PathLike[str], subjects: Sequence[str]) -> dict[str, str]:
    """Subject → split from a table with columns ``subject`` (or BIDS ``participant_id``) and
    ``split`` (``train``, ``val``/``validation`` or ``test``); tab-separated, or comma-separated
    for a ``.csv``. Every subject of ``subjects`` once, and no other."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise MrfreconError(f"{p}: not a readable UTF-8 split file ({getattr(e, 'strerror', None) or e})") from None
    delim = "," if p.suffix.lower() == ".csv" else "\t"
    rows = [(i, r) for i, r in enumerate(csv.reader(text.splitlines(), delimiter=delim), start=1) if any(c.strip() for c in r)]
    if not rows:
        raise MrfreconError(f"{p}: empty split file (expected columns subject and split)")
    head = [c.strip().lower() for c in rows[0][1]]
    s_name = "subject" if "subject" in head else "participant_id" if "participant_id" in head else None
    if s_name is None or "split" not in head:
        sep = "comma" if delim == "," else "tab"
        raise MrfreconError(f"{p}: line {rows[0][0]}: expected {sep}-separated columns subject and split, found {rows[0][1]!r}")
    s_col, t_col = head.index(s_name), head.index("split")
    known = set(subjects)
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    for line, r in rows[1:]:
        if len(r) <= max(s_col, t_col):
            raise MrfreconError(f"{p}: line {line}: expected columns {s_name} and split")
        sub, split = r[s_col].strip(), r[t_col].strip().lower()
        if sub in where:
            raise MrfreconError(f"{p}: line {line}: subject {sub!r} is listed twice (also on line {where[sub]})")
        if sub not in known:
            raise MrfreconError(f"{p}: line {line}: subject {sub!r} is not among the inputs (subjects: "
                                f"{', '.join(sorted(known)[:8])}{' …' if len(known) > 8 else ''})")
        if split not in _SPLIT_ALIASES:
            raise MrfreconError(f"{p}: line {line}: split {r[t_col].strip()!r}: expected train, val or test")
        out[sub], where[sub] = _SPLIT_ALIASES[split], line
    missing = sorted(known - set(out))
    if missing:
        raise MrfreconError(f"{p}: subject(s) {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''} of the inputs "
                            "not listed (every subject needs a split)")
    return out


# ============================================================================ consistency across scans
@dataclass
class _Consistency:
    """The cohort's frame count, sequence and pixel size, checked scan by scan (refused at the first
    scan that differs, with the groups seen so far)."""

    dictionary: Path
    digest: str
    frames: int
    allow_mixed_pixel_size: bool
    pixels: list[tuple[tuple[float, float], list[str]]] = field(default_factory=list)

    def add(self, sid: str, scan: Scan) -> None:
        frames = scan.series.shape[1] or scan.sequence.frames
        if frames != self.frames:
            raise MrfreconError(f"frame count: scan {sid} has {frames} frames, the dictionary {self.dictionary} "
                                f"(and every scan so far) {self.frames}; a cohort has one sequence")
        digest = scan.sequence.digest()
        if digest != self.digest:
            raise MrfreconError(f"sequence: scan {sid} was acquired with sequence {scan.sequence.name!r} (digest {digest}), "
                                f"the dictionary {self.dictionary} (and every scan so far) with digest {self.digest}; "
                                "a cohort has one sequence")
        px = tuple(float(v) for v in scan.voxel_mm()[:2])
        for size, ids in self.pixels:
            if np.allclose(px, size, rtol=PIXEL_RTOL, atol=0):
                ids.append(sid)
                return
        self.pixels.append((px, [sid]))  # type: ignore[arg-type]
        if len(self.pixels) > 1 and not self.allow_mixed_pixel_size:
            groups = "; ".join(f"{_mm(s)} ({_names(ids)})" for s, ids in self.pixels)
            raise MrfreconError(f"pixel size: the scans differ: {groups}; a network learns one pixel size: resample "
                                "the scans, or pass --allow-mixed-pixel-size to state the mix in cohort.json")

    def summary(self) -> dict[str, list[str]]:
        return {_mm(s): ids for s, ids in self.pixels}


def _mm(size: Sequence[float]) -> str:
    return f"{size[0]:.4g} × {size[1]:.4g} mm"


def _names(ids: Sequence[str], k: int = 4) -> str:
    return ", ".join(ids[:k]) + (f" and {len(ids) - k} more" if len(ids) > k else "")


# ============================================================================ resume bookkeeping
def _stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _fingerprint(files: Sequence[Path]) -> dict[str, Any]:
    """Input files by path, size and modification time (a folder's as one digest)."""
    if len(files) <= 4:
        return {"files": [_stat(f) for f in files]}
    h = hashlib.sha256()
    for f in files:
        h.update(json.dumps(_stat(f), sort_keys=True).encode())
    return {"files": len(files), "first": str(files[0].resolve()), "digest": h.hexdigest()}


def _scan_settings(plan: PlannedScan, read: Mapping[str, Any], raw: Mapping[str, Any], dict_path: Path,
                   digest: str) -> dict[str, Any]:
    """What a scan file is made from; a scan already in the folder is kept only when it is equal."""
    doc = {
        "subject": plan.subject, "kind": plan.kind, "input": _fingerprint(plan.files),
        "read": {k: read.get(k) for k in _READ_KEYS_OF.get(plan.kind, _READ_KEYS)},
        "raw": dict(raw) if plan.kind == "ismrmrd" else {},
        "mask": _stat(plan.mask) if plan.mask else None,
        "rois": {"segmentation": _stat(plan.segmentation), "labels": _stat(plan.labels)} if plan.segmentation else None,
        "dictionary": {**_stat(dict_path), "sequence_digest": digest},
        "reference": {"method": "fast", "ff_model": "common-phase"},
        "mrfrecon_version": __version__,
    }
    return json.loads(json.dumps(doc))  # tuples → lists: compares equal to what a file stores


def _differences(got: Mapping[str, Any] | None, want: Mapping[str, Any]) -> list[str]:
    if not isinstance(got, Mapping):
        return ["not made by `mrfrecon cohort create`"]
    names = {"input": "input files", "read": "read options", "raw": "raw-data options", "rois": "segmentation",
             "dictionary": "dictionary", "mrfrecon_version": "mrfrecon version"}
    return [names.get(k, k) for k in want if got.get(k) != want[k]]


def _header(path: Path) -> Scan | None:
    """A complete scan file's header (no series), or None."""
    try:
        return load_scan(path, series=False)
    except MrfreconError:
        return None


def _read_settings(root: Path) -> dict[str, Any] | None:
    p = root / SETTINGS_NAME
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text())
        if not isinstance(doc, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError, OSError):
        raise MrfreconError(f"{p}: unreadable; pass --overwrite to replace it") from None
    return doc


def _check_folder(root: Path, plans: Sequence[PlannedScan], overwrite: bool, log: Callable[[str], None]) -> None:
    """Refuse a folder that holds another kind of cohort, or scans of inputs not given now."""
    doc = _read_settings(root)
    if doc is None:
        if (root / INDEX_NAME).exists() and not overwrite:
            raise MrfreconError(f"{root}: holds a cohort.json not made by `mrfrecon cohort create`; pass --overwrite "
                                "to replace it, or choose another --out")
        return
    if doc.get("kind") != COHORT_KIND:
        if not overwrite:
            raise MrfreconError(f"{root}: holds a simulated cohort (preset {doc.get('preset')!r}); pass --overwrite "
                                "to replace its index, or choose another --out")
        return
    ids = {s.id for s in plans}
    stray = sorted(s for s in (doc.get("scans") or {}) if s not in ids and (root / f"{s}.h5").exists())
    if stray:
        if not overwrite:
            raise MrfreconError(f"{root}: holds scan(s) {_names(stray)} of inputs not given now; pass --overwrite to "
                                "leave them out of the index, or choose another --out")
        log(f"left out of the index: {_names(stray)} (inputs not given now)")


# ============================================================================ the cohort
def _import(plan: PlannedScan, dictionary: Dictionary, read: Mapping[str, Any], raw: Mapping[str, Any]) -> Scan:
    """Read one input with the dictionary's sequence; its mask and ROI labels attached."""
    opts = {k: v for k, v in read.items() if v is not None}
    scan = read_scan(plan.path, sequence=dictionary.sequence, **opts, **(dict(raw) if plan.kind == "ismrmrd" else {}))
    attrs = dict(scan.attrs)
    if plan.mask is not None:
        fg = read_label_image(plan.mask, scan.shape, scan.affine_ras(), plan.id, "mask") != 0
        if not fg.any():
            raise MrfreconError(f"{plan.mask}: the mask is empty (no non-zero voxel)")
        scan.foreground = fg
        attrs["foreground"] = f"from {plan.mask}"
    else:
        attrs.setdefault("foreground", "the scan's own")
    if plan.segmentation is not None:
        assert plan.labels is not None
        names = read_label_table(plan.labels)
        lab = read_label_image(plan.segmentation, scan.shape, scan.affine_ras(), plan.id)
        unknown = sorted(set(np.unique(lab).tolist()) - set(names) - {0})
        if unknown:
            raise MrfreconError(f"{plan.segmentation}: label(s) {', '.join(map(str, unknown[:8]))} not in the label table "
                                f"{plan.labels}")
        scan.labels, scan.label_names = lab, {k: v for k, v in names.items() if k in set(np.unique(lab).tolist())}
        attrs["rois"] = {"segmentation": str(plan.segmentation), "labels": str(plan.labels)}
    elif scan.labels is not None:
        attrs["rois"] = {"segmentation": "the scan's own labels"}
    signal = np.abs(scan.series).sum(axis=1)[scan.foreground]
    if not (signal > 0).any():
        raise MrfreconError(f"{plan.path}: no foreground voxel has a signal to match (the series is 0 there)")
    attrs.update(subject=plan.subject, scan=plan.id, input=str(plan.path))
    scan.attrs = attrs
    return scan


def _with_reference(scan: Scan, dictionary: Dictionary, dict_path: Path, settings: Mapping[str, Any]) -> Scan:
    """The scan with its reference maps; the foreground less the voxels matching cannot fit."""
    ref = reference_maps(scan.series, scan.foreground, dictionary, keys=(*MAP_NAMES, "residual", "valid"))
    valid = ref.pop("valid").astype(bool)
    fg = scan.foreground & valid
    dropped = int(scan.foreground.sum() - fg.sum())
    if not fg.any():
        raise MrfreconError(f"{scan.attrs.get('input')}: no foreground voxel has a signal to match")
    for k, v in ref.items():  # unmatched voxels leave the foreground: background values there
        v[~fg] = 1.0 if k == "residual" else 0.0
    attrs = {**scan.attrs, "cohort_kind": COHORT_KIND, "cohort_scan": dict(settings),
             "reference": {"dictionary": str(dict_path), "sequence_digest": dictionary.sequence.digest(),
                           "method": "fast", "ff_model": "common-phase", "unmatched_voxels": dropped},
             "masks": {"foreground": scan.attrs.get("foreground", "the scan's own")
                       + (f", less {dropped} voxel(s) matching could not fit" if dropped else ""),
                       "t1h2o": f"foreground ∧ reference FF < {T1H2O_FF_LIMIT} (mrfrecon.metrics.masks_for)"},
             "mrfrecon_version": __version__}
    return replace(scan, foreground=fg, reference=ref, attrs=attrs)


def create_cohort(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    dictionary: str | os.PathLike[str],
    *,
    split: str = DEFAULT_SPLIT,
    seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
    rois: Sequence[str] = (),
    labels: str | os.PathLike[str] | None = None,
    masks: Sequence[str] = (),
    allow_mixed_pixel_size: bool = False,
    overwrite: bool = False,
    read_options: Mapping[str, Any] | None = None,
    raw_options: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = lambda s: None,
    info: dict[str, Any] | None = None,
) -> CohortIndex:
    """Make (or finish making) a cohort of the scans ``inputs`` in the folder ``out``.

    Parameters
    ----------
    inputs
        Scans in any format :func:`~mrfrecon.io.readers.read_scan` reads: files, or DICOM folders.
        Two-file NIfTI series are found by their BIDS or dcm2niix names.
    out
        The cohort folder: ``<scan id>.h5`` per scan, ``cohort.json``, ``cohort-settings.json``.
    dictionary
        Dictionary file (:class:`~mrfrecon.dictionary.Dictionary`): the reference maps, and the
        sequence every input is read with and must have.
    split, seed
        Train/val/test fractions of the subjects (``"55/20/20"``), drawn with ``seed``.
    split_file
        A table of ``subject`` and ``split`` instead (:func:`read_split_file`).
    rois
        ``SCAN=SEGMENTATION`` pairs and/or one folder of ``<scan id>_dseg.nii[.gz]`` or
        ``<subject>_dseg.nii[.gz]`` files (:func:`assign_files`): NIfTI label images on the scans'
        voxel grids (:func:`read_label_image`).
    labels
        The label table of every segmentation (:func:`read_label_table`); default: the
        segmentation's own ``<stem>.tsv``, else a ``dseg.tsv`` beside it or in the ROI folder.
    masks
        ``SCAN=MASK`` pairs and/or a folder of ``<scan id>_mask.nii[.gz]`` files: foreground masks
        (NIfTI, non-zero is foreground) in place of the scans' own or estimated ones.
    allow_mixed_pixel_size
        Accept in-plane pixel sizes that differ (stated in ``cohort.json``) instead of refusing.
    overwrite
        Replace scans made with other settings, and a folder's index of another kind.
    read_options
        ``axes``, ``pair``, ``phase_units``, ``voxel_mm`` (x, y, slice in mm), ``orientation``
        for every input (:func:`~mrfrecon.io.readers.read_scan`).
    raw_options
        For ISMRMRD inputs: ``window``, ``recon``, ``tv_weight``, ``repetition``, ``coil_compression``.
    progress, log
        Called with the number of scans done, and with lines to show.
    info
        If given, filled with ``seconds``: scan id → seconds of ``import`` (reading and checks),
        ``stage`` (writing the imported scan), ``load`` (reading it back), ``match`` (the
        reference maps) and ``write`` (the scan file), for the scans made by this call; and
        ``kept``: the scans already complete.

    Returns
    -------
    CohortIndex
        The index written to ``out/cohort.json``; ``attrs["kind"]`` is ``"scans"``.
    """
    read = {k: (read_options or {}).get(k) for k in _READ_KEYS}
    read["phase_units"] = read["phase_units"] or "auto"
    if read["voxel_mm"] is not None:
        read["voxel_mm"] = [float(v) for v in read["voxel_mm"]]
    raw = {k: v for k, v in (raw_options or {}).items() if v is not None}
    if split_file is not None and split != DEFAULT_SPLIT:
        raise MrfreconError("--split and --split-file: give one of them")
    fractions = parse_split(split)
    if not 0 <= int(seed) < 2**63:
        raise MrfreconError(f"--seed: expected an integer in [0, 2^63), got {seed}")
    # ---- everything that can be checked without reading a series, before the folder is touched
    dict_path = Path(dictionary)
    d = Dictionary.load(dict_path)
    digest = d.sequence.digest()
    plans = plan_inputs(inputs)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise MrfreconError(f"--out: {root} is a file; a cohort is a folder")
    for s in plans:
        if any(f.resolve().parent == root.resolve() and f.name == f"{s.id}.h5" for f in s.files):
            raise MrfreconError(f"{s.path}: lies in --out under the name the cohort gives scan {s.id}; choose another --out")
    subjects = sorted({s.subject for s in plans})
    assigned_split = read_split_file(split_file, subjects) if split_file is not None else None
    seg_of = assign_files(rois, plans, "--rois", "dseg")
    if labels is not None and not seg_of:
        raise MrfreconError("--labels: no segmentation to label (give --rois)")
    if labels is not None:
        read_label_table(labels)
    roi_folder = next((Path(r) for r in rois if "=" not in r), None)
    mask_of = assign_files(masks, plans, "--mask", "mask")
    for s in plans:
        s.segmentation, s.mask = seg_of.get(s.id), mask_of.get(s.id)
        if s.segmentation is not None:
            s.labels = _label_table_for(s.segmentation, Path(labels) if labels else None, roi_folder)
            read_label_table(s.labels)
    notes: list[str] = []  # shown once every check has passed: a refusal stays one line
    if rois and roi_folder is not None:
        without = [s.id for s in plans if s.segmentation is None]
        if without:
            notes.append(f"no segmentation for {_names(without)} (no R² ROIs from them)")
    settings = {s.id: _scan_settings(s, read, raw, dict_path, digest) for s in plans}
    staging = root / STAGING
    with FolderLock(root, "cohort"):
        made_staging = not staging.exists()
        staged_now: list[Path] = []
        try:
            removed = remove_stale_temps(root) + remove_stale_temps(staging)
            if removed:
                log(f"removed {len(removed)} temporary file(s) left by an interrupted run")
            _check_folder(root, plans, overwrite, log)
            # ---- phase 1: every scan imported (or found) and checked before any is matched
            check = _Consistency(dict_path, digest, d.sequence.frames, allow_mixed_pixel_size)
            todo: list[PlannedScan] = []
            seconds: dict[str, dict[str, float]] = {}
            kept = []
            for s in plans:
                final = root / f"{s.id}.h5"
                if final.exists():
                    head = _header(final)
                    diffs = ["incomplete or unreadable"] if head is None else \
                        _differences(head.attrs.get("cohort_scan"), settings[s.id])
                    if head is not None and not diffs:
                        check.add(s.id, head)
                        kept.append(s.id)
                        continue
                    if not overwrite:
                        raise MrfreconError(f"{final}: made with other settings ({', '.join(diffs)}); pass --overwrite "
                                            "to replace it, or choose another --out")
                staged_path = staging / f"{s.id}.h5"
                staged = _header(staged_path) if staged_path.exists() else None
                if staged is None or staged.attrs.get("cohort_scan") != settings[s.id]:
                    t0 = time.perf_counter()
                    scan = _import(s, d, read, raw)
                    t1 = time.perf_counter()
                    check.add(s.id, scan)
                    scan.attrs["cohort_scan"] = settings[s.id]
                    save_scan(staged_path, scan)
                    staged_now.append(staged_path)
                    seconds[s.id] = {"import": t1 - t0, "stage": time.perf_counter() - t1}
                    notes.append(f"imported {s.path} as {s.id} ({s.kind}, {seconds[s.id]['import']:.1f} s)")
                else:
                    check.add(s.id, staged)
                todo.append(s)
        except MrfreconError:
            # nothing stays behind a refusal; an interruption keeps the finished imports for a rerun
            for p in staged_now:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            if made_staging:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        for line in notes:
            log(line)
        doc = {"kind": COHORT_KIND, "dictionary": str(dict_path), "sequence_digest": digest, "scans": settings,
               "mrfrecon_version": __version__}
        atomic_write_text(root / SETTINGS_NAME, json.dumps(doc, indent=1))
        if kept:
            log(f"{len(kept)} of {len(plans)} scans already complete in {root}")
        done = len(kept)
        if progress:
            progress(done)
        # ---- phase 2: reference maps, one scan at a time
        for s in todo:
            staged_path = staging / f"{s.id}.h5"
            t0 = time.perf_counter()
            scan = load_scan(staged_path)
            t1 = time.perf_counter()
            full = _with_reference(scan, d, dict_path, settings[s.id])
            t2 = time.perf_counter()
            save_scan(root / f"{s.id}.h5", full)
            staged_path.unlink()
            t3 = time.perf_counter()
            seconds.setdefault(s.id, {}).update(load=t1 - t0, match=t2 - t1, write=t3 - t2)
            log(f"{s.id}: reference maps of {int(full.foreground.sum()):,} foreground voxels in {t2 - t1:.1f} s")
            done += 1
            if progress:
                progress(done)
        with contextlib.suppress(OSError):
            staging.rmdir()
        index = _write_index(root, plans, assigned_split, fractions, int(seed), split_file, split, check, d, dict_path)
    if info is not None:
        info.update(seconds=seconds, kept=kept)
    return index


def _write_index(root: Path, plans: Sequence[PlannedScan], assigned: Mapping[str, str] | None,
                 fractions: tuple[float, float, float], seed: int, split_file: Any, split: str, check: _Consistency,
                 d: Dictionary, dict_path: Path) -> CohortIndex:
    subjects = sorted({s.subject for s in plans})
    if assigned is None:
        order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
        n_tr, n_va, _ = split_sizes(len(subjects), fractions)
        assigned = {sub: "train" if i < n_tr else "val" if i < n_tr + n_va else "test" for i, sub in enumerate(order)}
    entries: dict[str, dict[str, Any]] = {}
    all_truth = True
    for s in plans:
        h = load_scan(root / f"{s.id}.h5", series=False)
        all_truth &= all(m in h.maps for m in MAP_NAMES)
        entries[s.id] = {"file": f"{s.id}.h5", "subject": s.subject, "input": str(s.path), "kind": s.kind,
                         "pixel_mm": [round(v, 6) for v in h.voxel_mm()], "slices": h.shape[0],
                         "foreground_voxels": int(h.foreground.sum()),
                         "t1h2o_voxels": int((h.foreground & (h.reference["ff"] < T1H2O_FF_LIMIT)).sum()),
                         "rois": len(h.label_names) if h.labels is not None else 0}
    split_ids = {k: sorted(s.id for s in plans if assigned[s.subject] == k) for k in SPLITS}
    attrs = {"kind": COHORT_KIND, "ground_truth": bool(all_truth), "dictionary": str(dict_path),
             "sequence": d.sequence.name, "sequence_digest": d.sequence.digest(), "frames": d.sequence.frames,
             "reference": True, "split": {"file": str(split_file)} if split_file is not None else
             {"fractions": split, "seed": seed, "by": "subject"},
             "pixel_mm": check.summary(), "mixed_pixel_size": len(check.pixels) > 1,
             "allow_mixed_pixel_size": check.allow_mixed_pixel_size}
    if split_file is None:
        attrs["seed"] = seed
    index = CohortIndex(root, entries, split_ids, attrs=attrs)
    index.save()
    return index
