"""Simulated MRF-WF cohorts: maps → k-space → view-shared frames → scan files with references.

:func:`acquire` takes tissue maps (a phantom's or a patient's) through the paper's acquisition and
reconstruction (Balsiger et al., MIDL 2019, sec. 2.1): per-spoke water–fat signals (the Bloch
model of :mod:`mrfrecon.physics`), radial golden-angle k-space with noise, and KWIC view sharing
(55 spokes per 8-spoke frame), optionally followed by compressed sensing with total variation
(``recon="kwic-tv"``, :mod:`mrfrecon.acquisition.cstv`) → an image series ``(slices, frames, y, x)``.

:func:`simulate_cohort` makes a whole cohort: leg and thigh phantoms with neuromuscular
pathology, their series, reference maps by two-component dictionary matching (as the paper's
references were made), and an index with the train/validation/test split. It is resumable:
finished scans are kept (every file is written under a temporary name and renamed when
complete, so a half-written scan never looks finished), and the same seed gives identical files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .acquisition import (
    coil_sensitivities,
    image_noise_std,
    kwic_reconstruct,
    kwic_weights,
    lowrank_series,
    radial_trajectory,
    simulate_kspace,
)
from .acquisition.cstv import RECONS, CsTvOptions, cstv_reconstruct
from .dictionary import Dictionary
from .errors import MrfreconError
from .atomic import atomic_write_text
from .limits import check_map, check_memory
from .fs import FolderLock, pid_alive, remove_stale_temps
from .io.cohort import INDEX_NAME, CohortIndex, split_counts
from .io.scan import MAP_NAMES, Scan, load_scan, save_scan
from .matching import match
from .physics import simulate, simulate_projected
from .presets import load_preset
from .runtime import with_thread_policy
from .sequence import Sequence



def _check_maps(maps: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    missing = [k for k in MAP_NAMES if k not in maps]
    if missing:
        raise MrfreconError(f"maps: missing {', '.join(missing)} (need {', '.join(MAP_NAMES)})")
    out = {}
    shape = None
    for k in MAP_NAMES:
        v = np.asarray(maps[k], dtype=np.float64)
        if v.ndim == 2:
            v = v[None]
        if v.ndim != 3:
            raise MrfreconError(f"maps/{k}: expected (y, x) or (slices, y, x), got shape {np.shape(maps[k])}")
        if shape is None:
            shape = v.shape
        if v.shape != shape:
            raise MrfreconError(f"maps/{k}: shape {v.shape} differs from maps/{MAP_NAMES[0]} {shape}")
        if not np.isfinite(v).all():
            raise MrfreconError(f"maps/{k}: contains NaN or infinite values")
        out[k] = v
    fg = out["pd"] > 0
    for k in MAP_NAMES:  # the physical ranges of mrfrecon.limits, inside the foreground (pd everywhere)
        check_map(k, out[k], f"maps/{k}", None if k == "pd" else fg)
    assert shape is not None
    return out, shape  # type: ignore[return-value]


@with_thread_policy
def acquire(
    sequence: Sequence,
    maps: Mapping[str, Any],
    *,
    seed: int,
    snr: float = 30.0,
    coils: int = 1,
    window: int = 55,
    oversampling: int = 2,
    basis_energy: float = 0.9999,
    chunk: int = 8192,
    recon: str = "kwic",
    tv: CsTvOptions | None = None,
    info: dict[str, Any] | None = None,
) -> np.ndarray:
    """Simulate the acquisition and frame reconstruction of tissue maps.

    Parameters
    ----------
    sequence
        The MRF sequence (spokes, frames, golden-angle increment).
    maps
        ``t1h2o`` (ms), ``ff`` (0-1), ``b1`` (a.u.), ``df`` (Hz), ``t1fat`` (ms), ``pd`` (≥ 0; 0 means no
        signal), each ``(y, x)`` or ``(slices, y, x)``; pixels of the reconstructed image.
    seed
        Seed of the noise (and of nothing else): the same seed gives the same series.
    snr
        Image-domain SNR of the reconstructed frames: the mean magnitude of the noiseless frame
        signal over foreground voxels and frames, divided by the SD of the complex noise in a
        frame (averaged over frames; the k-space noise SD follows from the KWIC density
        compensation, :func:`~mrfrecon.acquisition.image_noise_std`). Independent of the matrix
        size. ``inf`` for no noise. Undersampling artefacts come on top of it.
    coils
        Number of receive coils (synthetic birdcage sensitivities, Roemer combination).
    window
        KWIC view-sharing window in spokes (55 in the paper).
    oversampling
        Readout oversampling of the radial spokes (2: 700 samples for a 350 matrix).
    basis_energy
        Energy of the per-spoke signal evolutions kept by the temporal basis that makes each
        spoke a handful of NUFFTs (its relative error, measured on the up to 8000 evenly strided
        voxels the basis is computed from, is reported in ``info``).
    chunk
        Voxels simulated per batch (bounds memory to ``chunk × spokes × 24`` bytes).
    recon
        ``"kwic"`` (view sharing only) or ``"kwic-tv"`` (KWIC followed by compressed sensing
        with total variation in a temporal subspace, as the paper's series were made:
        :mod:`mrfrecon.acquisition.cstv`).
    tv
        Settings of ``"kwic-tv"`` (:class:`~mrfrecon.acquisition.cstv.CsTvOptions`; default ones
        if None).
    info
        If given, filled with the rank and error of the temporal basis, the noise SD and the
        seconds spent per stage (``seconds``: signals, kspace, kwic).

    Returns
    -------
    numpy.ndarray
        complex64 ``(slices, frames, y, x)``.
    """
    t_start = time.perf_counter()
    if recon not in RECONS:
        raise MrfreconError(f"recon: expected one of {', '.join(RECONS)}, got {recon!r}")
    tv_opts = (tv if tv is not None else CsTvOptions()) if recon == "kwic-tv" else None
    m, (n_slices, ny, nx) = _check_maps(maps)
    if ny != nx:
        raise MrfreconError(f"maps: expected square slices (y == x) for the radial acquisition, got {ny} × {nx}")
    fg = m["pd"] > 0
    if not fg.any():
        raise MrfreconError("maps/pd: no voxel has signal (pd > 0 nowhere)")
    if not (1 <= coils <= 64 and 1 <= window <= sequence.spokes and 1 <= oversampling <= 4 and snr > 0):  # NaN SNR fails too
        raise MrfreconError(f"acquisition: expected 1-64 coils, a window of 1-{sequence.spokes} spokes, oversampling 1-4 "
                            f"and an SNR > 0, got {coils}, {window}, {oversampling}, {snr}")
    # the series, its coefficient images and the frames being reconstructed (complex64), the k-space
    # of every coil and spoke, and one batch of per-spoke signals (complex128)
    check_memory(8 * (3 * n_slices * sequence.frames * ny * nx + n_slices * coils * sequence.spokes * oversampling * nx)
                 + 16 * chunk * sequence.spokes, f"acquisition of {n_slices} × {ny}² voxels × {sequence.spokes} spokes")
    idx = np.flatnonzero(fg)
    params = {k: m[k].reshape(-1)[idx] for k in MAP_NAMES}

    def spokes_of(sel: np.ndarray) -> np.ndarray:
        return simulate(sequence, params["t1h2o"][sel], params["t1fat"][sel], params["b1"][sel], params["df"][sel],
                        params["ff"][sel], params["pd"][sel], per_spoke=True, chunk=chunk)

    # temporal basis, its error and the signal level from an evenly strided subset (the signal
    # subspace needs far fewer voxels than a scan holds); then every voxel's coefficients
    # directly, without forming its per-spoke signal
    sub = np.arange(0, idx.size, max(1, idx.size // 8000))
    x_sub = spokes_of(sub)
    basis, _, err_sub = lowrank_series(x_sub, energy=basis_energy, return_error=True)
    frame_mag = float(np.abs(sequence.frame_mean(x_sub)).mean())
    del x_sub
    k = basis.shape[1]
    coeffs = np.zeros((n_slices * ny * nx, k), dtype=np.complex64)
    # basis columns are conj(v): the coefficients are X @ v
    coeffs[idx] = simulate_projected(sequence, basis.conj(), *(params[n] for n in ("t1h2o", "t1fat", "b1", "df", "ff", "pd")),
                                     chunk=chunk)
    coeff_img = np.ascontiguousarray(coeffs.reshape(n_slices, ny, nx, k).transpose(0, 3, 1, 2))
    t_signals = time.perf_counter()
    traj = radial_trajectory(sequence, matrix=nx, oversampling=oversampling)
    sens = coil_sensitivities(coils, nx, seed=seed) if coils > 1 else None
    weights = kwic_weights(traj, sequence, window)
    noise_std = None if np.isinf(snr) else frame_mag / snr / float(image_noise_std(1.0, weights).mean())
    ksp = simulate_kspace(coeff_img, basis, traj, coils=sens, noise_std=noise_std, rng=np.random.default_rng(seed))
    t_kspace = time.perf_counter()
    # one thread: finufft's multithreaded spreading adds sub-grids in a varying order, which
    # changes the last bits; reproducible files need a fixed order (use workers for parallelism)
    series = kwic_reconstruct(ksp, traj, sequence, coils=sens, matrix=nx, weights=weights, nthreads=1)
    t_kwic = time.perf_counter()
    tv_info: dict[str, Any] = {"recon": recon}
    if tv_opts is not None:
        series = cstv_reconstruct(ksp, traj, sequence, options=tv_opts, coils=sens, start=series, nthreads=1,
                                  info=tv_info)
    if info is not None:
        info.update(basis_rank=int(k), basis_error=float(err_sub), basis_voxels=int(sub.size), snr=float(snr), kspace_noise_std=noise_std, coils=int(coils), window=int(window),
                    oversampling=int(oversampling),
                    **tv_info,
                    seconds={"signals": t_signals - t_start, "kspace": t_kspace - t_signals,
                             "kwic": t_kwic - t_kspace, "cstv": time.perf_counter() - t_kwic})
    return series


def reference_maps(series: np.ndarray, foreground: np.ndarray, dictionary: Dictionary, *,
                   keys: tuple[str, ...] = (*MAP_NAMES, "residual"), **kw) -> dict[str, np.ndarray]:
    """Two-component matching of the foreground voxels of ``series (slices, frames, y, x)``;
    maps ``(slices, y, x)`` of ``keys`` (any of :func:`~mrfrecon.matching.match`'s outputs) with 0
    outside the foreground (``residual`` 1, ``valid`` False there); ``kw`` go to ``match``."""
    fp = np.moveaxis(series, 1, -1)[foreground]
    got = match(fp, dictionary, **kw)
    out = {}
    for k in keys:
        full = np.zeros(foreground.shape, got[k].dtype) if k != "residual" else np.ones(foreground.shape, np.float32)
        full[foreground] = got[k]
        out[k] = full
    return out


def recon_options(cfg: Mapping[str, Any]) -> tuple[str, CsTvOptions | None]:
    """The frame reconstruction of a cohort configuration: ``recon`` (default ``"kwic"``) and,
    for ``"kwic-tv"``, its options from ``tv_weight``, ``tv_iterations``, ``tv_tol``, ``tv_rank``
    (validated: a bad value raises :class:`MrfreconError` naming the key)."""
    recon = cfg.get("recon", "kwic")
    if recon not in RECONS:
        raise MrfreconError(f"recon: expected one of {', '.join(RECONS)}, got {recon!r}")
    if recon != "kwic-tv":
        return recon, None
    d = CsTvOptions()
    return recon, CsTvOptions(weight=cfg.get("tv_weight", d.weight), iterations=cfg.get("tv_iterations", d.iterations),
                              tol=cfg.get("tv_tol", d.tol), rank=cfg.get("tv_rank", d.rank))


def subject_seed(cohort_seed: int, index: int) -> int:
    """A per-subject seed, stable across runs and independent of how many subjects are made."""
    h = hashlib.sha256(f"mrfrecon-cohort-{cohort_seed}-{index}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def simulate_scan(
    subject: str,
    region: str,
    seed: int,
    cfg: Mapping[str, Any],
    sequence: Sequence,
    dictionary: Dictionary | None,
) -> Scan:
    """One simulated scan: a phantom, its acquisition and (with a dictionary) its reference maps."""
    from .phantoms import make_phantom

    ph = make_phantom(region, seed=seed, matrix=int(cfg["matrix"]), fov_mm=float(cfg["fov_mm"]), slices=int(cfg["slices"]))
    info: dict[str, Any] = {}
    recon, tv = recon_options(cfg)
    series = acquire(sequence, ph.maps, seed=seed, snr=float(cfg["snr"]), coils=int(cfg.get("coils", 1)),
                     window=int(cfg.get("window", 55)), recon=recon, tv=tv, info=info)
    info.pop("seconds")  # no timings in the file: the same seed must give identical files
    reference: dict[str, np.ndarray] = {}
    if dictionary is not None:
        reference = reference_maps(series, ph.foreground, dictionary)
    attrs = {
        "subject": subject, "region": region, "condition": ph.condition, "seed": seed,
        "phantom": ph.attrs, "simulation": {**{k: v for k, v in cfg.items() if not isinstance(v, list)}, **info},
        "fov_mm": float(cfg["fov_mm"]), "voxel_mm": [float(cfg["fov_mm"]) / int(cfg["matrix"])] * 2 + [8.0],
        "mrfrecon_version": __version__,
    }
    return Scan(series=series, foreground=ph.foreground, sequence=sequence, maps={k: ph.maps[k] for k in MAP_NAMES},
                reference=reference, labels=ph.labels, label_names=ph.label_names, attrs=attrs)


def _complete_scan(path: Path) -> Scan | None:
    """The scan at ``path`` without its series if it is a complete, valid scan file, else None."""
    try:
        return load_scan(path, series=False)
    except MrfreconError:
        return None


#: Keys of a preset's cohort section that describe the folder, not a scan: recorded in the
#: index, never compared (older records hold the preset's count there, whatever was simulated).
_FOLDER_KEYS = ("subjects",)


def _scan_differences(light: Scan, want: Mapping[str, Any]) -> list[str]:
    """What differs between a scan already in the folder and what this run would simulate
    (``want``: subject seed, region, settings, reference, version); [] when it can be kept."""
    a = light.attrs
    out = []
    got_settings = a.get("cohort_settings") or {}
    if a.get("seed") != want["seed"]:
        if "seed" in got_settings:
            out.append(f"seed {got_settings['seed']} (requested {want['settings']['seed']})")
        else:
            out.append(f"subject seed {a.get('seed')} (requested {want['seed']})")
    if a.get("region") != want["region"]:
        out.append(f"region {a.get('region')} (requested {want['region']})")
    if a.get("mrfrecon_version") != __version__:
        out.append(f"mrfrecon {a.get('mrfrecon_version')} (this is {__version__})")
    # the request recorded with the scan; a scan of an older mrfrecon only has its simulation
    # attributes (the cohort settings without lists, plus what the acquisition reports)
    recorded = got_settings.get("cohort")
    sim = recorded if isinstance(recorded, dict) else (a.get("simulation") or {})
    for k, v in want["settings"]["cohort"].items():
        if (recorded is not None or not isinstance(v, list)) and sim.get(k) != v:
            out.append(f"{k} {sim.get(k)!r} (requested {v!r})")
    if isinstance(recorded, dict):
        out += [f"{k} {recorded[k]!r} (requested none)"
                for k in sorted(set(recorded) - set(want["settings"]["cohort"]) - set(_FOLDER_KEYS))]
    if "preset" in got_settings and got_settings["preset"] != want["settings"]["preset"] and not out:
        out.append(f"preset {got_settings['preset']} (requested {want['settings']['preset']})")
    if bool(light.reference) != bool(want["settings"]["reference"]):
        out.append("reference maps " + ("present (requested none)" if light.reference else "missing (requested)"))
    return out


def _settings_differences(got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Differences between two cohort settings records (see :func:`simulate_cohort`)."""
    out = []
    for k in ("preset", "seed", "reference", "mrfrecon_version"):
        if got.get(k) != want.get(k):
            out.append(f"{k} {got.get(k)!r} (requested {want.get(k)!r})")
    gc, wc = got.get("cohort") or {}, want.get("cohort") or {}
    for k in sorted((set(gc) | set(wc)) - set(_FOLDER_KEYS)):
        if gc.get(k) != wc.get(k):
            out.append(f"{k} {gc.get(k)!r} (requested {wc.get(k)!r})")
    return out


def _refuse(where: Path, diffs: list[str]) -> MrfreconError:
    return MrfreconError(f"{where}: made with other settings: {'; '.join(diffs)}; "
                         f"pass --overwrite to replace it, or choose another --out")


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"K/N"`` → ``(K, N)`` with 1 ≤ K ≤ N (None stays None)."""
    if text is None or isinstance(text, tuple):
        k_n = text
    else:
        try:
            k, n = (int(x) for x in str(text).split("/"))
            k_n = (k, n)
        except ValueError:
            raise MrfreconError(f"--shard: expected K/N (e.g. 2/8), got {text!r}") from None
    if k_n is not None and not 1 <= k_n[0] <= k_n[1]:
        raise MrfreconError(f"--shard: expected K/N with 1 ≤ K ≤ N, got {k_n[0]}/{k_n[1]}")
    return k_n


@functools.lru_cache(maxsize=2)
def _dictionary(path: str) -> Dictionary:
    """The reference dictionary, loaded (and its matching precomputation made) once per process."""
    return Dictionary.load(path)


def _pool_init(parent_pid: int) -> None:
    import threading

    import torch

    torch.set_num_threads(1)  # one subject per worker process: more threads would only fight
    # a worker must not outlive its parent (a killed `simulate` would leave workers running for
    # minutes, writing scans nobody waits for): a daemon thread checks for the parent twice a second
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="mrfrecon-parent-watch").start()


def _exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    while True:
        time.sleep(interval_s)
        if not pid_alive(parent_pid) or os.getppid() == 1:
            os._exit(1)


def _worker(args: tuple) -> str:
    subject, region, seed, cfg, seq_json, dict_path, out_path, storage, settings = args
    seq = Sequence.from_json(seq_json)
    d = _dictionary(dict_path) if dict_path else None
    scan = simulate_scan(subject, region, seed, cfg, seq, d)
    scan.attrs["cohort_settings"] = settings  # what a resumed run compares with (see _scan_differences)
    save_scan(out_path, scan, storage=storage)
    return subject


SETTINGS_NAME = "cohort-settings.json"
_INDEX_LOCK = ".mrfrecon-index.lock"


def simulate_cohort(
    out: str | os.PathLike[str],
    *,
    preset: str = "tiny",
    subjects: int | None = None,
    seed: int = 0,
    workers: int = 1,
    reference: bool = True,
    overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] | str | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> CohortIndex | None:
    """Simulate (or finish simulating) a cohort in ``out`` and write its ``cohort.json``.

    Subjects alternate between thighs and legs; conditions are drawn per subject by the phantom
    model. A scan already in the folder is kept only when it is complete and was made with the same
    subject seed, settings, reference choice and mrfrecon version; otherwise the run refuses before
    writing anything and says what differs, unless ``overwrite`` (then such scans are replaced).
    The folder's settings (``cohort-settings.json``) and index are checked the same way.

    One process writes a folder at a time (an OS-level lock; a second is refused with the first's
    PID), except shards: ``shard=(K, N)`` simulates only subjects ``i`` with ``i % N == K - 1``
    (disjoint, deterministic sets), and any number of shards may run at once into one folder; the
    index is written by whichever run finds every subject present and verified (the last shard, or
    a run without ``shard``). Returns the cohort index, or None when a shard leaves subjects to
    other shards.
    """
    cfg = dict(load_preset(preset)["cohort"])
    if overrides:
        cfg.update(overrides)
    recon_options(cfg)  # a bad reconstruction option fails before anything is written
    n = int(subjects if subjects is not None else cfg["subjects"])
    if not 1 <= n <= 100_000:
        raise MrfreconError(f"subjects: expected 1 to 100,000, got {n}")
    if seed < 0 or seed >= 2**63:
        raise MrfreconError(f"seed: expected an integer in [0, 2^63), got {seed}")
    if workers < 1:
        raise MrfreconError(f"workers: expected at least 1, got {workers}")
    k_n = parse_shard(shard)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise MrfreconError(f"{root}: exists and is not a folder (--out names the cohort folder)")
    root.mkdir(parents=True, exist_ok=True)
    seq = Sequence.mrf_wf(echo_spacing_ms=float(cfg.get("echo_spacing_ms", 1.11)))
    # how many subjects the folder holds is not a setting of any scan (the index records it): a
    # cohort can grow, and its scans keep their per-subject seeds
    cfg = {k: v for k, v in cfg.items() if k not in _FOLDER_KEYS}
    settings = {"preset": preset, "seed": int(seed), "reference": bool(reference), "cohort": cfg,
                "sequence_digest": seq.digest(), "mrfrecon_version": __version__}
    # whole-cohort runs exclude everyone; shards exclude whole-cohort runs and the same shard
    folder_lock = FolderLock(root, "cohort", shared=k_n is not None)
    shard_lock = FolderLock(root, f"shard {k_n[0]}/{k_n[1]} of the cohort", name=f".mrfrecon-shard-{k_n[0]}-of-{k_n[1]}.lock") \
        if k_n is not None else None
    with folder_lock, (shard_lock or contextlib.nullcontext()):
        removed = remove_stale_temps(root)  # only those of processes that are gone: shards may be writing
        if removed:
            log(f"removed {len(removed)} temporary file(s) left by an interrupted run")
        return _simulate_locked(root, n, seq, cfg, settings, workers, reference, overwrite, k_n, progress, log)


def _simulate_locked(root: Path, n: int, seq: Sequence, cfg: dict[str, Any], settings: dict[str, Any], workers: int,
                     reference: bool, overwrite: bool, k_n: tuple[int, int] | None,
                     progress: Callable[[int], None] | None, log: Callable[[str], None]) -> CohortIndex | None:
    seed = settings["seed"]
    dict_path = root / "dictionary.h5"
    regions = list(cfg.get("regions", ["thigh", "leg"]))
    entries: dict[str, dict[str, Any]] = {}
    wanted: dict[str, dict[str, Any]] = {}
    for i in range(n):
        sid = f"sub-{i:03d}"
        entries[sid] = {"file": f"{sid}.h5", "region": regions[i % len(regions)], "seed": subject_seed(seed, i)}
        wanted[sid] = {"seed": entries[sid]["seed"], "region": entries[sid]["region"], "settings": settings}
    mine = [f"sub-{i:03d}" for i in range(n) if k_n is None or i % k_n[1] == k_n[0] - 1]
    # settings first, under the index lock (shards starting together agree on one record)
    with FolderLock(root, "cohort index", name=_INDEX_LOCK, blocking=True):
        _check_folder_settings(root, settings, overwrite)
        jobs = []
        for sid in mine:
            path = root / entries[sid]["file"]
            light = _complete_scan(path)
            if light is not None:
                diffs = _scan_differences(light, wanted[sid])
                if not diffs:
                    continue
                if not overwrite:
                    raise _refuse(path, diffs)
            jobs.append((sid, entries[sid]["region"], entries[sid]["seed"], cfg, seq.to_json(),
                         str(dict_path) if reference else None, str(path), str(cfg.get("storage", "complex64")), settings))
        atomic_write_text(root / SETTINGS_NAME, json.dumps(settings, indent=1))
        if reference and jobs:
            try:
                Dictionary.load(dict_path, seq)
            except MrfreconError:
                log(f"building the reference dictionary → {dict_path}")
                Dictionary.build(seq).save(dict_path)
    done = len(mine) - len(jobs)
    if done:
        log(f"{done} of {len(mine)} scans already complete in {root}")
    if progress:
        progress(done)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_pool_init, initargs=(os.getpid(),)) as pool:
            for _ in pool.map(_worker, jobs):
                done += 1
                if progress:
                    progress(done)
    else:
        for job in jobs:
            _worker(job)
            done += 1
            if progress:
                progress(done)
    with FolderLock(root, "cohort index", name=_INDEX_LOCK, blocking=True):
        missing = []
        for sid, e in entries.items():
            light = _complete_scan(root / e["file"])
            if light is None or _scan_differences(light, wanted[sid]):
                missing.append(sid)
                continue
            e["condition"] = light.attrs.get("condition")
        if missing:
            if k_n is None:  # cannot happen unless another process replaced files under us
                raise MrfreconError(f"{root}: {', '.join(missing[:5])} not complete or changed by another process")
            log(f"shard {k_n[0]}/{k_n[1]} done; the index waits for {len(missing)} subject(s) of other shards")
            return None
        rng = np.random.default_rng(seed)
        order = [f"sub-{i:03d}" for i in rng.permutation(n)]
        n_train, n_val, _ = split_counts(n)
        split = {"train": sorted(order[:n_train]), "val": sorted(order[n_train : n_train + n_val]),
                 "test": sorted(order[n_train + n_val :])}
        index = CohortIndex(root, entries, split, attrs={"preset": settings["preset"], "seed": seed, "cohort": cfg, "subjects": n,
                                                           "sequence": seq.name, "reference": reference})
        index.save()
    return index


def _check_folder_settings(root: Path, settings: Mapping[str, Any], overwrite: bool) -> None:
    """Refuse a folder whose recorded settings or index were made with other settings."""
    if overwrite:
        return
    p = root / SETTINGS_NAME
    if p.exists():
        try:
            got = json.loads(p.read_text())
            if not isinstance(got, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise MrfreconError(f"{p}: unreadable; pass --overwrite to replace it") from None
        diffs = _settings_differences(got, settings)
        if diffs:
            raise _refuse(root, diffs)
    idx = root / INDEX_NAME
    if idx.exists():
        try:
            doc = json.loads(idx.read_text())
            attrs = dict(doc["attrs"])
            got = {"preset": attrs.get("preset"), "seed": attrs.get("seed"), "reference": attrs.get("reference"),
                   "cohort": attrs.get("cohort"), "mrfrecon_version": doc.get("mrfrecon_version")}
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise MrfreconError(f"{idx}: unreadable cohort index; pass --overwrite to replace it") from None
        want = {k: v for k, v in settings.items() if k in got}
        diffs = _settings_differences(got, want)
        if diffs:
            raise _refuse(idx, diffs)
