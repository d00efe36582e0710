"""Run-time choices shared by all stages: the torch device and the CPU thread policy.

Device
------
Never hard-coded: CUDA where there is one, else the CPU. ``MRFRECON_DEVICE`` overrides the choice
(e.g. ``cpu`` on a machine with a busy GPU). A requested device that does not exist is a
:class:`~mrfrecon.errors.MrfreconError` (one line), not a traceback from deep inside torch.

Threads
-------
torch's default (one OpenMP thread per core) assumes the cores are free. On a workstation they
rarely are: when another process keeps one of two cores busy, every OpenMP barrier waits for the
descheduled thread, and barrier-bound work runs 5–20× slower than on one thread (measured in
``benchmarks/bench_threads.py``). The policy, applied by every public entry point (``match``,
``simulate``, ``acquire``, prediction and training) through :func:`thread_policy`:

1. an explicit choice always wins: :func:`set_threads` (the CLI's ``--threads``), then
   ``$MRFRECON_THREADS``, then ``$OMP_NUM_THREADS`` / ``$MKL_NUM_THREADS`` (read by torch at
   start-up), then ``torch.set_num_threads(n)`` when ``n`` differs from torch's start-up value;
2. otherwise the free cores at call time: the idle time of the allowed CPUs over a short sample of
   ``/proc/stat`` (the 1-minute load average lags by a minute), rounded to the nearest integer,
   at least 1. Work that splits into independent pieces (matching's voxels, prediction's tiles)
   runs them on that many Python worker threads, each with one torch thread, pulling pieces from
   a shared queue (:func:`parallel_map`): no barrier waits for a busy core, a slow worker only
   takes fewer pieces.

Torch's thread count is set per calling thread for the duration of the call and restored after,
so the policy never changes a user's global setting.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

from .errors import MrfreconError

T = TypeVar("T")
R = TypeVar("R")

# ================================================================================ device


def default_device(device: str | torch.device | None = None, *, what: str = "device") -> torch.device:
    """Return ``device`` if given, else ``$MRFRECON_DEVICE``, else CUDA if available, else CPU.

    A device name torch does not know, or a CUDA device on a machine without one, is refused with
    :class:`~mrfrecon.errors.MrfreconError` naming ``what`` (``--device``, ``MRFRECON_DEVICE``)."""
    if device is None:
        env = os.environ.get("MRFRECON_DEVICE")
        if not env:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device, what = env, "MRFRECON_DEVICE"
    if isinstance(device, torch.device):
        return device
    from .errors import MrfreconError

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise MrfreconError(f"{what}: {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MrfreconError(f"{what}: {device!r} asked for, but this machine has no usable CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MrfreconError(f"{what}: {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise MrfreconError(f"{what}: {device!r}: mrfrecon runs on cpu or cuda")
    return dev


# ================================================================================ threads
_EXPLICIT: int | None = None  # set_threads()
_TORCH_AT_IMPORT = torch.get_num_threads()
_LOCAL = threading.local()  # .threads while inside thread_policy (nested entry points reuse it)
_SAMPLE: tuple[float, float] | None = None  # (time.monotonic(), free cores) of the last sample
_SAMPLE_TTL_S = 1.0


def _positive(value: str | int, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise MrfreconError(f"{name}: expected a positive integer number of threads, got {value!r}") from None
    if n < 1:
        raise MrfreconError(f"{name}: expected a positive integer number of threads, got {value!r}")
    return n


def set_threads(n: int | None) -> None:
    """Fix the CPU threads of every mrfrecon call to ``n`` (``None``: back to the automatic policy)."""
    global _EXPLICIT
    _EXPLICIT = None if n is None else _positive(n, "threads")


def allowed_cpus() -> list[int]:
    """CPUs this process may run on (its affinity mask; all CPUs where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


@functools.cache
def physical_cores() -> int:
    """Physical cores among :func:`allowed_cpus` (SMT siblings counted once), as torch's default."""
    cpus = allowed_cpus()
    cores = set()
    for c in cpus:
        try:
            base = f"/sys/devices/system/cpu/cpu{c}/topology/"
            with open(base + "physical_package_id") as f1, open(base + "core_id") as f2:
                cores.add((f1.read().strip(), f2.read().strip()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def explicit_threads() -> int | None:
    """The user's explicit thread count (see the module docstring for the order), else None."""
    if _EXPLICIT is not None:
        return _EXPLICIT
    for name in ("MRFRECON_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        v = os.environ.get(name, "").strip()
        if v:
            return _positive(v.split(",")[0], name)  # OMP_NUM_THREADS may list nested levels
    now = torch.get_num_threads()
    # torch.set_num_threads() after importing mrfrecon, or before it with fewer threads than
    # torch's default (one per physical core). A call with exactly torch's default value cannot
    # be told from the default: use set_threads() or $MRFRECON_THREADS for that.
    if now != _TORCH_AT_IMPORT or _TORCH_AT_IMPORT < physical_cores():
        return now
    return None


def _cpu_times(cpus: Sequence[int]) -> tuple[float, float] | None:
    """(idle, total) jiffies summed over ``cpus`` from /proc/stat; None where unavailable."""
    want = {f"cpu{c}" for c in cpus}
    idle = total = 0.0
    try:
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in want:
                    v = [float(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
                    idle += v[3] + v[4]
                    total += sum(v)
    except (OSError, ValueError, IndexError):
        return None
    return (idle, total) if total > 0 else None


def free_cores(interval_s: float = 0.05) -> float:
    """Cores of :func:`allowed_cpus` that were idle during the last ``interval_s`` seconds.

    Sampled from ``/proc/stat`` (idle + iowait time; steal counts as busy) and cached for a second
    so that loops of calls do not pay the sample each time. Without ``/proc/stat`` it falls back
    to the cores minus the 1-minute load average. The caller's own threads should be idle while it
    samples (they are: entry points sample before they start work)."""
    global _SAMPLE
    now = time.monotonic()
    if _SAMPLE is not None and now - _SAMPLE[0] < _SAMPLE_TTL_S:
        return _SAMPLE[1]
    cpus = allowed_cpus()
    a = _cpu_times(cpus)
    if a is not None:
        time.sleep(interval_s)
        b = _cpu_times(cpus)
    if a is not None and b is not None and b[1] > a[1]:
        free = len(cpus) * (b[0] - a[0]) / (b[1] - a[1])
    else:
        try:
            free = len(cpus) - os.getloadavg()[0]
        except (AttributeError, OSError):
            free = float(len(cpus))
    free = min(float(len(cpus)), max(0.0, free))
    _SAMPLE = (time.monotonic(), free)
    return free


def auto_threads(small: bool = False) -> int:
    """Threads for the next piece of work: the explicit setting if any, else the free cores
    (:func:`free_cores`, rounded, at least 1; not more than the physical cores). ``small=True``
    (work too small to gain from threads) gives 1 without sampling."""
    n = getattr(_LOCAL, "threads", None)
    if n is not None:
        return n
    n = explicit_threads()
    if n is not None:
        return n
    if small:
        return 1
    return int(max(1, min(physical_cores(), int(free_cores() + 0.5))))


@contextmanager
def thread_policy(n: int | None = None, small: bool = False, split: bool = False) -> Iterator[int]:
    """Run a block under the thread policy, then restore the calling thread's torch count.

    ``split=False`` (work parallel inside torch operations: convolutions, training): the block
    runs with ``n`` torch threads, default :func:`auto_threads` (the free cores). ``split=True``
    (work the caller splits into pieces for :func:`parallel_map`): the caller keeps one torch
    thread and the yielded number of workers is ``n``, default the explicit setting or every
    physical core — workers that take pieces from a queue never wait for each other, so they
    gain even on busy cores (measured in ``benchmarks/bench_threads.py``), where torch's
    barriers lose. Nested uses (an entry point calling another) keep the outer choice.
    Yields the number of threads or workers."""
    outer = getattr(_LOCAL, "threads", None)
    if outer is not None:
        yield outer
        return
    if n is not None:
        k = _positive(n, "threads")
    elif split:
        k = explicit_threads() or (1 if small else physical_cores())
    else:
        k = auto_threads(small)
    before = torch.get_num_threads()
    own = 1 if split else k
    _LOCAL.threads = k
    if before != own:
        torch.set_num_threads(own)
    try:
        yield k
    finally:
        _LOCAL.threads = None
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def with_thread_policy(fn: Callable[..., R]) -> Callable[..., R]:
    """Decorator: run ``fn`` inside :func:`thread_policy` (an entry point's one-line opt-in)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with thread_policy():
            return fn(*args, **kwargs)

    return wrapper


def split_range(n: int, chunk: int, workers: int, per_worker: int = 4) -> list[slice]:
    """Slices of ``range(n)`` of at most ``chunk`` items, at least ``per_worker`` per worker
    (so that a worker slowed by a busy core delays the end by a small piece only)."""
    if workers > 1:
        chunk = max(1, min(chunk, -(-n // (per_worker * workers))))
    return [slice(a, min(a + chunk, n)) for a in range(0, n, max(1, chunk))]


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` Python threads, each with one torch thread,
    taking items from one shared queue in order (a worker on a busy core just takes fewer).

    ``fn`` must release the GIL for its heavy part (torch operations and the numba kernels do)
    and must not depend on the thread it runs on. One worker (or one item) runs in the caller."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]

    def run(x: T) -> R:
        if getattr(_LOCAL, "threads", None) != 1:
            torch.set_num_threads(1)  # thread-local for non-main threads (OpenMP ICV)
            _LOCAL.threads = 1
        return fn(x)

    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="mrfrecon") as ex:
            return list(ex.map(run, items))
    finally:
        # torch remembers the last count set by any thread as the start value of new threads:
        # put the caller's back so the workers' 1 does not leak into threads created later
        torch.set_num_threads(torch.get_num_threads())


__all__ = [
    "allowed_cpus", "auto_threads", "default_device", "explicit_threads", "free_cores",
    "parallel_map", "physical_cores", "set_threads", "split_range", "thread_policy",
    "with_thread_policy",
]
