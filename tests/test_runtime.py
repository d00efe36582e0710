"""The thread policy and device checks of mrfrecon.runtime (no timing here: speed is benchmarks/bench_threads.py)."""

import threading
import time

import numpy as np
import pytest
import torch

from mrfrecon import MrfreconError, runtime
from mrfrecon.runtime import (auto_threads, default_device, explicit_threads, free_cores, parallel_map, set_threads,
                              split_range, thread_policy)


@pytest.fixture(autouse=True)
def clean_policy(monkeypatch):
    """No explicit setting from the environment or from earlier tests; torch's count restored."""
    for name in ("MRFRECON_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before, saved = torch.get_num_threads(), runtime._EXPLICIT
    torch.set_num_threads(2)  # a 2-core machine at torch's default, whatever this one is
    monkeypatch.setattr(runtime, "_TORCH_AT_IMPORT", 2)
    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    set_threads(None)
    yield
    runtime._EXPLICIT = saved
    torch.set_num_threads(before)


def _fake_stat(monkeypatch, busy_per_cpu):
    """/proc/stat readings in which each allowed CPU was busy the given fraction of the sample."""
    cpus = list(range(len(busy_per_cpu)))
    monkeypatch.setattr(runtime, "allowed_cpus", lambda: cpus)
    calls = {"n": 0}

    def times(_cpus):
        calls["n"] += 1
        k = calls["n"] - 1  # 0 before the sleep, 1 after
        idle = sum(100.0 * (1 - b) * k for b in busy_per_cpu)
        return idle + 1000.0, 100.0 * len(cpus) * k + 2000.0

    monkeypatch.setattr(runtime, "_cpu_times", times)
    monkeypatch.setattr(runtime, "_SAMPLE", None)


def test_free_cores_counts_idle_time_of_the_allowed_cpus(monkeypatch):
    _fake_stat(monkeypatch, [1.0, 0.0])  # one core kept busy by another process
    assert free_cores(0.0) == pytest.approx(1.0)
    assert auto_threads() == 1
    _fake_stat(monkeypatch, [0.05, 0.1])
    assert free_cores(0.0) == pytest.approx(1.85)
    assert auto_threads() == 2
    _fake_stat(monkeypatch, [1.0, 1.0])
    assert auto_threads() == 1  # never 0


def test_free_cores_parses_this_machines_proc_stat():
    runtime._SAMPLE = None
    f = free_cores(0.02)
    assert 0.0 <= f <= len(runtime.allowed_cpus())


def test_explicit_settings_win_in_order(monkeypatch):
    _fake_stat(monkeypatch, [0.0, 0.0])
    assert explicit_threads() is None and auto_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads() == 3
    monkeypatch.setenv("MRFRECON_THREADS", "5")
    assert auto_threads() == 5
    set_threads(4)
    assert auto_threads() == 4
    set_threads(None)
    monkeypatch.delenv("MRFRECON_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(runtime._TORCH_AT_IMPORT + 1)  # the user's torch.set_num_threads
    assert auto_threads() == runtime._TORCH_AT_IMPORT + 1
    with pytest.raises(MrfreconError, match="MRFRECON_THREADS"):
        monkeypatch.setenv("MRFRECON_THREADS", "zero")
        auto_threads()


def test_thread_policy_sets_and_restores_and_nests(monkeypatch):
    _fake_stat(monkeypatch, [1.0, 0.0])
    before = torch.get_num_threads()
    with thread_policy() as n:
        assert n == 1 and torch.get_num_threads() == 1
        with thread_policy() as inner:  # an entry point calling another keeps the outer choice
            assert inner == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert explicit_threads() is None  # the policy never looks like a user's setting afterwards
    with thread_policy(small=True) as n:
        assert n == 1
    with thread_policy(split=True) as n:  # pieces on workers: every core, one torch thread in the caller
        assert n == 2 and torch.get_num_threads() == 1
    set_threads(1)
    with thread_policy(split=True) as n:
        assert n == 1


def test_parallel_map_keeps_order_uses_workers_and_one_torch_thread_each():
    seen = set()
    counts = set()

    def f(x):
        time.sleep(0.002)  # long enough that both workers take items
        seen.add(threading.get_ident())
        counts.add(torch.get_num_threads())
        return (torch.arange(1000.0) * x).sum().item()

    before = torch.get_num_threads()
    got = parallel_map(f, range(40), 2)
    assert len(seen) == 2
    assert got == [float(np.arange(1000.0).sum() * x) for x in range(40)]
    assert counts == {1} and torch.get_num_threads() == before
    assert parallel_map(f, [3], 4) == [f(3)]  # one item: in the caller


def test_split_range_covers_everything_once():
    for n, chunk, w in ((10, 4, 1), (10_000, 8192, 2), (7, 100, 3), (0, 5, 2)):
        parts = split_range(n, chunk, w)
        covered = np.concatenate([np.arange(s.start, s.stop) for s in parts]) if parts else np.array([])
        assert np.array_equal(covered, np.arange(n))
        assert all(s.stop - s.start <= chunk for s in parts)
    assert len(split_range(10_000, 8192, 2)) >= 8  # several pieces per worker


def test_missing_device_is_one_clear_error(monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(MrfreconError, match="no usable CUDA device"):
            default_device("cuda")
        monkeypatch.setenv("MRFRECON_DEVICE", "cuda:0")
        with pytest.raises(MrfreconError, match="MRFRECON_DEVICE"):
            default_device()
        monkeypatch.delenv("MRFRECON_DEVICE")
    with pytest.raises(MrfreconError, match="not a torch device"):
        default_device("gpu-please")
    assert default_device("cpu").type == "cpu"


def test_cli_device_without_cuda_and_threads_option():
    from click.testing import CliRunner

    from mrfrecon.cli import cli

    r = CliRunner().invoke(cli, ["--device", "cuda", "sequence", "show"])
    if not torch.cuda.is_available():
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "no usable CUDA device" in lines[0] and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["--threads", "0", "sequence", "show"])
    assert r.exit_code == 2 and "--threads" in r.output
    r = CliRunner().invoke(cli, ["--threads", "1", "sequence", "show"])
    assert r.exit_code == 0 and explicit_threads() == 1
