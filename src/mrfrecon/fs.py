"""File-system safety shared by every writer: OS-level folder locks and the temporary files of
atomic writes.

Locks are ``flock(2)`` locks on a small file in the folder (``.mrfrecon.lock`` and friends): the
kernel releases them when the holding process ends, however it ends (SIGKILL included), so a
crashed run never leaves a folder locked. The lock file holds the PID of the last process that took
the lock, so that a refused second writer can be told whom it waits for. (On NFS, Linux emulates
``flock`` with byte-range locks, which the server arbitrates across machines.)

Temporary files of atomic writes are named ``.<final name>.<host>-<pid>.<random>.tmp``: a later run
can tell a temporary file of a process that is gone (left by a kill or a power cut; removed by
:func:`remove_stale_temps`) from one that another live process is still writing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .atomic import host_tag, temp_prefix
from .errors import MrfreconError

__all__ = ["FolderLock", "folder_lock", "remove_stale_temps", "temp_prefix", "pid_alive"]

LOCK_NAME = ".mrfrecon.lock"
_TMP_RE = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp(?:\.nii\.gz)?$")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporary files in ``folder`` (only those of the final name ``name`` when given)
    whose writer is gone: written by a process of this machine that no longer runs, or in the
    naming of mrfrecon versions before host and PID were recorded. Temporary files of live
    processes and of other machines are left alone. Returns the files removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    host = host_tag()
    for p in entries:
        m = _TMP_RE.match(p.name)
        if m is None or (name is not None and m["name"] != name) or not p.is_file():
            continue
        if m["pid"] is not None and (m["host"] != host or pid_alive(int(m["pid"]))):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


class FolderLock:
    """An exclusive (or shared) ``flock`` on ``folder/<name>``, refused at once when another process holds it.

    Parameters
    ----------
    folder
        The folder to lock (created if missing).
    what
        What is being written, for the message (e.g. ``"cohort"``, ``"training run"``).
    shared
        Take a shared lock: any number of shared holders, but no exclusive one (the shards of one
        cohort share the folder; a whole-cohort run excludes them).
    name
        The lock file's name.
    blocking
        Wait for the lock instead of refusing.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str, *, shared: bool = False, name: str = LOCK_NAME,
                 blocking: bool = False) -> None:
        self.folder, self.what, self.shared, self.blocking = Path(folder), what, shared, blocking
        self.path = self.folder / name
        self._fh = None
        self._created = False

    def acquire(self) -> FolderLock:
        self._created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
            op = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if self.blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh.fileno(), op)
            except OSError as e:
                fh.seek(0)
                holder = (fh.read().split() or ["unknown"])[-1]
                fh.close()
                self._remove_created_folder()
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise MrfreconError(f"{self.folder}: another mrfrecon process (PID {holder}) is writing this "
                                        f"{self.what}; wait for it to finish (or stop it) and run again") from None
                raise MrfreconError(f"{self.path}: cannot lock ({e.strerror})") from None
            # the holder before us may have removed the file on release: then lock the new one
            try:
                same = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fh.close()
        if not self.shared:
            fh.seek(0)
            fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Unlock; an exclusive holder also removes the lock file (and the folder if it made it and it is empty)."""
        if self._fh is not None:
            if not self.shared:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
            self._remove_created_folder()

    def _remove_created_folder(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if empty: nothing was written

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str, **kw: object) -> Iterator[FolderLock]:
    """``with folder_lock(folder, "cohort"):`` — see :class:`FolderLock`."""
    with FolderLock(folder, what, **kw) as lock:  # type: ignore[arg-type]
        yield lock
