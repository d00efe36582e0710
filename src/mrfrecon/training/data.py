"""Loading a cohort for training: normalized series, targets, and the map range of the training split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import TARGETS
from ..data import MAP_NAMES, MapNorm, normalize_series
from ..errors import MrfreconError
from ..models import to_channels
from ..io.cohort import CohortIndex
from ..io.scan import Scan, load_scan

__all__ = ["ScanData", "TrainData", "load_training_data"]


@dataclass
class ScanData:
    """One scan ready for the networks.

    ``series``: normalized complex64 (slices, T, y, x), or float16 real channels (slices, 2T,
    y, x) in the :func:`~mrfrecon.models.to_channels` layout; ``foreground``: bool (slices, y, x);
    ``target``: map name → (slices, y, x) float32 in physical units (T1H2O ms, FF, B1 a.u.);
    ``ff``: the target source's FF map (for the T1H2O mask, FF < 0.65), even when FF is not
    among the trained maps; None if the scan has none.
    """

    name: str
    series: np.ndarray
    foreground: np.ndarray
    target: dict[str, np.ndarray]
    ff: np.ndarray | None = None


@dataclass
class TrainData:
    """The training and validation scans, the map normalization fitted on the training split,
    and the sequence they were acquired with."""

    train: list[ScanData]
    val: list[ScanData]
    map_norm: MapNorm
    sequence_json: str
    sequence_digest: str
    frames: int
    train_subjects: list[str]
    val_subjects: list[str]


def _target_maps(scan: Scan, path: Path, target: str, maps: Sequence[str]) -> dict[str, np.ndarray]:
    source = scan.reference if target == "reference" else scan.maps
    missing = [m for m in maps if m not in source]
    if missing:
        if target == "ground-truth" and not scan.maps and (scan.attrs.get("cohort_kind") == "scans" or "import" in scan.attrs):
            raise MrfreconError(f"{path}: target 'ground-truth': an imported real scan has no ground truth (only a "
                                "simulation has one); train with --target reference, its dictionary-matching maps")
        group = "reference (dictionary-matching)" if target == "reference" else "ground-truth"
        other = "ground-truth" if target == "reference" else "reference"
        have = ", ".join(source) or "none"
        raise MrfreconError(f"{path}: target {target!r}: the scan has no {group} map(s) {', '.join(missing)} "
                            f"(it has: {have}); train with --target {other} or add them")
    return {m: np.asarray(source[m], np.float32) for m in maps}


def _load(paths: Sequence[Path], target: str, maps: Sequence[str], half: bool) -> list[ScanData]:
    out = []
    for p in paths:
        scan = load_scan(p)
        tgt = _target_maps(scan, p, target, maps)
        try:
            series, _ = normalize_series(scan.series)
        except MrfreconError as e:
            raise MrfreconError(f"{p}: {e}") from None
        del scan.series
        if half:  # real channels in float16: half the memory, relative error ~5e-4 on unit-variance data
            series = to_channels(series).astype(np.float16)
        source = scan.reference if target == "reference" else scan.maps
        ff = np.asarray(source["ff"], np.float32) if "ff" in source else None
        out.append(ScanData(Path(p).stem, series, scan.foreground.astype(bool), tgt, ff))
    return out


def load_training_data(cohort: str | os.PathLike[str] | CohortIndex, target: str = "reference",
                       maps: Sequence[str] = MAP_NAMES, half_inputs: bool = False) -> TrainData:
    """Load a cohort's training and validation scans, normalize the series and fit the map
    normalization on the training split's foreground. Raises :class:`MrfreconError` for an
    empty split, a missing target, scans of differing sequences, or non-finite data — the
    first two from the scans' headers, before any series is read.

    ``half_inputs``: keep the normalized series as float16 real channels (slices, 2T, y, x)
    instead of complex64 (slices, T, y, x) — half the memory (the paper's 75 training and
    validation scans: ~32 GB instead of ~64 GB).
    """
    if target not in TARGETS:
        raise MrfreconError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    index = cohort if isinstance(cohort, CohortIndex) else CohortIndex.load(cohort)
    if target == "ground-truth" and index.attrs.get("kind") == "scans" and not index.attrs.get("ground_truth"):
        raise MrfreconError(f"{index.root}: target 'ground-truth': a cohort of real scans (made by `mrfrecon cohort "
                            "create`) has no ground truth, only the reference maps of dictionary matching; train with "
                            "--target reference")
    train_paths, val_paths = index.paths("train"), index.paths("val")
    if not train_paths:
        raise MrfreconError(f"{index.root}: the training split is empty")
    if not val_paths:
        raise MrfreconError(f"{index.root}: the validation split is empty (the best model is chosen on it)")
    headers = {p: load_scan(p, series=False) for p in train_paths + val_paths}
    for p, h in headers.items():
        _target_maps(h, p, target, maps)
    digests = {h.sequence.digest() for h in headers.values()}
    if len(digests) != 1:
        raise MrfreconError(f"{index.root}: the scans were acquired with {len(digests)} different sequences "
                            f"(digests {', '.join(sorted(digests))}); a network is trained for one sequence")
    seq = headers[train_paths[0]].sequence
    train_items = _load(train_paths, target, maps, half_inputs)
    val_items = _load(val_paths, target, maps, half_inputs)
    norm = MapNorm.fit([i.target for i in train_items], [i.foreground for i in train_items], names=tuple(maps))
    return TrainData(train_items, val_items, norm, seq.to_json(), seq.digest(), seq.frames,
                     list(index.split["train"]), list(index.split["val"]))
