"""Figures of scans: ground truth, frames of the series, reference maps and their error.

Matplotlib with the Agg backend (no screen needed); colour bars carry units.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .io.scan import Scan

def save_figure(fig, path: str | os.PathLike[str], dpi: int = 90) -> Path:
    """Write a matplotlib figure as PNG atomically, close it, and return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


_SCALES = {"t1h2o": (500.0, 2000.0, "T1H2O (ms)"), "ff": (0.0, 1.0, "FF"), "b1": (0.3, 1.0, "B1 (a.u.)")}


def plot_scan(scan: Scan, path: str | os.PathLike[str], *, slice_index: int | None = None,
              frames: tuple[int, ...] = (0, 10, 60, 110, 170)) -> Path:
    """One slice of a scan: ground truth (if any), |frames| of the series, reference maps and
    reference − truth. Writes a PNG atomically and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = scan.shape[0] // 2 if slice_index is None else slice_index
    fg = scan.foreground[z]
    rows = [("ground truth", scan.maps), ("reference (matching)", scan.reference)]
    rows = [(t, m) for t, m in rows if all(k in m for k in _SCALES)]
    has_err = len(rows) == 2
    nrows = 1 + len(rows) + int(has_err)
    ncols = max(len(frames), len(_SCALES))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    mag = np.abs(scan.series[z])
    vmax = np.percentile(mag[:, fg], 99) if fg.any() else mag.max()
    for c, f in enumerate(frames[:ncols]):
        if f < mag.shape[0]:
            axes[0, c].imshow(mag[f], cmap="gray", vmin=0, vmax=vmax)
            axes[0, c].set_title(f"|frame {f}|", fontsize=9)
    for r, (title, maps) in enumerate(rows, start=1):
        for c, (k, (lo, hi, label)) in enumerate(_SCALES.items()):
            im = axes[r, c].imshow(np.where(fg, maps[k][z], np.nan), cmap="viridis", vmin=lo, vmax=hi)
            axes[r, c].set_title(f"{title}: {label}", fontsize=8)
            fig.colorbar(im, ax=axes[r, c], fraction=0.046, pad=0.02)
    if has_err:
        for c, (k, (lo, hi, label)) in enumerate(_SCALES.items()):
            err = np.where(fg, scan.reference[k][z] - scan.maps[k][z], np.nan)
            span = 0.25 * (hi - lo)
            im = axes[-1, c].imshow(err, cmap="coolwarm", vmin=-span, vmax=span)
            axes[-1, c].set_title(f"reference − truth: {label}", fontsize=8)
            fig.colorbar(im, ax=axes[-1, c], fraction=0.046, pad=0.02)
    a = scan.attrs
    fig.suptitle(f"{a.get('subject', '')} {a.get('region', '')} ({a.get('condition', '')}), slice {z}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def learning_curves(rows: list[dict], maps: list[str] | tuple[str, ...], path: str | os.PathLike[str], *,
                    title: str = "") -> Path:
    """A run's learning curves from its ``log.csv`` rows (:func:`mrfrecon.training.train`): per
    map, the NRMSE on the training scans and on the validation scans against optimizer steps;
    beside them the training loss (per map and in all, log scale) and the learning rate. Writes
    a PNG atomically and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(key: str) -> np.ndarray:
        return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])

    steps = col("step")
    n = len(maps)
    fig, axes = plt.subplots(1, n + 2, figsize=(3.2 * (n + 2), 3.0), constrained_layout=True)
    for ax, m in zip(axes[:n], maps, strict=True):
        ax.plot(steps, col(f"train_nrmse_{m}"), "-o", ms=2, label="training scans")
        ax.plot(steps, col(f"val_nrmse_{m}"), "-o", ms=2, label="validation")
        ax.set_title(f"{m} NRMSE")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[n]
    ax.semilogy(steps, col("train_loss"), "k-", label="all maps")
    for m in maps:
        ax.semilogy(steps, col(f"train_loss_{m}"), "-", lw=0.8, label=m)
    ax.set_title("training loss (masked MSE)")
    ax.set_xlabel("optimizer step")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[n + 1]
    ax.plot(steps, col("lr"), "-")
    ax.set_title("learning rate (end of period)")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_uncertainty(maps: dict[str, np.ndarray], sd: dict[str, np.ndarray], foreground: np.ndarray,
                     path: str | os.PathLike[str], *, slice_index: int | None = None, title: str = "") -> Path:
    """One slice of maps with their SD maps (:mod:`mrfrecon.uncertainty`): the maps (T1H2O, FF,
    B1 as present), their SDs in the same units, and where the SD is flagged (undetermined by
    the data, contradicted by the data, not estimated). Writes a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in _SCALES if k in maps and f"sd_{k}" in sd]
    if not names:
        from .errors import MrfreconError

        raise MrfreconError("no map with an SD to plot (sd/t1h2o, sd/ff or sd/b1)")
    z = foreground.shape[0] // 2 if slice_index is None else slice_index
    fg = np.asarray(foreground[z], bool)
    flags = [k for k in names if f"flag_{k}" in sd]
    nrows = 2 + int(bool(flags))
    fig, axes = plt.subplots(nrows, len(names), figsize=(2.8 * len(names), 2.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for c, k in enumerate(names):
        lo, hi, label = _SCALES[k]
        im = axes[0, c].imshow(np.where(fg, maps[k][z], np.nan), cmap="viridis", vmin=lo, vmax=hi)
        axes[0, c].set_title(label, fontsize=8)
        fig.colorbar(im, ax=axes[0, c], fraction=0.046, pad=0.02)
        s = np.asarray(sd[f"sd_{k}"][z], np.float64)
        top = float(np.percentile(s[fg], 99)) if fg.any() else 1.0
        im = axes[1, c].imshow(np.where(fg, s, np.nan), cmap="magma", vmin=0, vmax=top or 1.0)
        axes[1, c].set_title(f"SD of {label}", fontsize=8)
        fig.colorbar(im, ax=axes[1, c], fraction=0.046, pad=0.02)
        if k in flags:
            f = np.asarray(sd[f"flag_{k}"][z]).astype(np.uint8)
            # 0 none, 1 undetermined, 2 contradicted, 3 not estimated (highest bit shown)
            show = np.select([f & 4 > 0, f & 2 > 0, f & 1 > 0], [3, 2, 1], 0).astype(float)
            axes[2, c].imshow(np.where(fg, show, np.nan), cmap=matplotlib.colors.ListedColormap(
                ["#dddddd", "#f0a030", "#d03030", "#303030"]), vmin=-0.5, vmax=3.5, interpolation="nearest")
            pct = 100.0 * np.mean(f[fg] > 0) if fg.any() else 0.0
            axes[2, c].set_title(f"flagged {pct:.1f} % (orange: undetermined,\nred: contradicted, black: no estimate)", fontsize=7)
    fig.suptitle(f"{title} slice {z}".strip(), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
