"""Cohort statistics of the phantoms against DESIGN.md's patient facts, and phantom time.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_stats.py [--subjects 20] [--matrix 350]``
Subjects alternate thigh/leg with seeds 0, 1, ...; statistics over the middle slice.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy import ndimage

from mrfrecon.phantoms import make_phantom


def axis_ratios(ph, k: int) -> list[float]:
    """Principal-axis ratio of each limb's filled outline on slice k."""
    n = ph.labels.shape[-1]
    xs = (np.arange(n) + 0.5) * ph.attrs["fov_mm"] / n - 0.5 * ph.attrs["fov_mm"]
    c = [lb["centre_x_mm"][k] for lb in ph.attrs["limbs"]]
    right = (np.abs(xs - c[0]) < np.abs(xs - c[1]))[None, :]
    body = ndimage.binary_fill_holes(ph.labels[k] > 0)
    out = []
    for m in (body & right, body & ~right):
        rr, cc = np.nonzero(m)
        ev = np.linalg.eigvalsh(np.cov(np.stack([cc, rr]).astype(float)))
        out.append(float(np.sqrt(ev[1] / ev[0])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--matrix", type=int, default=350)
    a = ap.parse_args()
    print("load:", os.getloadavg())
    ratios = {"thigh": [], "leg": []}
    ff_med, ff_p5, ff_p95, frac07, t1_med, b1, df_in, skin_max = [], [], [], [], [], [], [], []
    b1_pool, df_pool = [], []
    seconds = []
    for s in range(a.subjects):
        region = ("thigh", "leg")[s % 2]
        t0 = time.perf_counter()
        ph = make_phantom(region, seed=s, matrix=a.matrix, slices=5)
        seconds.append((time.perf_counter() - t0) / 5)
        k = 2
        fg = ph.foreground[k]
        ratios[region] += axis_ratios(ph, k)
        b1_pool.append(ph.maps["b1"][k][fg])
        df_pool.append(ph.maps["df"][k][fg])
        skin = ph.labels[k] == ph.label_id("skin")
        skin_max.append(float(np.abs(ph.maps["df"][k][skin]).max()))
        if ph.condition == "healthy":
            continue
        mus = ph.muscle_mask()[k] & fg
        ff = ph.maps["ff"][k]
        ff_med.append(np.median(ff[mus]))
        ff_p5.append(np.percentile(ff[mus], 5))
        ff_p95.append(np.percentile(ff[mus], 95))
        frac07.append((ff[fg] > 0.7).mean())
        t1_med.append(np.median(ph.maps["t1h2o"][k][mus & (ff < 0.65)]))
    b1p = np.concatenate(b1_pool)
    dfp = np.concatenate(df_pool)
    print(f"{a.subjects} subjects at {a.matrix}², middle slice; patients: {len(ff_med)}")
    print("| statistic | phantoms | DESIGN.md (one patient's thigh) |\n|---|---|---|")
    for region in ("thigh", "leg"):
        r = np.asarray(ratios[region])
        print(f"| {region} outline principal-axis ratio, median (5th–95th) | {np.median(r):.2f} "
              f"({np.percentile(r, 5):.2f}–{np.percentile(r, 95):.2f}) | thigh about 1.2–1.3 (issue 13) |")
    print(f"| muscle FF median, per subject (median of subjects) | {np.median(ff_med):.2f} | 0.16 |")
    print(f"| muscle FF 5th–95th percentile (median of subjects) | {np.median(ff_p5):.2f}–{np.median(ff_p95):.2f} | 0.08–0.56 |")
    print(f"| foreground fraction with FF > 0.7 (median) | {np.median(frac07):.2f} | about 0.5 |")
    print(f"| muscle T1H2O median (FF < 0.65), range over subjects | {np.min(t1_med):.0f}–{np.max(t1_med):.0f} ms | 1180–1600 ms |")
    print(f"| B1 median (5th–95th), pooled foreground | {np.median(b1p):.2f} ({np.percentile(b1p, 5):.2f}–"
          f"{np.percentile(b1p, 95):.2f}) | 0.70 (0.45–0.90) |")
    print(f"| Δf share in −40…+90 Hz, pooled foreground | {((dfp >= -40) & (dfp <= 90)).mean():.3f} | mostly |")
    print(f"| Δf 1st–99th percentile | {np.percentile(dfp, 1):.0f} … {np.percentile(dfp, 99):.0f} Hz | −40…+90 Hz |")
    print(f"| largest |Δf| in the skin, median (max) over subjects | {np.median(skin_max):.0f} ({np.max(skin_max):.0f}) Hz | up to 120 Hz |")
    print(f"phantom time per 5-slice stack: {np.median(seconds):.2f} s per slice (median; max {np.max(seconds):.2f} s)")


if __name__ == "__main__":
    main()
