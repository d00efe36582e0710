"""The built-in demo (``mrfrecon demo`` / ``make demo``): the paper's comparison, end to end, on a CPU.

::

    mrfrecon demo --out demo-output            # demo preset: ≤ 15 min on a 2-core CPU

1. simulate the demo preset's cohort (phantoms → radial k-space → KWIC frames) and its reference
   maps by dictionary matching (``OUT/cohort``; reused when already there);
2. train the four networks briefly (proposed, Cohen 2018, Fang 2018, Balsiger 2018), on the
   reference maps and — with ``target="both"``, the default — also on the ground truth;
3. evaluate them on the test split against the reference maps and the ground truth, beside the
   trivial baselines — the constant, dictionary matching, matching smoothed inside the
   foreground (:func:`mrfrecon.experiments.compare.run_compare`);
4. print Table 1 and the path of ``OUT/report.md`` (tables, Figure 2, settings, timings).

The report also has a short section on dictionary matching of random fingerprints (the first
demo of this package: bias, SD and NRMSE against the truth, fast vs exhaustive matching);
``matching_only=True`` runs just that part (seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .dictionary import Dictionary
from .atomic import atomic_write_text
from .matching import match, match_indices_agree
from .physics import simulate
from .sequence import Sequence

__all__ = ["matching_demo", "run_demo", "tissue_sample"]


def tissue_sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random voxel parameters shaped like thigh patient maps (DESIGN.md): half muscle with
    FF mostly 0.05-0.5 and T1H2O 1000-1600 ms, half fatty tissue with FF 0.7-0.98; B1 0.45-0.95;
    Δf −40…90 Hz; fat T1 325-475 ms."""
    fatty = rng.random(n) < 0.5
    ff = np.where(fatty, rng.uniform(0.7, 0.98, n), np.clip(rng.lognormal(np.log(0.15), 0.7, n), 0.0, 0.65))
    return {
        "t1h2o": rng.uniform(1000.0, 1600.0, n),
        "t1fat": rng.uniform(325.0, 475.0, n),
        "b1": rng.uniform(0.45, 0.95, n),
        "df": rng.uniform(-40.0, 90.0, n),
        "ff": ff,
    }


def matching_demo(
    *,
    voxels: int = 5000,
    noise: float = 0.01,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    progress=None,
    heading: str = "#",
) -> tuple[dict[str, float], str]:
    """Clinical dictionary → ``voxels`` simulated noisy fingerprints of muscle-like tissue →
    two-component matching → bias, SD and NRMSE against the truth; fast matching timed against
    exhaustive matching on a subset. Returns (timings in s, the Markdown section)."""
    rng = np.random.default_rng(seed)
    seq = Sequence.mrf_wf()
    d = Dictionary.build(seq)
    echo(f"matching demo: {d.summary()} — built in {d.build_seconds:.2f} s")
    truth = tissue_sample(voxels, rng)
    x = simulate(seq, **truth)
    sd = noise * np.abs(x).mean()
    x = (x + sd * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) / np.sqrt(2)).astype(np.complex64)

    timings: dict[str, float] = {}
    match(x[:64], d)  # warm-up: the per-dictionary precomputation, timed apart
    t0 = time.perf_counter()
    if progress is not None:
        with progress(voxels, "matching (fast)") as cb:
            maps = match(x, d, progress=cb)
    else:
        maps = match(x, d)
    timings["fast_s"] = time.perf_counter() - t0
    n_exh = min(voxels, 200)
    t0 = time.perf_counter()
    exh = match(x[:n_exh], d, method="exhaustive")
    timings["exhaustive_s_per_voxel"] = (time.perf_counter() - t0) / n_exh
    agree = float(match_indices_agree({k: v[:n_exh] for k, v in maps.items()}, exh).mean())

    low_ff = truth["ff"] < 0.65
    rows = []
    for key, unit, mask in (("t1h2o", "ms", low_ff), ("ff", "", np.ones(voxels, bool)), ("b1", "", np.ones(voxels, bool)),
                            ("df", "Hz", np.ones(voxels, bool))):
        err = maps[key][mask] - truth[key][mask]
        ref = truth[key][mask]
        nrmse = np.sqrt(np.mean(err**2)) / (ref.max() - ref.min())
        rows.append(f"| {key}{' (' + unit + ')' if unit else ''} | {err.mean():+.4g} | {err.std():.4g} | {nrmse:.4f} |")
    per_voxel = timings["fast_s"] / voxels
    lines = [
        f"{heading} Dictionary matching of {voxels:,} simulated fingerprints",
        "",
        f"Random single fingerprints of muscle-like tissue (no images, no undersampling): noise SD {noise:g} × mean "
        f"|fingerprint|; seed {seed}. T1H2O evaluated where FF < 0.65 (as the paper).",
        "",
        "| map | bias | SD | NRMSE |",
        "|---|---|---|---|",
        *rows,
        "",
        f"- fast two-component matching: {timings['fast_s']:.2f} s ({per_voxel * 1e6:.0f} µs per voxel)",
        f"- exhaustive two-component: {timings['exhaustive_s_per_voxel'] * 1e6:.0f} µs per voxel "
        f"({timings['exhaustive_s_per_voxel'] / per_voxel:.0f}× slower); same atom pair on {100 * agree:.1f} % "
        f"of {n_exh} voxels",
        "- the paper's gridded-FF baseline (12.9 M atoms) is timed in benchmarks/bench_matching.py",
    ]
    return timings, "\n".join(lines) + "\n"


def run_demo(
    out: Path,
    *,
    preset: str = "demo",
    seed: int = 0,
    target: str = "both",
    voxels: int = 5000,
    noise: float = 0.01,
    matching_only: bool = False,
    workers: int = 1,
    echo: Callable[[str], None] = print,
    progress=None,
) -> dict[str, Any]:
    """Run the demo into ``out`` (module docstring) and print Table 1 and the report's path.

    ``preset``: the cohort and training preset (``demo``: ≤ 15 min on 2 CPU cores; ``tiny``:
    about a minute). ``target``: what the networks train on (``both``: reference and ground
    truth, side by side). ``voxels``, ``noise``: the matching section (``voxels=0`` leaves it
    out). ``matching_only``: only that section, written to ``out/demo_matching.md``.
    ``progress(total, description)``: a progress-bar context manager (:func:`mrfrecon.cli.progress`).
    Returns the timings (s) and, unless ``matching_only``, the comparison's result.
    """
    out = Path(out)
    t_start = time.perf_counter()
    sections = []
    timings: dict[str, Any] = {}
    if voxels > 0 or matching_only:
        t, text = matching_demo(voxels=max(voxels, 1), noise=noise, seed=seed, echo=echo, progress=progress,
                                heading="#" if matching_only else "##")
        timings.update(t)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "demo_matching.md", text)
        if matching_only:
            echo(text)
            echo(f"wrote {out / 'demo_matching.md'}")
            return timings
        sections.append(text + "\nThe same matching produced the reference maps of the cohort above; its error against "
                        "the ground truth on the test images is the *Dictionary matching* column of Table 1.\n")
    from .experiments.compare import run_compare

    res = run_compare(out, preset=preset, target=target, seed=seed, workers=workers, log=echo, progress=progress,
                      title=f"mrfrecon demo ({preset} preset): the paper's comparison of reconstruction methods",
                      extra_sections=sections)
    timings.update(res.seconds)
    timings["demo_total_s"] = time.perf_counter() - t_start
    for stem, table in res.tables.items():
        echo(f"\nTable 1 — {res.titles[stem]} (test split, mean over subjects):\n{table.rstrip()}")
    echo(f"\ndemo finished in {timings['demo_total_s'] / 60:.1f} min; report: {res.report}")
    timings["result"] = res
    return timings
