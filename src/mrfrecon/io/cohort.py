"""The cohort index: a folder of scan files and ``cohort.json`` listing them with the split."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_write_text
from ..errors import MrfreconError

COHORT_FORMAT = "mrfrecon.cohort/1"
INDEX_NAME = "cohort.json"
SPLITS = ("train", "val", "test")


@dataclass
class CohortIndex:
    """A cohort: a folder of scan files and ``cohort.json`` listing them with the split.

    ``subjects`` maps a subject id to its entry ``{"file": "<name>.h5", "region": ..., "condition": ...}``
    (file names relative to the folder); ``split`` maps ``train``/``val``/``test`` to subject ids.
    """

    root: Path
    subjects: dict[str, dict[str, Any]]
    split: dict[str, list[str]]
    attrs: dict[str, Any] = field(default_factory=dict)

    def path(self, subject: str) -> Path:
        """The scan file of ``subject``."""
        return self.root / self.subjects[subject]["file"]

    def paths(self, split: str) -> list[Path]:
        """Scan files of one split (``train``, ``val`` or ``test``), in index order."""
        if split not in SPLITS:
            raise MrfreconError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        return [self.path(s) for s in self.split[split]]

    def linked_subset(self, out: str | os.PathLike[str], split: dict[str, list[str]], note: dict[str, Any]) -> CohortIndex:
        """A cohort in ``out`` of some of this cohort's subjects with another ``split`` (train/val/test
        → subject ids); each scan is a symbolic link to this cohort's file (a cohort lists files
        inside its folder), the attributes are this cohort's plus ``note``. Written and returned."""
        root = Path(out)
        root.mkdir(parents=True, exist_ok=True)
        subs: dict[str, dict[str, Any]] = {}
        for name in SPLITS:
            for s in split[name]:
                src, link = self.path(s).resolve(), root / self.path(s).name
                if link.is_symlink() and link.resolve() != src:
                    link.unlink()
                if not link.exists():
                    link.symlink_to(src)
                subs[s] = {**self.subjects[s], "file": link.name}
        sub = CohortIndex(root, subs, {k: list(split[k]) for k in SPLITS}, {**self.attrs, **note})
        sub.save()
        return sub

    def save(self) -> Path:
        """Write ``cohort.json`` atomically."""
        doc = {"format": COHORT_FORMAT, "mrfrecon_version": __version__, "attrs": self.attrs,
               "subjects": self.subjects, "split": self.split}
        return atomic_write_text(self.root / INDEX_NAME, json.dumps(doc, indent=1))

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> CohortIndex:
        """Read and validate ``root/cohort.json``: every listed file exists, splits are disjoint."""
        root = Path(root)
        p = root / INDEX_NAME
        if not root.is_dir():
            raise MrfreconError(f"{root}: no such cohort folder")
        if not p.exists():
            raise MrfreconError(f"{p}: missing (not a cohort folder: make one with `mrfrecon simulate` or `mrfrecon cohort create`)")
        try:
            doc = json.loads(p.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as e:
            raise MrfreconError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except (UnicodeDecodeError, RecursionError):
            raise MrfreconError(f"{p}: not a UTF-8 JSON text") from None
        except OSError as e:
            raise MrfreconError(f"{p}: cannot read ({e.strerror})") from None
        if not isinstance(doc, dict) or doc.get("format") != COHORT_FORMAT:
            raise MrfreconError(f"{p}: format: expected {COHORT_FORMAT!r}")
        subjects, split = doc.get("subjects"), doc.get("split")
        if not isinstance(subjects, dict) or not subjects:
            raise MrfreconError(f"{p}: subjects: the cohort is empty")
        if not isinstance(split, dict) or set(split) != set(SPLITS):
            raise MrfreconError(f"{p}: split: expected lists for {', '.join(SPLITS)}")
        seen: set[str] = set()
        for name in SPLITS:
            if not isinstance(split[name], list) or not all(isinstance(s, str) for s in split[name]):
                raise MrfreconError(f"{p}: split/{name}: expected a list of subject ids")
            for s in split[name]:
                if s not in subjects:
                    raise MrfreconError(f"{p}: split/{name}: unknown subject {s!r}")
                if s in seen:
                    raise MrfreconError(f"{p}: split: subject {s!r} is in more than one split")
                seen.add(s)
        for s, entry in subjects.items():
            name_ = entry.get("file") if isinstance(entry, dict) else None
            if not isinstance(name_, str) or not name_ or Path(name_).is_absolute() or ".." in Path(name_).parts:
                raise MrfreconError(f"{p}: subjects/{s}: expected an entry with a file name inside the folder")
            if not (root / entry.get("file", "")).is_file():
                raise MrfreconError(f"{p}: subjects/{s}: file {entry.get('file')!r} not found in {root}")
        return cls(root=root, subjects=subjects, split={k: list(v) for k, v in split.items()}, attrs=doc.get("attrs", {}) if isinstance(doc.get("attrs"), dict) else {})


def split_counts(n: int) -> tuple[int, int, int]:
    """Train/validation/test sizes for ``n`` subjects: the paper's 55/20/20 of 95, proportionally
    (at least one validation and one test subject once n ≥ 3)."""
    if n < 3:
        return (n, 0, 0)
    val = max(1, round(n * 20 / 95))
    test = max(1, round(n * 20 / 95))
    return (n - val - test, val, test)
