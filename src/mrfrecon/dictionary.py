"""MRF dictionaries: a parameter grid, water and fat atoms, a temporal SVD basis, HDF5 files.

Water and fat are kept as two separate dictionaries over (B1, Δf, T1) — no fat-fraction grid —
because the voxel signal is linear in the two component amplitudes (Marty & Carlier, MRM 2020):
matching solves for those amplitudes instead (:mod:`mrfrecon.matching`).

The temporal basis is the leading right singular vectors of the (normalized) atoms, the
compression of McGivney et al., IEEE TMI 33:2311 (2014); its rank is the smallest that retains
the requested fraction of the atoms' energy.
"""

from __future__ import annotations

import json
import math
import os
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from . import limits as L
from .errors import MrfreconError
from .atomic import atomic_h5
from .fs import remove_stale_temps
from .io.h5 import open_h5, read_dataset
from .physics import DEFAULT_FAT, T2_FAT_MS, T2_WATER_MS, FatModel, component_atoms
from .runtime import default_device
from .sequence import Sequence

FORMAT = "mrfrecon.dictionary/1"
AXES = ("t1h2o_ms", "t1fat_ms", "b1", "df_hz")
#: (low, high, low_open, unit) of every axis: the map ranges of :mod:`mrfrecon.limits`
_AXIS_LIMITS = {"t1h2o_ms": L.MAP_LIMITS["t1h2o"], "t1fat_ms": L.MAP_LIMITS["t1fat"], "b1": L.MAP_LIMITS["b1"],
                "df_hz": L.MAP_LIMITS["df"]}


def _ranges(*spans: tuple[float, float, float]) -> np.ndarray:
    """Concatenate inclusive ranges ``(start, stop, step)``; steps are rounded to whole counts."""
    out = []
    for start, stop, step in spans:
        count = (stop - start) / step
        if not math.isfinite(count) or count + 1 > L.MAX_AXIS_VALUES:
            raise MrfreconError(f"range [{start:g}, {stop:g}, {step:g}] has more than {L.MAX_AXIS_VALUES:,} values")
        n = int(round(count)) + 1
        out.append(start + step * np.arange(n))
    return np.unique(np.round(np.concatenate(out), 10))


@dataclass(frozen=True)
class Grid:
    """The parameter grid of a dictionary: four sorted 1-D float64 axes.

    ``t1h2o_ms`` and ``t1fat_ms`` in ms, ``b1`` a.u. (flip-angle scale), ``df_hz`` in Hz.
    """

    t1h2o_ms: np.ndarray
    t1fat_ms: np.ndarray
    b1: np.ndarray
    df_hz: np.ndarray

    def __post_init__(self) -> None:
        for ax in AXES:
            try:
                v = np.asarray(getattr(self, ax), dtype=np.float64)
            except (TypeError, ValueError):
                raise MrfreconError(f"grid: {ax}: expected a list of numbers") from None
            if v.ndim != 1 or v.size == 0:
                raise MrfreconError(f"grid: {ax}: expected a non-empty 1-D list of values, got shape {v.shape}")
            if v.size > L.MAX_AXIS_VALUES:
                raise MrfreconError(f"grid: {ax}: {v.size:,} values, more than the limit of {L.MAX_AXIS_VALUES:,}")
            lo, hi, lo_open, unit = _AXIS_LIMITS[ax]
            bad = ~np.isfinite(v) | ((v <= lo) if lo_open else (v < lo)) | (v > hi)
            if bad.any():
                rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]{' ' + unit if unit else ''}"
                raise MrfreconError(f"grid: {ax}: value {v[bad][0]:g} outside the physical range {rng}")
            if np.any(np.diff(v) <= 0):
                raise MrfreconError(f"grid: {ax}: values must be strictly increasing")
            object.__setattr__(self, ax, v)

    @classmethod
    def clinical(cls) -> Grid:
        """The grid of the published dictionary-matched patient maps of the seed paper's group:
        T1H2O 550-1600 ms in 10 ms steps then 1650-2300 ms in 50 ms steps (120), fat T1 225-475 ms
        in 25 ms steps (11), B1 0.3-1.0 in 0.05 steps (15), Δf −120…120 Hz in 10 Hz steps (25):
        45,000 water and 4,125 fat atoms."""
        return cls(
            t1h2o_ms=_ranges((550, 1600, 10), (1650, 2300, 50)),
            t1fat_ms=_ranges((225, 475, 25)),
            b1=_ranges((0.3, 1.0, 0.05)),
            df_hz=_ranges((-120, 120, 10)),
        )

    @classmethod
    def mrftools(cls) -> Grid:
        """The narrower grid of the authors' later public configuration (Stanrenko/mrftools,
        ``resources/dico/mrf_dictconf_Dico2_Invivo.json``): T1H2O ≤ 2000 ms, fat T1 225-400 ms."""
        return cls(
            t1h2o_ms=_ranges((550, 1600, 10), (1650, 2000, 50)),
            t1fat_ms=_ranges((225, 400, 25)),
            b1=_ranges((0.3, 1.0, 0.05)),
            df_hz=_ranges((-120, 120, 10)),
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], source: str = "<grid spec>") -> Grid:
        """Build a grid from a mapping ``{axis: {"values": [...]} | {"ranges": [[start, stop, step], ...]}}``.

        Axes: ``t1h2o_ms``, ``t1fat_ms``, ``b1``, ``df_hz``; an axis left out takes the clinical grid's.
        """
        if not isinstance(spec, Mapping):
            raise MrfreconError(f"{source}: expected a table of axes, got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(AXES))
        if unknown:
            raise MrfreconError(f"{source}: unknown axis {', '.join(unknown)}; axes are {', '.join(AXES)}")
        base = cls.clinical()
        kw = {ax: getattr(base, ax) for ax in AXES}
        for ax, v in spec.items():
            where = f"{source}: {ax}"
            if not isinstance(v, Mapping) or len(set(v) & {"values", "ranges"}) != 1:
                raise MrfreconError(f"{where}: expected a table with either 'values' or 'ranges'")
            try:
                if "values" in v:
                    kw[ax] = np.unique(np.asarray(v["values"], dtype=np.float64))
                else:
                    spans = [tuple(float(x) for x in r) for r in v["ranges"]]
                    if any(len(s) != 3 or s[2] <= 0 or s[1] < s[0] for s in spans):
                        raise ValueError
                    kw[ax] = _ranges(*spans)  # type: ignore[arg-type]
            except MrfreconError as e:
                raise MrfreconError(f"{where}: {e}") from None
            except (TypeError, ValueError):
                raise MrfreconError(f"{where}: expected numbers (ranges as [start, stop, step] with step > 0)") from None
        try:
            return cls(**kw)
        except MrfreconError as e:
            raise MrfreconError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Grid:
        """Read a grid spec from a TOML or JSON file (see :meth:`from_spec`)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise MrfreconError(f"{path}: cannot read grid file ({e.strerror})") from None
        try:
            spec = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode())
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise MrfreconError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {e}") from None
        return cls.from_spec(spec, str(path))

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        """JSON-ready form (explicit values)."""
        return {ax: {"values": [float(x) for x in getattr(self, ax)]} for ax in AXES}

    @property
    def shape(self) -> dict[str, int]:
        """Number of values per axis."""
        return {ax: int(getattr(self, ax).size) for ax in AXES}

    @property
    def n_water(self) -> int:
        """Number of water atoms (B1 × Δf × T1H2O)."""
        return self.b1.size * self.df_hz.size * self.t1h2o_ms.size

    @property
    def n_fat(self) -> int:
        """Number of fat atoms (B1 × Δf × T1fat)."""
        return self.b1.size * self.df_hz.size * self.t1fat_ms.size


def check_build_size(sequence: Sequence, grid: Grid) -> None:
    """Refuse, before any allocation, a dictionary larger than :data:`~mrfrecon.limits.MAX_ATOM_FRAMES`
    atom-frames or than the memory its build needs: the atoms (complex64), a normalized copy and the
    concatenation for the basis (3 × the atoms), and the per-spoke longitudinal amplitudes of one
    species (float32 ``(B1 × T1, spokes)``)."""
    atoms = grid.n_water + grid.n_fat
    if atoms * sequence.frames > L.MAX_ATOM_FRAMES:
        raise MrfreconError(f"grid: {atoms:,} atoms × {sequence.frames} frames is more than the limit of "
                            f"{L.MAX_ATOM_FRAMES:,} atom-frames ({L.MAX_ATOM_FRAMES * 8 / 2**30:.0f} GiB as complex64)")
    n_amp = grid.b1.size * max(grid.t1h2o_ms.size, grid.t1fat_ms.size) * sequence.spokes
    L.check_memory(3 * atoms * sequence.frames * 8 + n_amp * 4 * 2, f"dictionary of {atoms:,} atoms × {sequence.frames} frames")


def temporal_basis(atoms: torch.Tensor, energy: float = 0.999, rank: int | None = None) -> tuple[torch.Tensor, float]:
    """Leading right singular vectors of the unit-norm rows of ``atoms``.

    Parameters
    ----------
    atoms
        complex ``(n, frames)``.
    energy
        Smallest fraction of the summed squared singular values to retain (ignored if ``rank``).
    rank
        Fixed rank.

    Returns
    -------
    (basis, retained)
        complex64 ``(frames, K)`` with orthonormal columns, and the retained energy fraction.
        Compress a fingerprint ``x (…, frames)`` with ``x @ basis.conj()``.
    """
    a = atoms / torch.linalg.vector_norm(atoms, dim=-1, keepdim=True).clamp_min(1e-30)
    gram = (a.mH @ a).to(torch.complex128)  # (frames, frames) = V S² V^H; double for the small eigenproblem
    evals, evecs = torch.linalg.eigh(gram)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    frac = torch.cumsum(evals, 0) / evals.sum()
    if rank is None:
        rank = int(torch.searchsorted(frac, torch.tensor(energy, dtype=frac.dtype, device=frac.device)).item()) + 1
    rank = max(1, min(rank, atoms.shape[-1]))
    return evecs[:, :rank].to(torch.complex64).contiguous(), float(frac[rank - 1])


@dataclass
class Dictionary:
    """Water and fat MRF dictionaries on a :class:`Grid` for one :class:`Sequence`.

    Attributes
    ----------
    water
        complex64 ``(n_b1, n_df, n_t1h2o, frames)``: water fingerprints per unit PD.
    fat
        complex64 ``(n_b1, n_df, n_t1fat, frames)``: fat fingerprints per unit PD.
    basis
        complex64 ``(frames, K)``: orthonormal temporal basis (SVD of all atoms).
    energy
        Fraction of the atoms' energy the basis retains.
    """

    sequence: Sequence
    grid: Grid
    water: np.ndarray
    fat: np.ndarray
    basis: np.ndarray
    energy: float
    t2h2o_ms: float = T2_WATER_MS
    t2fat_ms: float = T2_FAT_MS
    fat_model: FatModel = DEFAULT_FAT
    version: str = __version__
    build_seconds: float = float("nan")
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def frames(self) -> int:
        """Frames per fingerprint."""
        return int(self.water.shape[-1])

    @property
    def rank(self) -> int:
        """Rank K of the temporal basis."""
        return int(self.basis.shape[1])

    @classmethod
    def build(
        cls,
        sequence: Sequence,
        grid: Grid | None = None,
        *,
        energy: float = 0.999,
        rank: int | None = None,
        t2h2o_ms: float = T2_WATER_MS,
        t2fat_ms: float = T2_FAT_MS,
        fat: FatModel = DEFAULT_FAT,
        device: str | torch.device | None = None,
    ) -> Dictionary:
        """Simulate the water and fat atoms on ``grid`` (clinical by default) and their basis.

        ``energy`` (default 99.9 %) chooses the rank of the temporal basis; ``rank`` fixes it.
        """
        if not 0.0 < energy <= 1.0:
            raise MrfreconError(f"energy: expected a fraction in (0, 1], got {energy}")
        if rank is not None and not 1 <= rank <= sequence.frames:
            raise MrfreconError(f"rank: expected 1 to {sequence.frames} (the sequence's frames), got {rank}")
        grid = grid or Grid.clinical()
        check_build_size(sequence, grid)
        dev = default_device(device)
        t0 = time.perf_counter()
        water = component_atoms(sequence, grid.t1h2o_ms, grid.b1, grid.df_hz, "water", t2_ms=t2h2o_ms, fat=fat, device=dev)
        fat_atoms = component_atoms(sequence, grid.t1fat_ms, grid.b1, grid.df_hz, "fat", t2_ms=t2fat_ms, fat=fat, device=dev)
        both = torch.cat([water.reshape(-1, sequence.frames), fat_atoms.reshape(-1, sequence.frames)])
        basis, kept = temporal_basis(both, energy, rank)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return cls(
            sequence=sequence,
            grid=grid,
            water=water.cpu().numpy(),
            fat=fat_atoms.cpu().numpy(),
            basis=basis.cpu().numpy(),
            energy=kept,
            t2h2o_ms=t2h2o_ms,
            t2fat_ms=t2fat_ms,
            fat_model=fat,
            build_seconds=time.perf_counter() - t0,
        )

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write one HDF5 file (atomically) with the atoms, basis, grid, sequence and version."""
        path = Path(path)
        remove_stale_temps(path.parent, path.name)  # left by an interrupted build of the same file
        with atomic_h5(path) as f:
            f.attrs["format"] = FORMAT
            f.attrs["mrfrecon_version"] = self.version
            f.attrs["sequence_json"] = self.sequence.to_json()
            f.attrs["sequence_digest"] = self.sequence.digest()
            f.attrs["t2h2o_ms"] = self.t2h2o_ms
            f.attrs["t2fat_ms"] = self.t2fat_ms
            f.attrs["fat_model_json"] = json.dumps(self.fat_model.to_dict())
            f.attrs["energy"] = self.energy
            f.attrs["build_seconds"] = self.build_seconds
            for ax in AXES:
                f.create_dataset(f"grid/{ax}", data=getattr(self.grid, ax))
            f.create_dataset("water", data=self.water)
            f.create_dataset("fat", data=self.fat)
            f.create_dataset("basis", data=self.basis)
            f["water"].attrs["axes"] = "b1, df_hz, t1h2o_ms, frame"
            f["fat"].attrs["axes"] = "b1, df_hz, t1fat_ms, frame"
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], sequence: Sequence | None = None) -> Dictionary:
        """Read a dictionary file, checking its structure; with ``sequence``, refuse a
        dictionary built for a different sequence."""
        path = Path(path)
        with open_h5(path, "dictionary") as f:
            if f.attrs.get("format") != FORMAT:
                raise MrfreconError(f"{path}: format: expected {FORMAT!r}, found {f.attrs.get('format')!r} (not an mrfrecon dictionary)")
            seq = Sequence.from_json(_text_attr(f, "sequence_json", path), f"{path}: sequence_json")
            fat_model = _fat_model(_text_attr(f, "fat_model_json", path), path)
            meta = {}
            for k, (lo, hi, lo_open) in (("t2h2o_ms", (0.0, 10_000.0, True)), ("t2fat_ms", (0.0, 10_000.0, True)),
                                         ("energy", (0.0, 1.0 + 1e-6, True))):
                if k not in f.attrs:
                    raise MrfreconError(f"{path}: attribute {k} missing")
                try:
                    meta[k] = L.check_finite_number(f.attrs[k], f"{path}: {k}", lo, hi, lo_open=lo_open)
                except MrfreconError:
                    raise
                except (TypeError, ValueError):
                    raise MrfreconError(f"{path}: {k}: expected a number, found {f.attrs[k]!r}") from None
            try:
                grid = Grid(**{ax: read_dataset(f, f"grid/{ax}", ndim=1, dtype_kind="f") for ax in AXES})
            except MrfreconError as e:
                raise MrfreconError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
            water = read_dataset(f, "water", ndim=4, dtype_kind="c")
            fat = read_dataset(f, "fat", ndim=4, dtype_kind="c")
            basis = read_dataset(f, "basis", ndim=2, dtype_kind="c")
            version = str(f.attrs.get("mrfrecon_version", "unknown"))
            try:
                build_seconds = float(f.attrs.get("build_seconds", float("nan")))
            except (TypeError, ValueError):
                build_seconds = float("nan")  # for the record only
        g = grid.shape
        expect_w = (g["b1"], g["df_hz"], g["t1h2o_ms"], seq.frames)
        expect_f = (g["b1"], g["df_hz"], g["t1fat_ms"], seq.frames)
        if water.shape != expect_w:
            raise MrfreconError(f"{path}: water: expected shape {expect_w} from the grid and sequence, found {water.shape}")
        if fat.shape != expect_f:
            raise MrfreconError(f"{path}: fat: expected shape {expect_f} from the grid and sequence, found {fat.shape}")
        if basis.shape[0] != seq.frames or not 1 <= basis.shape[1] <= seq.frames:
            raise MrfreconError(f"{path}: basis: expected shape ({seq.frames}, K), found {basis.shape}")
        for name, arr in (("water", water), ("fat", fat), ("basis", basis)):
            if not np.isfinite(arr).all():
                raise MrfreconError(f"{path}: {name}: contains NaN or infinite values")
        if sequence is not None and seq.digest() != sequence.digest():
            raise MrfreconError(
                f"{path}: built for sequence {seq.name!r} (digest {seq.digest()}), not for {sequence.name!r} (digest {sequence.digest()})"
            )
        return cls(
            sequence=seq,
            grid=grid,
            water=water.astype(np.complex64, copy=False),
            fat=fat.astype(np.complex64, copy=False),
            basis=basis.astype(np.complex64, copy=False),
            t2h2o_ms=meta["t2h2o_ms"],
            t2fat_ms=meta["t2fat_ms"],
            energy=meta["energy"],
            fat_model=fat_model,
            version=version,
            build_seconds=build_seconds,
        )

    def summary(self) -> str:
        """One paragraph describing the dictionary."""
        g = self.grid
        return (
            f"{self.sequence.name}: {self.grid.n_water:,} water atoms "
            f"(T1H2O {g.t1h2o_ms[0]:g}-{g.t1h2o_ms[-1]:g} ms, {g.t1h2o_ms.size} values) and {self.grid.n_fat:,} fat atoms "
            f"(T1fat {g.t1fat_ms[0]:g}-{g.t1fat_ms[-1]:g} ms, {g.t1fat_ms.size}), B1 {g.b1[0]:g}-{g.b1[-1]:g} ({g.b1.size}), "
            f"Δf {g.df_hz[0]:g}…{g.df_hz[-1]:g} Hz ({g.df_hz.size}); {self.frames} frames, temporal basis rank {self.rank} "
            f"({100 * self.energy:.3f} % energy)"
        )


def _text_attr(f: Any, key: str, path: Path) -> str:
    """A string attribute of an HDF5 file, or an error naming the file and the attribute."""
    if key not in f.attrs:
        raise MrfreconError(f"{path}: attribute {key} missing")
    v = f.attrs[key]
    if isinstance(v, bytes):
        try:
            v = v.decode()
        except UnicodeDecodeError:
            raise MrfreconError(f"{path}: {key}: not UTF-8 text") from None
    if not isinstance(v, str):
        raise MrfreconError(f"{path}: {key}: expected a JSON string, found {type(v).__name__}")
    return v


def _fat_model(text: str, path: Path) -> FatModel:
    """The fat spectrum of a dictionary file (``fat_model_json``), validated."""
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise MrfreconError(f"{path}: fat_model_json: not valid JSON") from None
    try:
        if not isinstance(d, dict):
            raise TypeError
        model = FatModel(**{k: tuple(float(x) for x in v) for k, v in d.items()})
    except (TypeError, ValueError):
        raise MrfreconError(f"{path}: fat_model_json: expected an object of equally long number lists "
                            f"({', '.join(FatModel().to_dict())})") from None
    freqs, amps = np.asarray(model.frequencies_hz, np.float64), np.asarray(model.amplitudes, np.float64)
    if not (np.isfinite(freqs).all() and np.isfinite(amps).all() and (amps >= 0).all() and amps.sum() > 0):
        raise MrfreconError(f"{path}: fat_model_json: expected finite peak frequencies (Hz) and amplitudes ≥ 0 with a positive sum")
    return model
