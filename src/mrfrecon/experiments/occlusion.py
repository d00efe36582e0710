"""Experiment 3 (Balsiger et al., MIDL 2019, section 3.3, Figure 4): the importance of each
temporal frame, by occlusion (Zeiler & Fergus 2014, in the temporal domain).

::

    from mrfrecon.experiments.occlusion import run_occlusion

    result = run_occlusion("results/occlusion", checkpoint="runs/proposed/checkpoint_best.pt", preset="demo")
    # results/occlusion/report.md, importance.csv, figure4_occlusion.png

Frame t of the *normalized* input is set to 0 — both its channels, real and imaginary
(:func:`mrfrecon.models.frame_channels`) — the test scans are reconstructed again, and the
importance of frame t for a map is ``|NRMSE(occluded) − NRMSE(original)|``, each NRMSE the mean
over test scans of the per-scan NRMSE over the 3-D volume (paper masks), against the maps the
network was trained on (the checkpoint's target: ``reference`` or ``ground-truth``).

Cost: one forward pass per frame and slice. It is kept small: each scan is normalized once and
turned into channels once; occluding a frame zeroes two channels of a copy; many occluded copies
go through the network in one batch; and patch and pixel networks see only the bounding box of
the slice's foreground plus their margin — exact, because they are fully convolutional with
valid convolutions and per-channel (eval-mode) batch norm, and only foreground voxels enter the
NRMSE. Slice networks (fang2018) see the whole slice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..figures import save_figure
from ..errors import MrfreconError
from ..io.scan import load_scan
from ..metrics import masks_for
from ..models import frame_channels, to_channels
from .common import Log, Report, Stopwatch, ensure_cohort, fmt, map_label, no_bar, peak_rss_mb, write_csv
from .runs import RunInfo, train_or_reuse

__all__ = ["OcclusionResult", "OcclusionScan", "frame_importance", "occlude", "plot_figure4", "run_occlusion"]

#: Floats of network input per batch of occluded copies (128 MiB): sets the number of frames per batch.
INPUT_BUDGET = 2**25


@dataclass
class OcclusionScan:
    """One test scan for :func:`frame_importance`: ``series_norm`` complex (slices, T, y, x),
    normalized as for the network; ``foreground`` bool (slices, y, x); ``target`` map → (slices,
    y, x) in physical units (T1H2O ms, FF 0–1, B1 a.u.), the maps the NRMSE is computed against."""

    name: str
    series_norm: np.ndarray
    foreground: np.ndarray
    target: Mapping[str, np.ndarray]


@dataclass
class OcclusionResult:
    """``baseline``: (scans, M) per-scan NRMSE without occlusion; ``occluded``: (scans, T, M) with
    frame t occluded; ``importance``: (T, M) = |mean over scans of occluded − of baseline|;
    ``maps`` the M map names; ``scans`` their names."""

    maps: tuple[str, ...]
    scans: list[str]
    baseline: np.ndarray
    occluded: np.ndarray
    importance: np.ndarray
    out: Path | None = None
    report: Path | None = None
    checkpoint: Path | None = None
    run: RunInfo | None = None
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def occlude(x: torch.Tensor, frames: Sequence[int]) -> torch.Tensor:
    """Copies of one normalized input ``x`` (2T, h, w) (:func:`mrfrecon.models.to_channels`
    layout), the i-th with frame ``frames[i]`` blacked out: both its channels (real and
    imaginary) set to 0. Returns (len(frames), 2T, h, w)."""
    if x.ndim != 3 or x.shape[0] % 2:
        raise MrfreconError(f"occlude: expected one input (2T, h, w), got shape {tuple(x.shape)}")
    n_frames = x.shape[0] // 2
    xb = x.unsqueeze(0).repeat(len(frames), 1, 1, 1)
    for i, t in enumerate(frames):
        re, im = frame_channels(int(t), n_frames)
        xb[i, re] = 0.0
        xb[i, im] = 0.0
    return xb


def early_frames_test(res: OcclusionResult, early: int) -> list[dict[str, Any]]:
    """Are the first ``early`` frames more important than the others? Per map, the paired
    two-sided Wilcoxon signed-rank test over the test scans of each scan's mean ΔNRMSE
    (occluded − original) over frames ``0 … early−1`` against its mean over the later frames.
    Returns one row per map: the two scan medians, the number of scans where the early frames
    matter more, W and p (``nan`` with fewer than 2 scans)."""
    from scipy.stats import wilcoxon

    delta = res.occluded - res.baseline[:, None, :]  # (scans, T, M)
    rows = []
    for j, m in enumerate(res.maps):
        a, b = delta[:, :early, j].mean(1), delta[:, early:, j].mean(1)
        w = p = math.nan
        if len(a) >= 2 and np.any(a != b):
            r = wilcoxon(a, b)
            w, p = float(r.statistic), float(r.pvalue)
        rows.append({"map": map_label(m, unit=False), f"median ΔNRMSE, frames 0–{early - 1}": fmt(float(np.median(a)), 3),
                     "median ΔNRMSE, later frames": fmt(float(np.median(b)), 3),
                     "scans where the early frames matter more": f"{int((a > b).sum())} / {len(a)}",
                     "W": fmt(w, 3), "p (two-sided)": fmt(p, 2)})
    return rows


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@torch.no_grad()
def frame_importance(
    net: nn.Module,
    scans: Iterable[OcclusionScan],
    map_norm: Any,
    *,
    frames_per_batch: int | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> OcclusionResult:
    """Occlusion of every temporal frame of every scan in ``scans`` (see the module docstring).

    ``net``: the network (its ``margin`` and ``kind`` attributes are used; it is put in eval
    mode); ``map_norm``: the checkpoint's :class:`~mrfrecon.data.MapNorm` (its map order is the
    network's output order). ``frames_per_batch``: occluded copies per forward pass (default:
    as many as fit :data:`INPUT_BUDGET` input floats). ``progress(done)``: called after each
    slice with the number of forward passes' frames done so far.
    """
    if device is None:
        p = next(net.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    net.eval()
    names = tuple(map_norm.names)
    lo = torch.tensor(map_norm.minimum, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    hi = torch.tensor(map_norm.maximum, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    margin = int(getattr(net, "margin", 0))
    crop = getattr(net, "kind", "patch") != "slice"
    base_all, occ_all, scan_names = [], [], []
    done = 0
    for s in scans:
        series = np.asarray(s.series_norm)
        n_sl, n_t = series.shape[:2]
        fg = np.asarray(s.foreground, bool)
        missing = [m for m in names if m not in s.target]
        if missing:
            raise MrfreconError(f"{s.name}: no target map(s) {', '.join(missing)} for the NRMSE")
        masks = masks_for(s.target.get("ff"), fg, maps=names)
        ranges, counts = np.zeros(len(names)), np.zeros(len(names))
        for j, m in enumerate(names):
            v = np.asarray(s.target[m], np.float64)[masks[m]]
            if v.size == 0:
                raise MrfreconError(f"{s.name}: the {m} evaluation mask is empty")
            ranges[j], counts[j] = v.max() - v.min(), v.size
        sse_base = np.zeros(len(names))
        sse_occ = np.zeros((n_t, len(names)))
        for z in range(n_sl):
            if not fg[z].any():
                continue
            x = torch.from_numpy(np.ascontiguousarray(to_channels(series[z]), dtype=np.float32))  # (2T, y, x)
            if crop:  # foreground bounding box plus the network's margin of real (or zero) context
                y0, y1, x0, x1 = _bbox(fg[z])
                x = torch.nn.functional.pad(x, (margin,) * 4)[:, y0 : y1 + 2 * margin, x0 : x1 + 2 * margin]
            else:
                y0, y1, x0, x1 = 0, fg.shape[1], 0, fg.shape[2]
                x = torch.nn.functional.pad(x, (margin,) * 4)
            x = x.to(device)
            ref = torch.from_numpy(np.stack([np.asarray(s.target[m], np.float32)[z, y0:y1, x0:x1] for m in names])).to(device)
            msk = torch.from_numpy(np.stack([masks[m][z, y0:y1, x0:x1] for m in names])).to(device)

            def sse(out: torch.Tensor) -> np.ndarray:
                """(B, M, h, w) normalized output → (B, M) summed squared error in physical units
                over each map's mask (de-normalized and clipped as MapNorm.denormalize)."""
                phys = torch.minimum(torch.maximum(out.float() * (hi - lo) + lo, lo), hi)
                d = (phys.double() - ref.double()) ** 2
                return (d * msk).sum(dim=(-2, -1)).cpu().numpy()

            sse_base += sse(net(x[None]))[0]
            per = int(x.numel())
            batch = frames_per_batch or max(1, min(n_t, INPUT_BUDGET // max(per, 1)))
            for start in range(0, n_t, batch):
                frames = list(range(start, min(n_t, start + batch)))
                sse_occ[start : start + len(frames)] += sse(net(occlude(x, frames)))
                if progress is not None:
                    progress(done + frames[-1] + 1)
            done += n_t
        with np.errstate(divide="ignore", invalid="ignore"):
            base_all.append(np.sqrt(sse_base / counts) / ranges)
            occ_all.append(np.sqrt(sse_occ / counts) / ranges)
        scan_names.append(s.name)
    if not scan_names:
        raise MrfreconError("occlusion: no scans")
    base, occ = np.stack(base_all), np.stack(occ_all)
    importance = np.abs(occ.mean(0) - base.mean(0)[None, :])
    return OcclusionResult(names, scan_names, base, occ, importance)


def plot_figure4(path: str | os.PathLike[str], importance: np.ndarray, maps: Sequence[str], flip_angle_deg: np.ndarray,
                 te_ms: np.ndarray, title: str = "") -> Path:
    """Figure 4: (a) the importance of each frame for each map (one panel per map), (b) the
    sequence's flip angle (degrees) and echo time (ms) per frame beneath, on the same axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_t = importance.shape[0]
    t = np.arange(n_t)
    fig, axes = plt.subplots(len(maps) + 1, 1, figsize=(7.0, 1.45 * (len(maps) + 1) + 0.6), sharex=True,
                             layout="constrained", height_ratios=[1.0] * len(maps) + [0.9])
    colors = {"t1h2o": "tab:blue", "ff": "tab:orange", "b1": "tab:green"}
    for ax, (j, m) in zip(axes[:-1], enumerate(maps), strict=True):
        ax.bar(t, importance[:, j], width=1.0, color=colors.get(m, "tab:gray"))
        ax.set_ylabel(f"|ΔNRMSE|\n{map_label(m, unit=False)}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("(a) importance of the temporal frames", fontsize=9, loc="left")
    ax = axes[-1]
    ax.step(t, flip_angle_deg, where="mid", color="black")
    ax.set_ylabel("flip angle (°)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax2 = ax.twinx()
    ax2.step(t, te_ms, where="mid", color="tab:red", ls="--")
    ax2.set_ylabel("TE (ms)", color="tab:red", fontsize=8)
    ax2.tick_params(labelsize=7, colors="tab:red")
    ax.set_title("(b) sequence per frame (mean over its spokes; B1 = 1)", fontsize=9, loc="left")
    ax.set_xlabel("temporal frame t (0 = first after the inversion)", fontsize=8)
    ax.set_xlim(-0.5, n_t - 0.5)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=90)


def run_occlusion(
    out: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    preset: str | None = None,
    cohort: str | os.PathLike[str] | None = None,
    seed: int = 0,
    epochs: int | None = None,
    steps: int | None = None,
    subjects: int | None = None,
    frames_per_batch: int | None = None,
    workers: int = 1,
    log: Log = print,
    show_progress: bool | None = None,
    progress: Callable[[int, str], Any] | None = None,
) -> OcclusionResult:
    """Run the occlusion experiment into the result folder ``out`` (module docstring).

    ``checkpoint``: a trained network (a file or ``shipped:<name>``); without one, the proposed CNN is trained (or reused) as
    in the comparison, on the reference maps, into ``out/runs/reference/proposed``. ``preset``
    (default: the checkpoint's training preset, else ``demo``) names the cohort simulated into
    ``out/cohort`` when no ``cohort`` is given; the test split is used."""
    from ..checkpoint import load_checkpoint
    from ..data import normalize_series
    from ..inference import check_compatible
    from ..runtime import default_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sw = Stopwatch()
    bar = progress if progress is not None else no_bar
    from ..shipped import open_checkpoint

    ck = open_checkpoint(checkpoint) if checkpoint is not None else None  # a path or shipped:<name>
    if preset is None:
        preset = str((ck.meta.get("config") or {}).get("preset", "demo")) if ck is not None else "demo"
    with sw("cohort (simulate or load)"):
        index = ensure_cohort(cohort, out, preset=preset, seed=seed, subjects=subjects, workers=workers, log=log,
                              bar=bar)
    run = None
    if ck is None:
        with sw("training"):
            run = train_or_reuse("proposed [reference]", "proposed", index, out / "runs" / "reference" / "proposed",
                                 preset=preset, target="reference", seed=seed, epochs=epochs, steps=steps, log=log,
                                 show_progress=show_progress)
        ck = load_checkpoint(run.checkpoint)
    dev = default_device()
    net = ck.build_model(dev)
    test_paths = index.paths("test")
    source = "reference" if ck.target == "reference" else "ground-truth"

    def scans() -> Iterable[OcclusionScan]:
        for p in test_paths:
            scan = load_scan(p)
            check_compatible(ck, scan, str(p))
            series, _ = normalize_series(scan.series)
            tgt = scan.reference if source == "reference" else scan.maps
            yield OcclusionScan(p.stem, series, scan.foreground, {m: tgt[m] for m in ck.maps if m in tgt})

    n_slices = sum(int(load_scan(p, series=False).foreground.any(axis=(1, 2)).sum()) for p in test_paths)
    with sw("occlusion (all frames, test split)"), bar(n_slices * ck.frames, "occluding frames") as cb:
        res = frame_importance(net, scans(), ck.map_norm, frames_per_batch=frames_per_batch, device=dev, progress=cb)
    del net

    # ---- files
    seq = ck.sequence
    fa = seq.frame_mean(np.asarray(seq.flip_angle_deg, float))
    te = seq.frame_mean(np.asarray(seq.te_ms, float))
    maps = res.maps
    rep = Report(out, "Experiment 3: importance of the temporal frames (paper section 3.3, Figure 4)")
    with sw("figures"):
        f4 = plot_figure4(out / "figure4_occlusion.png", res.importance, maps, fa, te,
                          title=f"{ck.spec.get('name')} ({ck.path.name if ck.path else ''}); NRMSE against the {ck.target} "
                                f"maps, mean over {len(res.scans)} test scan(s)")
    rows = [{"frame": t, "flip_angle_deg": f"{fa[t]:.4g}", "te_ms": f"{te[t]:.4g}",
             **{f"nrmse_occluded_{m}": f"{res.occluded[:, t, j].mean():.6g}" for j, m in enumerate(maps)},
             **{f"importance_{m}": f"{res.importance[t, j]:.6g}" for j, m in enumerate(maps)}} for t in range(len(fa))]
    fi = write_csv(out / "importance.csv", rows, list(rows[0]))
    prow = [{"scan": s, "frame": t, "map": m, "nrmse_original": f"{res.baseline[i, j]:.6g}",
             "nrmse_occluded": f"{res.occluded[i, t, j]:.6g}"}
            for i, s in enumerate(res.scans) for t in range(len(fa)) for j, m in enumerate(maps)]
    fp = write_csv(out / "nrmse_per_scan.csv", prow, ["scan", "frame", "map", "nrmse_original", "nrmse_occluded"])
    n_t = len(fa)
    early = max(1, round(n_t * 10 / 175))  # the first 10 of the paper's 175 frames
    rep.text(f"## Data\n\nCheckpoint `{ck.path}` ({ck.spec.get('name')}, trained on the {ck.target} maps, epoch {ck.epoch}, "
             f"validation NRMSE {fmt(ck.val_nrmse)}). Cohort `{index.root}`: {len(test_paths)} test scan(s) "
             f"({', '.join(res.scans)}). Each of the {n_t} frames was set to 0 in the normalized input (its real and "
             "imaginary channels) and the test scans reconstructed again; importance = |NRMSE(occluded) − NRMSE(original)|, "
             "NRMSE the mean over test scans of the per-scan NRMSE (paper masks).")
    srows = []
    for j, m in enumerate(maps):
        imp = res.importance[:, j]
        order = np.argsort(-imp)
        ratio = imp[:early].mean() / imp.mean() if imp.mean() > 0 else math.nan
        srows.append({"map": map_label(m, unit=False), "NRMSE original": fmt(res.baseline[:, j].mean()),
                      "mean importance": fmt(imp.mean(), 3), f"first {early} frames / mean": fmt(ratio, 3),
                      "top 5 frames": ", ".join(str(int(t)) for t in order[:5]),
                      "rank of frame 0": int(np.flatnonzero(order == 0)[0]) + 1})
    rep.text("## Summary\n\nThe paper found the first frames after the inversion most important for T1H2O and FF, "
             f"and the importance following changes of flip angle and TE. `first {early} frames / mean`: mean importance "
             f"of frames 0–{early - 1} over the mean of all frames (> 1: the early frames matter more than average).")
    rep.table("importance_summary", srows, list(srows[0]))
    rep.text(f"Paired test over the {len(res.scans)} test scan(s): each scan's mean ΔNRMSE over frames 0–{early - 1} "
             "against its mean over the later frames (two-sided Wilcoxon signed-rank).")
    erows = early_frames_test(res, early)
    rep.table("early_frames_test", erows, list(erows[0]))
    rep.text("## Figure 4")
    rep.figure(f4, "(a) importance |ΔNRMSE| of each temporal frame for T1H2O, FF and B1; (b) the sequence's flip "
                   "angle and TE per frame on the same axis.")
    rep.text("## Files")
    rep.link(fi, "importance and occluded NRMSE per frame and map, with the flip angle and TE of the frame")
    rep.link(fp, "per-scan NRMSE, original and occluded")
    if run is not None:
        rep.link(run.checkpoint, f"the trained network ({run.status}, {run.seconds:.0f} s of training)")
    rep.text("")
    settings = {"checkpoint": str(ck.path), "model": ck.spec, "trained on": ck.target, "preset": preset,
                "cohort": str(index.root), "test scans": len(test_paths), "frames": n_t,
                "frames per batch": frames_per_batch or f"auto ({INPUT_BUDGET:,} input floats)"}
    seeds = {"training": (ck.meta.get("config") or {}).get("seed", "unknown"),
             "cohort": index.attrs.get("seed", "given cohort")}
    res.report = rep.write(settings=settings, seeds=seeds, stopwatch=sw)
    res.out, res.checkpoint, res.run, res.figures = out, ck.path, run, [f4]
    res.seconds = dict(sw.stages, total=sw.total)
    log(f"wrote {res.report} (peak memory {peak_rss_mb():.0f} MiB)")
    return res
