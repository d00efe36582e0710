"""Validate any mrfrecon file and report every problem found (``mrfrecon check PATH…``).

Kinds recognised by content: scan, dictionary and maps HDF5 files, checkpoints (``.pt``), cohort
folders (``cohort.json`` with every scan it lists), sequence JSON, grid TOML/JSON, NIfTI maps (BIDS
or plain names) with their JSON sidecars, a BIDS ``dataset_description.json``, and folders holding
such files. Each HDF5 dataset is read on its own first, so that every damaged one
(Fletcher-32 checksum mismatch) is reported, not only the first; then the file's own loader checks
its structure, values and physical ranges.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import MrfreconError

__all__ = ["check_path"]

_KNOWN_SUFFIXES = (".h5", ".hdf5", ".pt", ".json", ".toml", ".nii", ".nii.gz")


def _datasets_problems(path: Path) -> list[str]:
    """Every dataset of an HDF5 file that cannot be read (checksum or compression failure)."""
    import h5py

    from .io.h5 import open_h5, read_dataset

    problems: list[str] = []
    with open_h5(path, "HDF5") as f:
        names: list[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in names:
            try:
                read_dataset(f, name)
            except MrfreconError as e:
                problems.append(str(e))
    return problems


def _check_h5(path: Path) -> tuple[str, list[str]]:
    import h5py

    from .io.h5 import open_h5

    with open_h5(path, "HDF5") as f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        has_maps = "maps" in f and isinstance(f["maps"], h5py.Group)
    problems = _datasets_problems(path)
    kind = {"mrfrecon.scan/1": "scan", "mrfrecon.dictionary/1": "dictionary"}.get(str(fmt), "maps" if has_maps else "HDF5")
    try:
        if kind == "scan":
            from .io.scan import load_scan

            load_scan(path)
        elif kind == "dictionary":
            from .dictionary import Dictionary

            Dictionary.load(path)
        elif kind == "maps":
            problems += [q for q in _maps_problems(path) if q not in problems]
        else:
            problems.append(f"{path}: not an mrfrecon file (no format attribute, no maps group)")
    except MrfreconError as e:
        if str(e) not in problems:
            problems.append(str(e))
    return kind, problems


def _read(f, name: str) -> np.ndarray | None:
    """Dataset ``name`` of ``f``, or None where it is missing, not a dataset or unreadable (an
    unreadable dataset is reported by :func:`_datasets_problems`)."""
    import h5py

    if name not in f or not isinstance(f[name], h5py.Dataset):
        return None
    try:
        return np.asarray(f[name][()])
    except OSError:
        return None


def _maps_problems(path: Path) -> list[str]:
    """The maps of a ``*_maps.h5`` file (``match``, ``predict``) held to their physical ranges on the
    voxels they were made for: ``masks/foreground`` and, where matching wrote it, ``maps/valid``
    (a fingerprint that could not be matched); elsewhere the maps are 0, as
    :func:`mrfrecon.limits.check_maps` allows. A file with neither is checked everywhere. The SDs
    ``sd/<map>`` must be finite, ≥ 0 and of their map's shape; ``sd/noise`` finite and ≥ 0."""
    import h5py

    from .io.h5 import open_h5
    from .limits import check_map, check_maps

    problems: list[str] = []
    with open_h5(path, "maps") as f:
        mask = None
        for name in ("masks/foreground", "maps/valid"):
            m = _read(f, name)
            if m is None:
                continue
            if mask is not None and m.shape != mask.shape:
                problems.append(f"{path}: {name}: shape {m.shape} differs from masks/foreground's {mask.shape}")
                continue
            mask = m > 0 if mask is None else mask & (m > 0)
        for k in f["maps"]:
            v = _read(f, f"maps/{k}")
            if v is None:
                continue
            if mask is not None and v.shape != mask.shape:
                problems.append(f"{path}: maps/{k}: shape {v.shape} differs from the foreground's {mask.shape}")
                continue
            try:
                check_maps({k: v}, f"{path}: maps", mask)
            except MrfreconError as e:
                problems.append(str(e))
        if not isinstance(f.get("sd"), h5py.Group):
            return problems
        for k in f["sd"]:
            v, where = _read(f, f"sd/{k}"), f"{path}: sd/{k}"
            if v is None:
                continue
            try:
                if v.dtype.kind not in "fiu":
                    raise MrfreconError(f"{where}: expected real numbers, found dtype {v.dtype}")
                check_map("sd", v, where)  # finite (an SD has no map's range)
                if (v < 0).any():
                    raise MrfreconError(f"{where}: negative standard deviation {float(v[v < 0].flat[0]):g}")
                ref = f["maps"].get(k)
                if k != "noise" and not isinstance(ref, h5py.Dataset):
                    raise MrfreconError(f"{where}: no map maps/{k} beside it")
                if k != "noise" and v.shape != ref.shape:
                    raise MrfreconError(f"{where}: shape {v.shape} differs from maps/{k}'s {ref.shape}")
            except MrfreconError as e:
                problems.append(str(e))
    return problems


def _check_cohort(root: Path) -> list[str]:
    from .io.cohort import CohortIndex
    from .io.scan import load_scan

    problems: list[str] = []
    try:
        index = CohortIndex.load(root)
        files = [index.path(s) for s in index.subjects]
    except MrfreconError as e:
        problems.append(str(e))
        files = sorted(root.glob("sub-*.h5"))
    for p in files:
        if not p.is_file():
            continue
        problems += [q for q in _datasets_problems(p)]
        try:
            load_scan(p)
        except MrfreconError as e:
            if str(e) not in problems:
                problems.append(str(e))
    if (root / "dictionary.h5").is_file():
        problems += _check_h5(root / "dictionary.h5")[1]
    return problems


def check_path(path: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """Validate one path. Returns ``(kind, problems)``: what the file is, and one message per
    problem found (empty when the file is sound)."""
    path = Path(path)
    name = path.name.lower()
    try:
        if not path.exists():
            return "missing", [f"{path}: no such file or folder"]
        if path.is_dir():
            if (path / "cohort.json").exists():
                return "cohort", _check_cohort(path)
            problems: list[str] = []
            # the whole tree: a BIDS derivative dataset keeps its maps in sub-*/[ses-*/]anat|fmap/
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and name_kind(p) is not None
                     and not any(part.startswith(".") for part in p.relative_to(path).parts)]
            if not found:
                return "folder", [f"{path}: holds no mrfrecon file (scans, dictionaries, checkpoints, maps, sequences)"]
            for p in found:
                problems += check_path(p)[1]
            return "folder", problems
        if name.endswith((".h5", ".hdf5")):
            return _check_h5(path)
        if name.endswith(".pt"):
            from .checkpoint import load_checkpoint

            load_checkpoint(path)
            return "checkpoint", []
        if name == "cohort.json":
            return "cohort", _check_cohort(path.parent)
        if name.endswith(".toml"):
            from .dictionary import Grid

            Grid.load(path)
            return "grid", []
        if name == "dataset_description.json":
            return "BIDS dataset description", _check_description(path)
        if name.endswith(".json") and any(path.with_name(path.name[:-5] + e).is_file() for e in (".nii.gz", ".nii")):
            return "sidecar", _check_sidecar(path)  # a NIfTI's JSON sidecar (BIDS, dcm2niix), not a sequence
        if name.endswith(".json"):
            return _check_json(path)
        if name.endswith((".nii", ".nii.gz")):
            return "nifti", _check_nifti(path)
        return "unknown", [f"{path}: not a kind of file mrfrecon makes or reads ({', '.join(_KNOWN_SUFFIXES)})"]
    except MrfreconError as e:
        return "?", [str(e)]


def name_kind(p: Path) -> str | None:
    """The suffix of a file mrfrecon reads, or None."""
    n = p.name.lower()
    return next((s for s in _KNOWN_SUFFIXES if n.endswith(s)), None) if not n.startswith(".") else None


def _check_json(path: Path) -> tuple[str, list[str]]:
    from .sequence import Sequence

    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and set(doc) <= {"t1h2o_ms", "t1fat_ms", "b1", "df_hz"} and doc:
        from .dictionary import Grid

        Grid.load(path)
        return "grid", []
    if isinstance(doc, dict) and "schema" not in doc and "flip_angle_deg" not in doc and "format" in doc:
        return "json", [f"{path}: format {doc.get('format')!r} is not one mrfrecon checks"]
    Sequence.load(path)
    return "sequence", []


def _json_object(path: Path) -> tuple[dict | None, list[str]]:
    """The file's JSON object, or None and the problem (strict JSON: NaN and Infinity refused)."""
    def no_constant(c: str) -> None:
        raise ValueError(f"{c} is not JSON")

    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        return None, [f"{path}: not valid JSON ({e})"]
    if not isinstance(doc, dict):
        return None, [f"{path}: expected a JSON object, got {type(doc).__name__}"]
    return doc, []


def _check_sidecar(path: Path) -> list[str]:
    """A NIfTI's sidecar: a JSON object; ``Units`` a string, ``Sources``/``RawSources`` lists of
    strings, as the BIDS specification ("Common data types and metadata") defines them."""
    doc, problems = _json_object(path)
    if doc is None:
        return problems
    if "Units" in doc and not isinstance(doc["Units"], str):
        problems.append(f"{path}: Units: expected a string, got {doc['Units']!r}")
    for key in ("Sources", "RawSources"):
        if key in doc and not (isinstance(doc[key], list) and all(isinstance(x, str) for x in doc[key])):
            problems.append(f"{path}: {key}: expected a list of strings (BIDS URIs)")
    return problems


def _check_description(path: Path) -> list[str]:
    """A BIDS ``dataset_description.json``: ``Name`` and ``BIDSVersion`` (required); a derivative
    dataset's ``GeneratedBy``: a non-empty list of objects, each with a ``Name``."""
    doc, problems = _json_object(path)
    if doc is None:
        return problems
    for key in ("Name", "BIDSVersion"):
        if not isinstance(doc.get(key), str) or not doc.get(key):
            problems.append(f"{path}: {key}: required, a non-empty string")
    if doc.get("DatasetType") == "derivative":
        gen = doc.get("GeneratedBy")
        if not (isinstance(gen, list) and gen and all(isinstance(g, dict) and isinstance(g.get("Name"), str) for g in gen)):
            problems.append(f"{path}: GeneratedBy: a derivative dataset needs a list of objects with a Name")
    return problems


def _map_of(path: Path) -> tuple[str | None, bool, bool]:
    """Which mrfrecon map a NIfTI holds, whether it is a standard deviation, and whether the name
    is BIDS's: ``sub-01_desc-water_T1map`` → t1h2o, ``…_desc-waterSD_T1map`` → its SD, a plain
    ``scan_t1h2o`` → t1h2o (mrfrecon's units); None when the name says no map."""
    from .io.bids import OUTPUTS, parse_bids_name

    parsed = parse_bids_name(path.name)
    if parsed is not None and parsed.suffix:
        desc = parsed.entities.get("desc")
        sd = desc is not None and desc.endswith("SD")
        base = (desc[:-2] or None) if sd and desc else desc
        for key, kind in OUTPUTS.items():
            if kind.suffix == parsed.suffix and kind.desc == base:
                return key, sd, True
        return None, False, True
    stem = path.name.split(".")[0].rsplit("_", 1)[-1]
    return stem, False, False


def _check_nifti(path: Path) -> list[str]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        vol = np.asarray(img.dataobj, dtype=np.float64)
    except Exception as e:  # nibabel raises several types for bad files
        return [f"{path}: not a readable NIfTI image ({type(e).__name__})"]
    problems = []
    if not np.isfinite(vol).all():
        problems.append(f"{path}: contains NaN or infinite values")
    if not np.isfinite(img.affine).all() or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        problems.append(f"{path}: affine is not a valid voxel-to-world transform")
    from .io.nifti import BIDS_MAPS
    from .limits import MAP_LIMITS, check_map

    key, sd, bids = _map_of(path)
    if problems or key is None:
        return problems
    if bids and key in BIDS_MAPS:  # BIDS units (T1map in s, FFmap and TB1map in %): from the sidecar, else BIDS's own
        _, unit, scale, _ = BIDS_MAPS[key]
        side = path.with_name(path.name.split(".")[0] + ".json")
        doc = _json_object(side)[0] if side.is_file() else None
        got = doc.get("Units", unit) if doc is not None else unit
        if got != unit:
            return [f"{side}: Units {got!r}: expected {unit!r} for this map (as BIDS and mrfrecon write it)"]
        vol = vol / scale
    if sd:
        if (vol < 0).any():
            problems.append(f"{path}: a standard deviation map with negative values (min {float(vol.min()):g})")
    elif key in MAP_LIMITS:
        try:  # 0 is the background value of the maps with an open lower bound (as match writes them)
            check_map(key, vol, str(path), vol != 0 if key in ("t1h2o", "t1fat", "b1") else None)
        except MrfreconError as e:
            problems.append(str(e))
    return problems
