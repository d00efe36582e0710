"""Nothing mixes, nothing leaks: settings-checked resume, shards, the folder lock (two processes),
temporary files of a SIGKILLed writer, pool workers of a killed parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mrfrecon import MrfreconError
from mrfrecon.cohort import simulate_cohort
from mrfrecon.fs import FolderLock, remove_stale_temps
from mrfrecon.io import CohortIndex, load_scan

SMALL = {"matrix": 24, "slices": 1}
FAST = dict(preset="tiny", reference=False, overrides=SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def _child(code: str, *args: str) -> subprocess.Popen:
    """A Python child process running ``code`` (which prints ``ready`` when set up)."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = p.stdout.readline()
    assert line.strip() == "ready", line
    return p


def _kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)


def test_resume_refuses_other_settings_and_overwrite_replaces(tmp_path):
    simulate_cohort(tmp_path, subjects=2, seed=5, **FAST)
    before = _files(tmp_path)
    for kw, msg in [({"seed": 6}, "seed 5 (requested 6)"),
                    ({"seed": 5, "overrides": {**SMALL, "snr": 3.0}}, "snr 10.0 (requested 3.0)"),
                    ({"seed": 5, "reference": True}, "reference False (requested True)")]:
        with pytest.raises(MrfreconError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
            simulate_cohort(tmp_path, subjects=2, **{**FAST, **kw})
        assert "--overwrite" in str(e.value)
        assert _files(tmp_path) == before  # nothing written
    # the index is checked on its own too (a folder whose settings record is gone)
    (tmp_path / "cohort-settings.json").unlink()
    with pytest.raises(MrfreconError, match=r"cohort.json: made with other settings: seed 5 \(requested 6\)"):
        simulate_cohort(tmp_path, subjects=2, seed=6, **FAST)
    # a scan made with another seed is refused by itself (no record, no index)
    (tmp_path / "cohort.json").unlink()
    with pytest.raises(MrfreconError, match=r"sub-000.h5: made with other settings: seed 5 \(requested 6\)"):
        simulate_cohort(tmp_path, subjects=2, seed=6, **FAST)
    idx = simulate_cohort(tmp_path, subjects=2, seed=6, overwrite=True, **FAST)
    assert CohortIndex.load(tmp_path).attrs["seed"] == 6 and sorted(idx.subjects) == ["sub-000", "sub-001"]
    for sid in idx.subjects:
        assert load_scan(idx.path(sid), series=False).attrs["cohort_settings"]["seed"] == 6
    # the same request again resumes: nothing is redone
    after = _files(tmp_path)
    simulate_cohort(tmp_path, subjects=2, seed=6, **FAST)
    assert _files(tmp_path) == after


def test_shards_are_disjoint_and_the_last_writes_the_index(tmp_path):
    assert simulate_cohort(tmp_path, subjects=3, seed=1, shard="1/2", **FAST) is None
    assert sorted(p.name for p in tmp_path.glob("sub-*.h5")) == ["sub-000.h5", "sub-002.h5"]
    assert not (tmp_path / "cohort.json").exists()
    # a shard with other settings is refused: the shards of one folder agree
    with pytest.raises(MrfreconError, match=r"seed 1 \(requested 2\)"):
        simulate_cohort(tmp_path, subjects=3, seed=2, shard="2/2", **FAST)
    idx = simulate_cohort(tmp_path, subjects=3, seed=1, shard=(2, 2), **FAST)
    assert idx is not None and sorted(idx.subjects) == ["sub-000", "sub-001", "sub-002"]
    assert CohortIndex.load(tmp_path).attrs["seed"] == 1
    for bad in ("0/2", "3/2", "x", "1/0"):
        with pytest.raises(MrfreconError, match="--shard"):
            simulate_cohort(tmp_path, subjects=3, seed=1, shard=bad, **FAST)


LOCK_HOLDER = """
import sys, time
from mrfrecon.fs import FolderLock
lock = FolderLock(sys.argv[1], "cohort", shared=sys.argv[2] == "shared").acquire()
print("ready", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_with_the_first_pid(tmp_path):
    p = _child(LOCK_HOLDER, str(tmp_path), "exclusive")
    try:
        with pytest.raises(MrfreconError, match=rf"another mrfrecon process \(PID {p.pid}\) is writing this cohort"):
            simulate_cohort(tmp_path, subjects=1, seed=0, **FAST)
        with pytest.raises(MrfreconError, match=rf"PID {p.pid}"):  # a shard is refused too
            simulate_cohort(tmp_path, subjects=1, seed=0, shard="1/1", **FAST)
        assert not list(tmp_path.glob("sub-*"))
    finally:
        _kill(p)
    # the kernel released the lock of the killed process
    with FolderLock(tmp_path, "cohort"):
        pass


def test_shards_share_the_folder_but_exclude_a_whole_run(tmp_path):
    p = _child(LOCK_HOLDER, str(tmp_path), "shared")  # as a running shard holds it
    try:
        with pytest.raises(MrfreconError, match=rf"PID {p.pid}"):
            simulate_cohort(tmp_path, subjects=2, seed=0, **FAST)
        assert simulate_cohort(tmp_path, subjects=2, seed=0, shard="2/2", **FAST) is None
        assert [p.name for p in tmp_path.glob("sub-*.h5")] == ["sub-001.h5"]
    finally:
        _kill(p)


def test_training_run_folder_is_locked(tmp_path):
    from mrfrecon.training import train

    run = tmp_path / "run"
    p = _child(LOCK_HOLDER.replace('"cohort"', '"training run"'), str(run), "exclusive")
    try:
        with pytest.raises(MrfreconError, match=rf"PID {p.pid}\) is writing this training run"):
            train("cohen2018", tmp_path / "no-cohort", run, preset="tiny", log=None)
    finally:
        _kill(p)


HALF_WRITTEN = """
import sys, time
import numpy as np
from mrfrecon.io import atomic_h5
with atomic_h5(sys.argv[1] + "/sub-000.h5") as f:
    f.create_dataset("series", data=np.zeros((64, 64), np.complex64))
    f.flush()
    print("ready", flush=True)
    time.sleep(120)
"""


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next_run(tmp_path):
    p = _child(HALF_WRITTEN, str(tmp_path))
    live = list(tmp_path.glob(".sub-000.h5.*.tmp"))
    assert len(live) == 1
    assert remove_stale_temps(tmp_path) == [] and live[0].exists()  # a live writer's file stays
    _kill(p)
    assert live[0].exists() and not (tmp_path / "sub-000.h5").exists()
    simulate_cohort(tmp_path, subjects=1, seed=0, **FAST)
    assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "sub-000.h5").is_file()


def test_a_dictionary_build_removes_the_temporary_file_of_a_killed_build(tmp_path):
    from mrfrecon import Sequence
    from mrfrecon.dictionary import Dictionary, Grid

    p = _child(HALF_WRITTEN.replace("sub-000.h5", "d.h5"), str(tmp_path))
    _kill(p)
    assert len(list(tmp_path.glob(".d.h5.*.tmp"))) == 1
    grid = Grid.from_spec({"t1h2o_ms": {"values": [900, 1000]}, "t1fat_ms": {"values": [350]}, "b1": {"values": [1.0]},
                           "df_hz": {"values": [0]}})
    Dictionary.build(Sequence.mrf_wf(), grid).save(tmp_path / "d.h5")
    assert not list(tmp_path.glob(".*.tmp"))


POOL_PARENT = """
import sys
from mrfrecon.cohort import simulate_cohort
print("ready", flush=True)
simulate_cohort(sys.argv[1], preset="tiny", subjects=4, seed=0, workers=2, reference=False,
                overrides={"matrix": 48, "slices": 2})
"""


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path):
    p = _child(POOL_PARENT, str(tmp_path))
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = _children(p.pid)
    assert len(workers) >= 2, "the pool did not start"
    _kill(p)
    deadline = time.monotonic() + 10
    alive = workers
    while time.monotonic() < deadline and alive:
        time.sleep(0.2)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"workers {alive} outlived their parent"


@pytest.mark.parametrize("dataset", ["series", "reference/ff", "masks/foreground"])
def test_a_flipped_byte_is_a_checksum_error_naming_the_dataset(tmp_path, dataset):
    import h5py
    import numpy as np

    from mrfrecon import Sequence
    from mrfrecon.io import Scan, save_scan

    seq = Sequence.mrf_wf()
    rng = np.random.default_rng(0)
    series = (rng.normal(size=(1, seq.frames, 8, 8)) + 1j * rng.normal(size=(1, seq.frames, 8, 8))).astype(np.complex64)
    fg = np.ones((1, 8, 8), bool)
    path = save_scan(tmp_path / "s.h5", Scan(series=series, foreground=fg, sequence=seq,
                                             reference={"ff": rng.uniform(0, 1, (1, 8, 8))}))
    load_scan(path)
    with h5py.File(path) as f:
        assert all(f[k].fletcher32 for k in ("series", "reference/ff", "masks/foreground"))
        info = f[dataset].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + info.size // 2] ^= 0x01  # one bit, in the middle of the first chunk
    path.write_bytes(bytes(raw))
    with pytest.raises(MrfreconError, match=f"s.h5: {dataset}: checksum mismatch"):
        load_scan(path)


def test_memory_is_checked_before_a_large_dictionary(monkeypatch):
    import mrfrecon.limits as limits
    from mrfrecon import Sequence
    from mrfrecon.dictionary import Dictionary, Grid

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2**26)  # a 64 MiB machine
    # 49,125 atoms × 175 frames × 8 B × 3 (atoms, normalized copy, concatenation) + amplitudes: 0.21 GiB
    with pytest.raises(MrfreconError, match=r"49,125 atoms × 175 frames: needs about 0\.2 GiB of memory, but only 0\.1 GiB"):
        Dictionary.build(Sequence.mrf_wf(), Grid.clinical())
    with pytest.raises(MrfreconError, match="more than the limit of 500,000,000 atom-frames"):
        Dictionary.build(Sequence.mrf_wf(), Grid.from_spec({"t1h2o_ms": {"ranges": [[100, 5000, 1]]},
                                                            "df_hz": {"ranges": [[-500, 500, 5]]}}))
