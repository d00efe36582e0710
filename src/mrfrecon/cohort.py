"""Simulated MRF-WF cohorts: maps → k-space → view-shared frames → scan files with references.

:func:`acquire` takes tissue maps (a phantom's or a patient's) through the paper's acquisition and
reconstruction (Balsiger et al., MIDL 2019, sec. 2.1): per-spoke water–fat signals (the Bloch
model of :mod:`mrfrecon.physics`), radial golden-angle k-space with noise, and KWIC view sharing
(55 spokes per 8-spoke frame) → an image series ``(slices, frames, y, x)``.

:func:`simulate_cohort` makes a whole cohort: leg and thigh phantoms with neuromuscular
pathology, their series, reference maps by two-component dictionary matching (as the paper's
references were made), and an index with the train/validation/test split. It is resumable:
finished scans are kept (every file is written under a temporary name and renamed when
complete, so a half-written scan never looks finished), and the same seed gives identical files.
"""

from __future__ import annotations

import functools
import hashlib
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
from .dictionary import Dictionary
from .errors import MrfreconError
from .io.cohort import CohortIndex, split_counts
from .io.scan import MAP_NAMES, Scan, load_scan, save_scan
from .matching import match
from .physics import simulate, simulate_projected
from .presets import load_preset
from .sequence import Sequence

_RANGES = {"t1h2o": (0.0, np.inf), "t1fat": (0.0, np.inf), "b1": (0.0, np.inf), "ff": (0.0, 1.0), "pd": (0.0, np.inf)}


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
    for k, (lo, hi) in _RANGES.items():
        vals = out[k][fg] if k != "pd" else out[k]
        bad = (vals < lo) | (vals > hi) | ((vals <= 0) if k in ("t1h2o", "t1fat", "b1") else False)
        if np.any(bad):
            raise MrfreconError(f"maps/{k}: value {vals[bad].flat[0]:g} outside its physical range in the foreground")
    assert shape is not None
    return out, shape  # type: ignore[return-value]


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
    info: dict[str, Any] | None = None,
) -> np.ndarray:
    """Simulate the acquisition and view-sharing reconstruction of tissue maps.

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
    info
        If given, filled with the rank and error of the temporal basis, the noise SD and the
        seconds spent per stage (``seconds``: signals, kspace, kwic).

    Returns
    -------
    numpy.ndarray
        complex64 ``(slices, frames, y, x)``.
    """
    t_start = time.perf_counter()
    m, (n_slices, ny, nx) = _check_maps(maps)
    if ny != nx:
        raise MrfreconError(f"maps: expected square slices (y == x) for the radial acquisition, got {ny} × {nx}")
    fg = m["pd"] > 0
    if not fg.any():
        raise MrfreconError("maps/pd: no voxel has signal (pd > 0 nowhere)")
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
    if info is not None:
        info.update(basis_rank=int(k), basis_error=float(err_sub), basis_voxels=int(sub.size), snr=float(snr), kspace_noise_std=noise_std, coils=int(coils), window=int(window),
                    oversampling=int(oversampling),
                    seconds={"signals": t_signals - t_start, "kspace": t_kspace - t_signals,
                             "kwic": time.perf_counter() - t_kspace})
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
    series = acquire(sequence, ph.maps, seed=seed, snr=float(cfg["snr"]), coils=int(cfg.get("coils", 1)),
                     window=int(cfg.get("window", 55)), info=info)
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


def _is_complete(path: Path) -> bool:
    try:
        load_scan(path, series=False)
        return True
    except MrfreconError:
        return False


@functools.lru_cache(maxsize=2)
def _dictionary(path: str) -> Dictionary:
    """The reference dictionary, loaded (and its matching precomputation made) once per process."""
    return Dictionary.load(path)


def _pool_init() -> None:
    import torch

    torch.set_num_threads(1)  # one subject per worker process: more threads would only fight


def _worker(args: tuple) -> str:
    subject, region, seed, cfg, seq_json, dict_path, out_path, storage = args
    seq = Sequence.from_json(seq_json)
    d = _dictionary(dict_path) if dict_path else None
    save_scan(out_path, simulate_scan(subject, region, seed, cfg, seq, d), storage=storage)
    return subject


def simulate_cohort(
    out: str | os.PathLike[str],
    *,
    preset: str = "tiny",
    subjects: int | None = None,
    seed: int = 0,
    workers: int = 1,
    reference: bool = True,
    overrides: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> CohortIndex:
    """Simulate (or finish simulating) a cohort in ``out`` and write its ``cohort.json``.

    Subjects alternate between thighs and legs; conditions are drawn per subject by the phantom
    model. Scans already present and complete are kept. Returns the cohort index.
    """
    cfg = dict(load_preset(preset)["cohort"])
    if overrides:
        cfg.update(overrides)
    n = int(subjects if subjects is not None else cfg["subjects"])
    if n < 1:
        raise MrfreconError(f"subjects: expected at least 1, got {n}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    seq = Sequence.mrf_wf(echo_spacing_ms=float(cfg.get("echo_spacing_ms", 1.11)))
    dict_path = root / "dictionary.h5"
    if reference:
        try:
            Dictionary.load(dict_path, seq)
        except MrfreconError:
            log(f"building the reference dictionary → {dict_path}")
            Dictionary.build(seq).save(dict_path)
    regions = list(cfg.get("regions", ["thigh", "leg"]))
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for i in range(n):
        sid = f"sub-{i:03d}"
        region = regions[i % len(regions)]
        s_seed = subject_seed(seed, i)
        fname = f"{sid}.h5"
        entries[sid] = {"file": fname, "region": region, "seed": s_seed}
        if not _is_complete(root / fname):
            jobs.append((sid, region, s_seed, cfg, seq.to_json(), str(dict_path) if reference else None,
                         str(root / fname), str(cfg.get("storage", "complex64"))))
    done = n - len(jobs)
    if done:
        log(f"{done} of {n} scans already complete in {root}")
    if progress:
        progress(done)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_pool_init) as pool:
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
    for sid, e in entries.items():
        light = load_scan(root / e["file"], series=False)
        e["condition"] = light.attrs.get("condition")
    rng = np.random.default_rng(seed)
    order = [f"sub-{i:03d}" for i in rng.permutation(n)]
    n_train, n_val, _ = split_counts(n)
    split = {"train": sorted(order[:n_train]), "val": sorted(order[n_train : n_train + n_val]),
             "test": sorted(order[n_train + n_val :])}
    index = CohortIndex(root, entries, split, attrs={"preset": preset, "seed": seed, "cohort": cfg,
                                                       "sequence": seq.name, "reference": reference})
    index.save()
    return index
