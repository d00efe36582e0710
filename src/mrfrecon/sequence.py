"""MRF sequences: per-spoke flip angle, echo time and repetition time, played after an inversion.

A :class:`Sequence` describes the acquisition once; the signal model (:mod:`mrfrecon.physics`)
plays it for any tissue and the acquisition (:mod:`mrfrecon.acquisition`) uses its spoke and frame
structure. Units are those of a scanner console: ms and degrees.

Timing convention (used everywhere in mrfrecon)::

    [inversion] --TI--> [pulse 1] --TR_1--> [pulse 2] ... [pulse S] --TR_S--> [recovery] -> next repetition
                         \\__TE_1__ readout

TI runs from the (instantaneous, perfect) inversion to the first excitation; TE from each
excitation to its echo; TR from one excitation to the next. The whole train is played
``repetitions`` times, each followed by ``recovery_ms`` of free relaxation; only the last
repetition is returned, because the magnetization is not fully relaxed before each inversion.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import limits as L
from .errors import MrfreconError

SCHEMA = "mrfrecon.sequence/1"

#: Golden-angle increment of the radial spoke angle in degrees: 180° × (√5 − 1)/2
#: (Winkelmann et al., IEEE TMI 2007), as used by MRF-WF.
GOLDEN_ANGLE_DEG = 180.0 * (math.sqrt(5.0) - 1.0) / 2.0

_UNITS = {
    "flip_angle_deg": "degree, per spoke, nominal (scaled by B1)",
    "te_ms": "ms, per spoke, excitation to echo",
    "tr_ms": "ms, per spoke, excitation to next excitation",
    "ti_ms": "ms, inversion to first excitation",
    "recovery_ms": "ms, free relaxation after each repetition of the train",
    "excitation_phase_deg": "degree",
    "spoke_angle_increment_deg": "degree, radial angle between consecutive spokes",
}


@dataclass(frozen=True)
class Sequence:
    """An inversion-prepared spoiled gradient-echo (FLASH) MRF sequence.

    Attributes
    ----------
    flip_angle_deg, te_ms, tr_ms
        Per-spoke arrays of shape ``(spokes,)``, float64: nominal flip angle (degrees, multiplied by
        B1 in the signal model), echo time and repetition time (ms).
    ti_ms
        Inversion time (ms), from the inversion to the first excitation. ``inversion=False``
        plays the train without an inversion pulse.
    spokes_per_frame
        Consecutive spokes averaged into one image frame; must divide the number of spokes.
    repetitions, recovery_ms
        How often the train is played, each time followed by ``recovery_ms`` of relaxation; the
        last repetition is kept.
    excitation_phase_deg
        Phase of every excitation pulse. Spoiling is ideal (transverse magnetization destroyed
        after each readout), so this only sets the global phase of the signal.
    spoke_angle_increment_deg
        Radial angle step between consecutive spokes (golden angle by default).
    name
        A short label stored with dictionaries, scans and checkpoints.
    """

    flip_angle_deg: np.ndarray
    te_ms: np.ndarray
    tr_ms: np.ndarray
    ti_ms: float
    spokes_per_frame: int = 8
    repetitions: int = 1
    recovery_ms: float = 0.0
    inversion: bool = True
    excitation_phase_deg: float = 90.0
    spoke_angle_increment_deg: float = GOLDEN_ANGLE_DEG
    name: str = "custom"
    _source: str = field(default="<memory>", repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("flip_angle_deg", "te_ms", "tr_ms"):
            object.__setattr__(self, key, np.asarray(getattr(self, key), dtype=np.float64).copy())
            getattr(self, key).setflags(write=False)
        _validate(self, self._source)

    # ------------------------------------------------------------------ built-in schedules
    @classmethod
    def mrf_wf(cls, echo_spacing_ms: float = 1.11) -> Sequence:
        """The MRF T1-FF (MRF-WF) sequence of the Institute of Myology, as published.

        Marty & Carlier, "MR fingerprinting for water T1 and fat fraction quantification in fat
        infiltrated skeletal muscles", MRM 83:621-634 (2020); the schedule as published with
        Slioussarenko et al., MRM (2024) and in the authors' public dictionary configurations
        (repository Stanrenko/mrftools, ``mrftools/dico_config/``):

        * perfect non-selective inversion, TI = 8.32 ms;
        * 1400 radial golden-angle FLASH spokes, one per TR, excitation phase 90°, ideal spoiling;
        * flip angle 5° × (1 for spokes 1-600, 2 for 601-800, 1 for 801-1000, 3 for 1001-1200,
          1 for 1201-1400);
        * TE 2.39 ms (spokes 1-800), 3.45 ms (801-1200), 4.63 ms (1201-1400);
          TR = TE + echo spacing (a protocol parameter; 1.11 ms in the authors' examples);
        * 8 spokes per frame → 175 frames; 2 repetitions each followed by 5 s of recovery, the
          last kept.

        Parameters
        ----------
        echo_spacing_ms
            TR − TE in ms, read from the scanner protocol.
        """
        if not (echo_spacing_ms > 0 and math.isfinite(echo_spacing_ms)):
            raise MrfreconError(f"echo_spacing_ms: expected a positive number of ms, got {echo_spacing_ms!r}")
        spokes = np.arange(1, 1401)
        multiplier = np.ones(1400)
        multiplier[(spokes >= 601) & (spokes <= 800)] = 2.0
        multiplier[(spokes >= 1001) & (spokes <= 1200)] = 3.0
        te = np.where(spokes <= 800, 2.39, np.where(spokes <= 1200, 3.45, 4.63))
        return cls(
            flip_angle_deg=5.0 * multiplier,
            te_ms=te,
            tr_ms=te + echo_spacing_ms,
            ti_ms=8.32,
            spokes_per_frame=8,
            repetitions=2,
            recovery_ms=5000.0,
            inversion=True,
            excitation_phase_deg=90.0,
            name=f"MRF-WF (echo spacing {echo_spacing_ms:g} ms)",
        )

    # ------------------------------------------------------------------ derived quantities
    @property
    def spokes(self) -> int:
        """Number of spokes (excitations) in one repetition of the train."""
        return int(self.flip_angle_deg.shape[0])

    @property
    def frames(self) -> int:
        """Number of image frames, ``spokes // spokes_per_frame``."""
        return self.spokes // self.spokes_per_frame

    @property
    def duration_ms(self) -> float:
        """Duration of one repetition of the train (TI + ΣTR), in ms, without the recovery."""
        return float(self.ti_ms + self.tr_ms.sum())

    def frame_mean(self, per_spoke: np.ndarray) -> np.ndarray:
        """Average a per-spoke quantity ``(..., spokes)`` over each frame → ``(..., frames)``."""
        per_spoke = np.asarray(per_spoke)
        return per_spoke.reshape(*per_spoke.shape[:-1], self.frames, self.spokes_per_frame).mean(-1)

    def spoke_angles_rad(self) -> np.ndarray:
        """Radial angle of each spoke ``(spokes,)`` in radians: ``n × increment`` (mod 2π)."""
        return np.mod(np.arange(self.spokes) * np.deg2rad(self.spoke_angle_increment_deg), 2 * np.pi)

    def digest(self) -> str:
        """A short hash of everything that changes the signal; two sequences with the same
        digest give the same fingerprints. Used to refuse a dictionary or checkpoint made for
        another sequence."""
        d = self.to_dict()
        d.pop("name")
        d.pop("spoke_angle_increment_deg")  # acquisition only, not the signal
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready representation (schema ``mrfrecon.sequence/1``)."""
        return {
            "schema": SCHEMA,
            "name": self.name,
            "units": dict(_UNITS),
            "flip_angle_deg": [float(x) for x in self.flip_angle_deg],
            "te_ms": [float(x) for x in self.te_ms],
            "tr_ms": [float(x) for x in self.tr_ms],
            "ti_ms": float(self.ti_ms),
            "inversion": bool(self.inversion),
            "spokes_per_frame": int(self.spokes_per_frame),
            "repetitions": int(self.repetitions),
            "recovery_ms": float(self.recovery_ms),
            "excitation_phase_deg": float(self.excitation_phase_deg),
            "spoke_angle_increment_deg": float(self.spoke_angle_increment_deg),
        }

    def to_json(self) -> str:
        """Serialize to a JSON string."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> Sequence:
        """Build and validate a sequence from its dictionary form; errors name ``source`` and the field."""
        if not isinstance(d, dict):
            raise MrfreconError(f"{source}: expected a JSON object with the sequence fields, got {type(d).__name__}")
        schema = d.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise MrfreconError(f"{source}: schema: expected {SCHEMA!r}, got {schema!r}")
        required = ("flip_angle_deg", "te_ms", "tr_ms", "ti_ms")
        missing = [k for k in required if k not in d]
        if missing:
            raise MrfreconError(f"{source}: missing field(s) {', '.join(missing)} (required: {', '.join(required)})")
        known = set(_UNITS) | {"schema", "name", "units", "inversion", "spokes_per_frame", "repetitions"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MrfreconError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        kw: dict[str, Any] = {}
        for key in ("flip_angle_deg", "te_ms", "tr_ms"):
            kw[key] = _number_array(d[key], source, key)
        for key in ("ti_ms", "recovery_ms", "excitation_phase_deg", "spoke_angle_increment_deg"):
            if key in d:
                kw[key] = _number(d[key], source, key)
        for key in ("spokes_per_frame", "repetitions"):
            if key in d:
                v = d[key]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise MrfreconError(f"{source}: {key}: expected an integer, got {v!r}")
                kw[key] = v
        if "inversion" in d:
            if not isinstance(d["inversion"], bool):
                raise MrfreconError(f"{source}: inversion: expected true or false, got {d['inversion']!r}")
            kw["inversion"] = d["inversion"]
        if "name" in d:
            kw["name"] = str(d["name"])
        return cls(**kw, _source=source)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> Sequence:
        """Parse a JSON string (see :meth:`to_dict` for the schema)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise MrfreconError(f"{source}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        except RecursionError:
            raise MrfreconError(f"{source}: not valid JSON (nested too deeply)") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sequence:
        """Read a sequence JSON file, validating every field."""
        path = Path(path)
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                raise MrfreconError(f"{path}: {path.stat().st_size:,} bytes is too large for a sequence file "
                                    f"(at most {_MAX_FILE_BYTES:,}: {L.MAX_SPOKES:,} spokes)")
            raw = path.read_bytes()
        except OSError as e:
            raise MrfreconError(f"{path}: cannot read sequence file ({e.strerror})") from None
        return cls.from_json(_decode_text(raw, path), str(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the sequence as JSON (atomically: a temporary file renamed into place)."""
        from .atomic import atomic_write_text

        return atomic_write_text(Path(path), self.to_json())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.digest())


#: a sequence file of MAX_SPOKES spokes with three long numbers each stays far below this
_MAX_FILE_BYTES = 16 * 2**20


def _decode_text(raw: bytes, path: Path) -> str:
    """UTF-8 text of a file (a UTF-8 byte-order mark is allowed); binary or UTF-16 files are refused."""
    if b"\x00" in raw:
        raise MrfreconError(f"{path}: not a text file (it holds NUL bytes: binary, or UTF-16 text; save it as UTF-8 JSON)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MrfreconError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded; save it as UTF-8 JSON)") from None


def _number(v: Any, source: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MrfreconError(f"{source}: {key}: expected a number, got {v!r}")
    return float(v)


def _number_array(v: Any, source: str, key: str) -> np.ndarray:
    if not isinstance(v, (list, tuple, np.ndarray)):
        raise MrfreconError(f"{source}: {key}: expected a list of numbers (one per spoke), got {type(v).__name__}")
    if len(v) > L.MAX_SPOKES:
        raise MrfreconError(f"{source}: {key}: {len(v):,} spokes, more than the limit of {L.MAX_SPOKES:,}")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
            raise MrfreconError(f"{source}: {key}[{i}]: expected a number, got {x!r}")
    return np.asarray(v, dtype=np.float64)


def _validate(seq: Sequence, source: str) -> None:
    """Check shapes, finiteness and the physical ranges of :mod:`mrfrecon.limits`."""
    n = seq.flip_angle_deg.shape
    if seq.flip_angle_deg.ndim != 1 or n[0] == 0:
        raise MrfreconError(f"{source}: flip_angle_deg: expected a non-empty 1-D list, got shape {n}")
    if n[0] > L.MAX_SPOKES:
        raise MrfreconError(f"{source}: flip_angle_deg: {n[0]:,} spokes, more than the limit of {L.MAX_SPOKES:,}")
    for key in ("te_ms", "tr_ms"):
        arr = getattr(seq, key)
        if arr.shape != n:
            raise MrfreconError(
                f"{source}: {key}: has {arr.size} values but flip_angle_deg has {n[0]} (one per spoke expected)"
            )
    for key in ("flip_angle_deg", "te_ms", "tr_ms"):
        arr = getattr(seq, key)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise MrfreconError(f"{source}: {key}[{int(np.argmax(bad))}]: not a finite number")
    _in_range(seq.flip_angle_deg, source, "flip_angle_deg", 0.0, L.FLIP_MAX_DEG, "°")
    _in_range(seq.te_ms, source, "te_ms", 0.0, L.TR_MAX_MS, " ms")
    _in_range(seq.tr_ms, source, "tr_ms", 0.0, L.TR_MAX_MS, " ms", lo_open=True)
    late = seq.te_ms >= seq.tr_ms
    if late.any():
        i = int(np.argmax(late))
        raise MrfreconError(f"{source}: te_ms[{i}] = {seq.te_ms[i]} ms is not shorter than tr_ms[{i}] = {seq.tr_ms[i]} ms "
                            f"(the echo must fall inside its repetition)")
    L.check_finite_number(seq.ti_ms, f"{source}: ti_ms", 0.0, L.TI_MAX_MS, unit="ms")
    L.check_finite_number(seq.recovery_ms, f"{source}: recovery_ms", 0.0, L.RECOVERY_MAX_MS, unit="ms")
    L.check_finite_number(seq.excitation_phase_deg, f"{source}: excitation_phase_deg", -L.ANGLE_MAX_DEG, L.ANGLE_MAX_DEG, unit="°")
    L.check_finite_number(seq.spoke_angle_increment_deg, f"{source}: spoke_angle_increment_deg",
                          -L.ANGLE_MAX_DEG, L.ANGLE_MAX_DEG, unit="°")
    if not 1 <= seq.repetitions <= L.MAX_REPETITIONS:
        raise MrfreconError(f"{source}: repetitions: must be 1-{L.MAX_REPETITIONS}, got {seq.repetitions}")
    if seq.spokes_per_frame < 1:
        raise MrfreconError(f"{source}: spokes_per_frame: must be >= 1, got {seq.spokes_per_frame}")
    if n[0] % seq.spokes_per_frame:
        raise MrfreconError(
            f"{source}: spokes_per_frame: {seq.spokes_per_frame} does not divide the {n[0]} spokes into whole frames"
        )


def _in_range(arr: np.ndarray, source: str, key: str, lo: float, hi: float, unit: str, *, lo_open: bool = False) -> None:
    bad = ((arr <= lo) if lo_open else (arr < lo)) | (arr > hi)
    if bad.any():
        i = int(np.argmax(bad))
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise MrfreconError(f"{source}: {key}[{i}] = {arr[i]:g}{unit} is outside the physical range {rng}{unit}")
