"""Model checkpoints: the weights plus everything needed to use them without the training config.

A checkpoint is a ``torch.save`` file (``.pt``) holding only tensors, lists, dicts and strings,
so it loads with ``torch.load(weights_only=True)`` — no pickled code runs on loading::

    {
      "format": "mrfrecon.checkpoint/1",
      "state_dict": {...},                 # the network's weights and batch-norm statistics
      "meta_json": "{...}",                # JSON, see below
      "training": {...},                   # checkpoint_last.pt only: optimizer, RNG states, ...
    }

``meta_json`` holds: ``spec`` (``mrfrecon.models.build(**spec)`` rebuilds the architecture),
``map_norm`` (:meth:`~mrfrecon.data.MapNorm.to_dict`: the training split's map ranges),
``maps`` (output order), ``sequence_json`` and ``sequence_digest`` (the scans it applies to),
``frames``, ``target`` (``"reference"`` or ``"ground-truth"``), ``mrfrecon_version``,
``git_hash``, ``epoch`` and ``val_nrmse`` (its validation score), and ``config`` (the training
settings, for the record).

Checkpoints are written atomically (:func:`mrfrecon.io.atomic_path`): an interrupted run never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from . import limits as L
from .errors import MrfreconError
from .atomic import atomic_path
from .sequence import Sequence

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "git_hash", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "mrfrecon.checkpoint/1"
_META_KEYS = ("spec", "map_norm", "maps", "sequence_json", "sequence_digest", "frames", "target",
              "mrfrecon_version", "git_hash", "epoch", "val_nrmse")
TARGETS = ("reference", "ground-truth")


@functools.cache
def git_hash() -> str:
    """``git rev-parse HEAD`` of the source tree this package runs from, or ``"unknown"``
    (installed from a wheel, git missing, ...)."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                           capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    h = r.stdout.strip()
    return h if r.returncode == 0 and len(h) == 40 else "unknown"


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint (see the module docstring for the fields)."""

    path: Path | None
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    training: dict[str, Any] | None = None
    _sequence: Sequence | None = field(default=None, repr=False)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.meta["spec"])

    @property
    def maps(self) -> tuple[str, ...]:
        return tuple(self.meta["maps"])

    @property
    def frames(self) -> int:
        return int(self.meta["frames"])

    @property
    def target(self) -> str:
        return str(self.meta["target"])

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    @property
    def val_nrmse(self) -> float:
        return float(self.meta["val_nrmse"])

    @property
    def sequence_digest(self) -> str:
        return str(self.meta["sequence_digest"])

    @property
    def sequence(self) -> Sequence:
        if self._sequence is None:
            self._sequence = Sequence.from_json(self.meta["sequence_json"], f"{self.path}: sequence_json")
        return self._sequence

    @property
    def map_norm(self):  # -> MapNorm (import kept local: mrfrecon.data pulls in torch datasets)
        from .data import MapNorm

        return MapNorm.from_dict(self.meta["map_norm"])

    def build_model(self, device: str | torch.device | None = None) -> torch.nn.Module:
        """The network with these weights, in eval mode, on ``device`` (default CPU)."""
        from .models import build

        try:
            net = build(**self.spec)
        except MrfreconError as e:
            raise MrfreconError(f"{self.path}: spec: {e}") from None
        except TypeError as e:
            raise MrfreconError(f"{self.path}: spec: not a model specification ({e})") from None
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise MrfreconError(f"{self.path}: the weights do not fit the stored model spec ({first})") from None
        return net.to(device or "cpu").eval()


def save_checkpoint(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
                    training: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically. ``meta`` must hold the keys listed in the module docstring
    (``mrfrecon_version`` and ``git_hash`` are filled in when missing) and be JSON-serializable;
    ``training`` (optional) holds tensors, numbers, strings, lists and dicts only."""
    path = Path(path)
    meta = {"mrfrecon_version": __version__, "git_hash": git_hash(), **meta}
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")  # a bug in the caller, not user input
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "meta_json": json.dumps(meta),
    }
    if training is not None:
        payload["training"] = training
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str] | Checkpoint) -> Checkpoint:
    """Read and validate a checkpoint; a missing, truncated, corrupt or foreign file raises
    :class:`MrfreconError` naming the file and what is wrong. A :class:`Checkpoint` is returned
    as is."""
    if isinstance(path, Checkpoint):
        return path
    path = Path(path)
    if not path.is_file():
        raise MrfreconError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise MrfreconError(f"{path}: not a readable checkpoint (not a torch zip archive: empty, truncated or another kind of file)")
    try:
        # weights_only: plain containers and tensors only — loading never runs pickled code
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MrfreconError(f"{path}: not a readable checkpoint (it holds pickled Python objects, which are not "
                            f"loaded for safety; an mrfrecon checkpoint holds only tensors and plain data)") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, ... for damaged archives
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MrfreconError(f"{path}: not a readable checkpoint (truncated or corrupt?): {msg[:160]}") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise MrfreconError(f"{path}: format: expected {CHECKPOINT_FORMAT!r}, found {found!r} (not an mrfrecon checkpoint)")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MrfreconError(f"{path}: state_dict: missing or not a dict of tensors")
    for k, v in state.items():  # a NaN weight would predict NaN maps without a word
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            raise MrfreconError(f"{path}: state_dict/{k}: contains NaN or infinite weights")
    try:
        meta = json.loads(obj["meta_json"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise MrfreconError(f"{path}: meta_json: missing or not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise MrfreconError(f"{path}: meta_json: expected a JSON object")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise MrfreconError(f"{path}: meta_json: missing {', '.join(missing)}")
    spec = meta["spec"]
    if not isinstance(spec, dict) or "name" not in spec:
        raise MrfreconError(f"{path}: meta_json: spec must be an object with the model name")
    if meta["target"] not in TARGETS:
        raise MrfreconError(f"{path}: meta_json: target must be one of {TARGETS}, found {meta['target']!r}")
    ck = Checkpoint(path=path, state_dict=state, meta=meta, training=obj.get("training"))
    try:
        _check_meta(ck, path, spec)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        if isinstance(e, MrfreconError):
            raise
        raise MrfreconError(f"{path}: meta_json: malformed field ({type(e).__name__}: {str(e)[:120]})") from None
    return ck


def _check_meta(ck: Checkpoint, path: Path, spec: dict[str, Any]) -> None:
    """Fail at loading, not at prediction time: the sequence, the map ranges and the frame count agree."""
    seq = ck.sequence
    if seq.digest() != ck.sequence_digest:
        raise MrfreconError(f"{path}: sequence_digest {ck.sequence_digest} does not match its sequence_json ({seq.digest()})")
    if seq.frames != ck.frames or int(spec.get("frames", -1)) != ck.frames:
        raise MrfreconError(f"{path}: frames {ck.frames} disagree with the sequence ({seq.frames}) or the model spec")
    try:
        norm = ck.map_norm
    except MrfreconError as e:
        raise MrfreconError(f"{path}: meta_json: {e}") from None
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise MrfreconError(f"{path}: meta_json: map_norm is malformed ({type(e).__name__})") from None
    if tuple(norm.names) != ck.maps or int(spec.get("maps", -1)) != len(ck.maps):
        raise MrfreconError(f"{path}: maps {list(ck.maps)} disagree with map_norm {list(norm.names)} or the model spec")
    for name, lo, hi in zip(norm.names, norm.minimum, norm.maximum, strict=True):
        if name in L.MAP_LIMITS:  # the training maps' range: it must be a physical one
            for v in (lo, hi):
                try:
                    L.check_map(name, np.array([v], np.float64), f"{path}: map_norm/{name}")
                except MrfreconError as e:
                    raise MrfreconError(f"{e} (the training maps were out of range)") from None
