"""Atomic file writes: the ground floor of all file output (no project imports).

Nothing already written is lost: every file is written to a temporary name in the target folder
and renamed into place only when complete, so an interrupted run never leaves a half-written file
under the final name (a rename is atomic on POSIX file systems).

This module sits outside :mod:`mrfrecon.io` on purpose: :mod:`mrfrecon.sequence` writes its JSON
atomically, and :mod:`mrfrecon.io.scan` needs :class:`~mrfrecon.sequence.Sequence`; were the
atomic writes inside ``io/``, importing them would run ``io/__init__`` (which re-exports the scan
format) and close the circle ``sequence → io → io.scan → sequence``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py


def _tmp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing that appears under ``path`` only once it is closed cleanly."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f
