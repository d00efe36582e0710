"""HDF5 helpers: open a file read-only and read a dataset, with errors that name the file and dataset."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from ..errors import MrfreconError


def open_h5(path: str | os.PathLike[str], what: str) -> h5py.File:
    """Open an existing HDF5 file read-only, with a clear error if it is missing or not HDF5.

    ``what`` names the kind of file expected (e.g. ``"dictionary"``) for the message.
    """
    path = Path(path)
    if not path.exists():
        raise MrfreconError(f"{path}: no such {what} file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise MrfreconError(f"{path}: not a readable HDF5 {what} file (truncated or corrupt?): {e}") from None


def read_dataset(f: h5py.File, name: str, *, ndim: int | None = None, dtype_kind: str | None = None):
    """Read dataset ``name`` from ``f`` and check its rank and dtype kind ('f', 'c', 'i', 'b', 'u').

    Errors name the file and the dataset.
    """
    if name not in f:
        raise MrfreconError(f"{f.filename}: {name}: dataset missing")
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise MrfreconError(f"{f.filename}: {name}: expected a dataset, found a group")
    if ndim is not None and ds.ndim != ndim:
        raise MrfreconError(f"{f.filename}: {name}: expected {ndim} dimensions, found shape {ds.shape}")
    if dtype_kind is not None and ds.dtype.kind not in dtype_kind:
        raise MrfreconError(f"{f.filename}: {name}: expected dtype kind {dtype_kind!r}, found {ds.dtype}")
    try:
        return ds[()]
    except OSError as e:
        if "filter returned failure" in str(e) and ds.fletcher32:
            raise MrfreconError(f"{f.filename}: {name}: checksum mismatch: the stored data are damaged "
                                f"(Fletcher-32 verification failed); restore or re-create the file") from None
        raise MrfreconError(f"{f.filename}: {name}: cannot be read (truncated or damaged file?): {e}") from None
