"""Atomic file writes: the ground floor of all file output (no project imports).

Nothing already written is lost: every file is written to a temporary name in the target folder
and renamed into place only when complete, so an interrupted run never leaves a half-written file
under the final name (a rename is atomic on POSIX file systems). The file's data and then its
folder are flushed to the disk (``fsync``) before and after the rename, so that a power cut cannot
leave an empty or partial file under the final name either (ext4/XFS may otherwise reorder the
rename before the data).

Temporary files are named ``.<final name>.<host>-<pid>.<random>.tmp`` so that a later run can tell
the leftovers of a killed process from the files of a live one (:func:`mrfrecon.fs.remove_stale_temps`).

Every HDF5 dataset written through :func:`atomic_h5` carries a Fletcher-32 checksum (HDF5's
``H5Z_FILTER_FLETCHER32`` filter, verified by the HDF5 library on every read), so silent damage to
a stored array is an error on reading, not wrong numbers.

This module sits outside :mod:`mrfrecon.io` on purpose: :mod:`mrfrecon.sequence` writes its JSON
atomically, and :mod:`mrfrecon.io.scan` needs :class:`~mrfrecon.sequence.Sequence`; were the
atomic writes inside ``io/``, importing them would run ``io/__init__`` (which re-exports the scan
format) and close the circle ``sequence → io → io.scan → sequence``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py


def host_tag() -> str:
    """This machine's name as it appears in temporary file names (letters, digits and ``_``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def temp_prefix(name: str) -> str:
    """Prefix of the temporary files of ``name`` written by this process: ``.<name>.<host>-<pid>.``."""
    return f".{name}.{host_tag()}-{os.getpid()}."


def _tmp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's (or a folder's) data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)  # the rename itself
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


class ChecksummedFile(h5py.File):
    """An HDF5 file whose :meth:`create_dataset` adds a Fletcher-32 checksum to every non-empty
    array dataset (chunked, as the filter requires; h5py picks the chunks unless given)."""

    def create_dataset(self, name, shape=None, dtype=None, data=None, **kw):  # type: ignore[override]
        arr_shape = shape if shape is not None else (None if data is None else getattr(data, "shape", None))
        if arr_shape is None and data is not None:
            import numpy as np

            arr_shape = np.shape(data)
        if arr_shape and all(int(n) > 0 for n in arr_shape):
            kw.setdefault("fletcher32", True)
        return super().create_dataset(name, shape=shape, dtype=dtype, data=data, **kw)


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing that appears under ``path`` only once it is closed cleanly;
    its datasets carry Fletcher-32 checksums (:class:`ChecksummedFile`)."""
    with atomic_path(path) as tmp:
        with ChecksummedFile(tmp, "w") as f:
            yield f
