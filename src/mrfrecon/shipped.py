"""Checkpoints shipped inside the package: the best study checkpoint of each compared network.

They live in ``mrfrecon/checkpoints/`` beside ``MANIFEST.json``, which names each one and records
its file, SHA-256, size, the command that trained it, the cohort and the git hash it came
from. Any command that takes ``--checkpoint`` also takes ``shipped:<name>`` (for example
``mrfrecon predict --checkpoint shipped:study-proposed scan.h5 --out maps/``); the file's SHA-256 is
checked against the manifest before it is loaded, so a damaged or replaced file is an error,
never a silently different network. ``mrfrecon shipped`` lists them.

:func:`ship` (used by ``scripts/ship_study.py``) copies a run's best checkpoint in and
records it.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write_text
from .errors import MrfreconError
from .io.nifti import file_sha256 as sha256_of  # the SHA-256 the maps' sidecars record too

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

__all__ = ["PREFIX", "open_checkpoint", "resolve_checkpoint", "ship", "shipped_checkpoints", "shipped_dir", "sha256_of"]

PREFIX = "shipped:"
MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = "mrfrecon.shipped/1"


def shipped_dir() -> Path:
    """The folder of the shipped checkpoints (``$MRFRECON_SHIPPED_DIR`` overrides it, for tests)."""
    env = os.environ.get("MRFRECON_SHIPPED_DIR")
    return Path(env) if env else Path(str(resources.files("mrfrecon").joinpath("checkpoints")))


def shipped_checkpoints() -> dict[str, dict[str, Any]]:
    """The manifest: name → {file, sha256, bytes, model, target, seed, val_nrmse, command,
    cohort, git}; empty when nothing is shipped."""
    f = shipped_dir() / MANIFEST
    if not f.is_file():
        return {}
    try:
        doc = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MrfreconError(f"{f}: not a readable manifest ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("checkpoints"), dict):
        raise MrfreconError(f"{f}: format: expected {MANIFEST_FORMAT!r} with a 'checkpoints' table")
    return doc["checkpoints"]


def resolve_checkpoint(spec: str | os.PathLike[str]) -> Path:
    """The checkpoint file ``spec`` names: a path as given, or ``shipped:<name>`` — a shipped
    checkpoint, whose SHA-256 must match the manifest's (else :class:`MrfreconError`)."""
    text = os.fspath(spec)
    if not text.startswith(PREFIX):
        return Path(text)
    name = text[len(PREFIX):]
    table = shipped_checkpoints()
    if name not in table:
        known = ", ".join(sorted(table)) or "none are installed"
        raise MrfreconError(f"--checkpoint {text}: no shipped checkpoint {name!r} (shipped: {known})")
    entry = table[name]
    path = shipped_dir() / entry["file"]
    if not path.is_file():
        raise MrfreconError(f"{path}: the shipped checkpoint {name!r} is missing from the installation")
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise MrfreconError(f"{path}: SHA-256 {digest[:16]}… differs from the manifest's {entry['sha256'][:16]}… "
                            f"(damaged or replaced file); reinstall mrfrecon")
    return path


def open_checkpoint(spec: str | os.PathLike[str] | Checkpoint) -> Checkpoint:
    """A loaded checkpoint from a path, ``shipped:<name>`` (:func:`resolve_checkpoint`) or an
    already loaded :class:`~mrfrecon.checkpoint.Checkpoint` (returned as is): what every Python
    function that takes a checkpoint accepts, as the command line does."""
    from .checkpoint import Checkpoint, load_checkpoint

    return spec if isinstance(spec, Checkpoint) else load_checkpoint(resolve_checkpoint(spec))


def ship(checkpoint: str | os.PathLike[str], name: str, *, command: str, extra: dict[str, Any] | None = None) -> Path:
    """Copy ``checkpoint`` into the shipped folder as ``<name>.pt`` and record it in the
    manifest (SHA-256, size, model, target, seed, validation NRMSE, ``command``, ``extra``)."""
    from .checkpoint import load_checkpoint

    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise MrfreconError(f"ship: name: expected letters, digits, '-', '_' or '.', got {name!r}")
    ck = load_checkpoint(checkpoint)
    folder = shipped_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{name}.pt"
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, dst)
    doc = {"format": MANIFEST_FORMAT, "checkpoints": dict(shipped_checkpoints())}
    cfg = (ck.meta or {}).get("config", {})
    doc["checkpoints"][name] = {"file": dst.name, "sha256": sha256_of(dst), "bytes": dst.stat().st_size,
                                "model": cfg.get("model"), "target": ck.meta.get("target"), "seed": cfg.get("seed"),
                                "width": cfg.get("width"), "epoch": ck.epoch, "val_nrmse": ck.val_nrmse,
                                "command": command, **(extra or {})}
    atomic_write_text(folder / MANIFEST, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return dst
