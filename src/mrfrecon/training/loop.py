"""The training loop: one run of :func:`train` (see the package docstring for what it follows)."""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import TARGETS, Checkpoint, load_checkpoint, save_checkpoint
from ..data import MAP_NAMES, MapNorm, PatchDataset, PatchGrid, grid_for, predict_volume
from ..data.loss import masked_mse_per_map
from ..errors import MrfreconError
from ..atomic import atomic_write_text
from ..fs import FolderLock, remove_stale_temps
from ..limits import check_memory
from ..metrics import masks_for, nrmse
from ..models import MODELS, build
from ..presets import load_preset
from ..runtime import thread_policy
from .data import ScanData, TrainData, load_training_data
from .environment import Dist, autocast, autocast_for, init_distributed, rng_state, seed_everything, set_rng_state
from .environment import deterministic as deterministic_mode
from .output_init import HEAD_INITS, calibrate_output
from .schedule import Schedule, parse_schedule
from .stopping import Convergence, EarlyStopping, assess_convergence, smoothed

__all__ = ["ADAM_BETAS", "BEST", "CONVERGENCE", "CURVES", "LAST", "LOG", "TrainingDiverged", "train", "validation_nrmse"]

BEST = "checkpoint_best.pt"
LAST = "checkpoint_last.pt"
LOG = "log.csv"
CURVES = "learning_curves.png"
CONVERGENCE = "convergence.json"

# Paper, section 2.2.3 (Kingma & Ba defaults apart from the learning rate, which is also 1e-3).
ADAM_BETAS = (0.9, 0.999)

class TrainingDiverged(MrfreconError):
    """The loss or the validation NRMSE became NaN or infinite: the run stops, its last good
    checkpoints stay as they were (nothing of the diverged epoch is written)."""


# Settings that must agree between a run and its resumption (anything else may change).
_RESUME_KEYS = ("model", "spec", "target", "maps", "seed", "batch_size", "lr", "patch", "half_inputs",
                "train_subjects", "val_subjects", "world_size", "sequence_digest", "t1h2o_loss_mask", "schedule",
                "eval_every", "augment", "init", "head_init", "map_weights")
#: Where the T1H2O term of the loss counts: every foreground voxel (the paper and its code), or
#: only where the target FF < 0.65 — the voxels the evaluation scores (paper, section 2.3).
#: Elsewhere the reference T1H2O of water-poor voxels is dictionary-matching noise: at the study
#: preset 92 % of the T1H2O target's variance lies there (docs/study/t1h2o_strata.md).
T1H2O_LOSS_MASKS = ("foreground", "evaluation")
#: How the maps' loss terms add up: ``equal`` (the paper) or ``inverse-variance`` (see :func:`train`).
MAP_WEIGHTS = ("equal", "inverse-variance")
DEFAULT_T1H2O_LOSS_MASK = "foreground"  # also what runs from before the option were trained with


# ============================================================================ validation
@torch.no_grad()
def validation_nrmse(net: nn.Module, scans: Sequence[ScanData], norm: MapNorm, device: torch.device,
                     amp_dtype: torch.dtype | None = None, tile: int | None = None) -> dict[str, float]:
    """Mean over ``scans`` of each map's NRMSE over the scan's 3-D volume, and their mean
    (``"mean"``). Predictions are de-normalized, clipped to the training range and 0 in the
    background (:meth:`MapNorm.denormalize`); masks as the paper: T1H2O foreground ∧ target
    FF < 0.65, every other map the foreground."""
    per_map: dict[str, list[float]] = {m: [] for m in norm.names}
    for s in scans:
        with autocast(device, amp_dtype):
            pred_n = predict_volume(net, s.series, tile=tile, device=device)
        pred = norm.denormalize(pred_n, s.foreground)
        ff = s.ff if s.ff is not None else s.target.get("ff")
        masks = masks_for(ff, s.foreground, maps=[m for m in norm.names if m != "t1h2o" or ff is not None])
        for m in norm.names:
            per_map[m].append(nrmse(pred[m], s.target[m], masks.get(m, s.foreground)))
    out = {m: float(np.mean(v)) for m, v in per_map.items()}
    out["mean"] = float(np.mean([out[m] for m in norm.names]))
    return out


# ============================================================================ progress
@contextlib.contextmanager
def _bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int, float, float], None]]:
    """A rich progress bar on stderr with the running loss and the throughput; yields
    ``update(done, loss, patches_per_s)``."""
    if not enabled:
        yield lambda done, loss, rate: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} patches/s"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*cols, console=Console(stderr=True), transient=True) as p:
        task = p.add_task(description, total=total, loss="-", rate="-")
        yield lambda done, loss, rate: p.update(task, completed=done, loss=f"{loss:.4g}", rate=f"{rate:,.0f}")


# ============================================================================ training
def _log_csv(rows: list[dict[str, Any]], maps: Sequence[str]) -> str:
    cols = ["step", "epoch", "lr", "train_loss", *[f"train_loss_{m}" for m in maps],
            *[f"train_nrmse_{m}" for m in maps], "train_nrmse_mean", *[f"val_nrmse_{m}" for m in maps],
            "val_nrmse_mean", "val_smoothed", "seconds", "patches_per_s"]
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in cols})
    return buf.getvalue()


def _resolve_config(model: str, preset: str, target: str, maps: Sequence[str], seed: int, epochs: int | None,
                    batch_size: int | None, lr: float | None, width: float | None, patch: int | None,
                    model_options: dict[str, Any] | None, patience: int | None = None,
                    t1h2o_loss_mask: str | None = None, *, steps: int | None = None, eval_every: int | None = None,
                    schedule: str | None = None, stop_window: int | None = None, min_steps: int | None = None,
                    augment: bool | None = None, init: str | None = None, head_init: str | None = None,
                    map_weights: str | None = None) -> dict[str, Any]:
    p = load_preset(preset)["training"]
    if steps is not None and epochs is not None:
        raise MrfreconError("--steps and --epochs: give one budget, not both")
    if steps is None and epochs is None:  # the preset's budget: steps where it states them, else epochs
        steps, epochs = (int(p["steps"]), None) if "steps" in p else (None, int(p["epochs"]))
    cfg = {
        "model": model, "preset": preset, "target": target, "maps": list(maps), "seed": int(seed),
        # the budget as asked (one of the two); "steps" is resolved in _setup from the epochs and the data
        "budget": {"steps": int(steps)} if steps is not None else {"epochs": int(epochs)},  # type: ignore[arg-type]
        # whole-slice models may take fewer samples per step (a slice holds many patches' pixels)
        "batch_size": int(batch_size if batch_size is not None else
                          p.get("slice_batch_size", p["batch_size"]) if model in MODELS and MODELS[model].kind == "slice"
                          else p["batch_size"]),
        "lr": float(p["learning_rate"] if lr is None else lr),
        "width": float(p["width"] if width is None else width),
        "patch": int(p["patch"] if patch is None else patch),
        # steps between validations; None: one epoch (× the preset's validate_every)
        "eval_every": int(eval_every if eval_every is not None else p["eval_every"]) if (eval_every is not None or "eval_every" in p) else None,
        "validate_every": int(p.get("validate_every", 1)),
        "schedule": parse_schedule(schedule if schedule is not None else p.get("schedule", "constant")).to_dict(),
        "stopping": EarlyStopping(patience=int(p.get("patience", 0) if patience is None else patience),
                                  window=int(p.get("stop_window", 1) if stop_window is None else stop_window),
                                  min_steps=int(p.get("min_steps", 0) if min_steps is None else min_steps)).to_dict(),
        "augment": bool(p.get("augment", False) if augment is None else augment),
        "head_init": str(p.get("head_init", "paper") if head_init is None else head_init),
        "map_weights": str(p.get("map_weights", "equal") if map_weights is None else map_weights),
        "model_options": dict(model_options or {}),
        "t1h2o_loss_mask": str(p.get("t1h2o_loss_mask", DEFAULT_T1H2O_LOSS_MASK) if t1h2o_loss_mask is None
                               else t1h2o_loss_mask),
        "init": None if init is None else str(init),
    }
    cfg["patience"] = cfg["stopping"]["patience"]
    if cfg["map_weights"] not in MAP_WEIGHTS:
        raise MrfreconError(f"--map-weights: expected one of {', '.join(MAP_WEIGHTS)}, got {cfg['map_weights']!r}")
    if cfg["head_init"] not in HEAD_INITS:
        raise MrfreconError(f"--head-init: expected one of {', '.join(HEAD_INITS)}, got {cfg['head_init']!r}")
    if cfg["init"] is not None:  # a pretrained network keeps its own output layer: no head initialization applies
        cfg["head_init"] = "pretrained"
    if cfg["t1h2o_loss_mask"] not in T1H2O_LOSS_MASKS:
        raise MrfreconError(f"t1h2o_loss_mask: expected one of {', '.join(T1H2O_LOSS_MASKS)}, got {cfg['t1h2o_loss_mask']!r}")
    if cfg["t1h2o_loss_mask"] == "evaluation" and not {"t1h2o", "ff"} <= set(maps):
        raise MrfreconError("t1h2o_loss_mask evaluation: needs the t1h2o and ff maps among the targets")
    if model not in MODELS:
        raise MrfreconError(f"unknown model {model!r}; known models: {', '.join(MODELS)}")
    if target not in TARGETS:
        raise MrfreconError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    if len(set(maps)) != len(maps) or not maps:
        raise MrfreconError(f"maps: expected distinct map names, got {list(maps)}")
    for key, v in (("--steps", steps), ("--epochs", epochs), ("--batch-size", cfg["batch_size"]),
                   ("--patch", cfg["patch"]), ("--eval-every", cfg["eval_every"]), ("validate_every", cfg["validate_every"])):
        if v is not None and int(v) < 1:
            raise MrfreconError(f"{key}: must be >= 1, got {v}")
    if not (cfg["lr"] > 0 and math.isfinite(cfg["lr"])) or not cfg["width"] > 0:
        raise MrfreconError(f"lr and width must be > 0, got lr={cfg['lr']}, width={cfg['width']}")
    if steps is not None:
        parse_schedule(cfg["schedule"]).check_budget(int(steps))
    return cfg


def train(
    model: str,
    cohort: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str = "tiny",
    target: str = "reference",
    maps: Sequence[str] = MAP_NAMES,
    seed: int = 0,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    eval_every: int | None = None,
    width: float | None = None,
    patch: int | None = None,
    model_options: dict[str, Any] | None = None,
    patience: int | None = None,
    stop_window: int | None = None,
    min_steps: int | None = None,
    augment: bool | None = None,
    head_init: str | None = None,
    map_weights: str | None = None,
    t1h2o_loss_mask: str | None = None,
    init: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    amp: str | bool | None = None,
    workers: int | None = None,
    half_inputs: bool = False,
    deterministic: bool | None = None,
    log: Callable[[str], None] | None = print,
    show_progress: bool | None = None,
) -> Path:
    """Train network ``model`` (``mrfrecon.models.MODELS``) on a cohort folder; returns the path
    of the best checkpoint (``out/checkpoint_best.pt``).

    Parameters
    ----------
    model, cohort, out
        Network name, cohort folder (``cohort.json``), output folder. ``out`` must not hold a
        previous run unless ``resume`` is set.
    preset
        ``tiny``/``demo``/``study``/``paper``: budget, batch size, learning rate and schedule,
        width, output patch size, evaluation interval, early stopping; the keyword arguments
        below override them.
    target
        ``"reference"`` (dictionary-matching maps, as the paper) or ``"ground-truth"``
        (simulated cohorts only).
    maps
        The maps to predict, in output order (default T1H2O, FF, B1).
    epochs, steps
        The budget: passes over the training samples, or optimizer steps (one of the two;
        default: the preset's). Every network of an experiment gets the same steps.
    lr, schedule
        Base learning rate of Adam and its schedule over the steps (:mod:`.schedule`, e.g.
        ``"cosine:warmup=300,final=0.01"``; the paper: ``"constant"``).
    eval_every
        Optimizer steps between evaluations (validation NRMSE, the training-scan NRMSE,
        checkpoints, a log row); default one epoch.
    patch
        Output patch size of the patch and pixel models (the paper's 32; the tiny preset 16).
        Slice models (fang2018) always train on whole slices.
    model_options
        Further options of the network (e.g. ``{"receptive_field": 7}``, ``{"activation": "relu"}``).
    patience, stop_window, min_steps
        Early stopping (:class:`.stopping.EarlyStopping`): the run ends after ``patience``
        evaluations without a new best running median of the last ``stop_window`` validation
        scores, once ``min_steps`` steps are done; patience 0 trains the whole budget. The kept
        model is still the one with the lowest (raw) validation NRMSE, as the paper.
    augment
        The 8 flips and quarter turns of each training patch, drawn at random per sample.
    head_init
        ``"paper"`` (Glorot, unit-scale batch norms) or ``"target"``: the output starts at the
        training targets' mean and SD per map (:mod:`.output_init`; architecture unchanged).
        Not applied with ``init`` (the pretrained output layer is kept; recorded as "pretrained").
    map_weights
        ``"equal"`` (the paper: the mean of the maps' masked MSEs) or ``"inverse-variance"``: each
        map's term divided by its target's variance inside its loss mask over the training split
        (weights normalized to mean 1), so that a map of small normalized variance (T1H2O in
        muscle) weighs as much as the others.
    t1h2o_loss_mask
        ``"foreground"`` (the paper: the T1H2O loss over every foreground voxel) or
        ``"evaluation"`` (only where the target FF < 0.65; :data:`T1H2O_LOSS_MASKS`).
    init
        Start from a trained checkpoint (a path or ``shipped:<name>``): its weights and its map
        normalization; the sequence, maps and architecture must match (fine-tuning). The
        pretrained network is validated at step 0 and stays the kept model unless training beats it.
    resume
        Continue the run in ``out`` from ``checkpoint_last.pt`` up to the budget; with the same
        settings the result is identical to an uninterrupted run (on the CPU). A schedule that
        depends on the budget (cosine) cannot be resumed with another budget.
    device, amp
        Torch device (default CUDA if available) and mixed precision (``"auto"``, ``"off"``,
        ``"bf16"``, ``"fp16"``; CUDA only).
    workers
        DataLoader worker processes that cut patches (0: in this process). Default: 0 on the CPU
        (the cores are busy training); on CUDA half the CPU cores, at most 8.
    half_inputs
        Hold the normalized series in memory as float16 (half the memory, relative error ~5e-4).
    deterministic
        Deterministic algorithms (default: on the CPU yes, on CUDA no — slower there).
    log, show_progress
        One line per evaluation goes to ``log`` (``None``: silent); a rich progress bar on
        stderr (default: when stderr is a terminal).

    Files written in ``out``: ``checkpoint_best.pt``, ``checkpoint_last.pt``, ``log.csv`` (one row
    per evaluation: step, epoch, learning rate, training loss per map, NRMSE per map on up to
    :data:`TRAIN_EVAL_SCANS` training scans and on the validation scans, the smoothed validation
    score, time), ``learning_curves.png`` and ``convergence.json`` (:func:`.stopping.assess_convergence`).
    """
    cfg = _resolve_config(model, preset, target, tuple(maps), seed, epochs, batch_size, lr, width, patch, model_options,
                          patience, t1h2o_loss_mask, steps=steps, eval_every=eval_every, schedule=schedule,
                          stop_window=stop_window, min_steps=min_steps, augment=augment,
                          init=None if init is None else os.fspath(init), head_init=head_init,
                          map_weights=map_weights)
    cfg["half_inputs"] = bool(half_inputs)
    dst, dev = init_distributed(device)
    # one writer per run folder (rank 0 writes it; other ranks of the same run do not lock)
    lock = FolderLock(out, "training run") if dst.main else contextlib.nullcontext()
    try:
        with lock:
            if dst.main:
                remove_stale_temps(out)  # of an interrupted run of this folder
            return _train(cfg, Path(cohort), Path(out), dst, dev, resume=resume, amp=amp, workers=workers,
                          deterministic_algorithms=deterministic, log=log, show_progress=show_progress)
    finally:
        if dst.owns_group:
            dist.destroy_process_group()


#: Training scans scored at every evaluation next to the validation scans (evenly spaced over the
#: training split): whether a network fits the scans it learns from.
TRAIN_EVAL_SCANS = 4
#: Batches in the fixed probe set whose loss the convergence verdict reads (see :func:`_probe_loss`).
PROBE_BATCHES = 4


@dataclass
class _Run:
    """Everything one training run holds between evaluations."""

    cfg: dict[str, Any]
    out: Path
    dst: Dist
    dev: torch.device
    data: TrainData
    net: nn.Module  # the plain network (validated, saved)
    train_net: nn.Module  # the same, wrapped in DistributedDataParallel under torchrun
    dataset: PatchDataset
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    order_gen: torch.Generator  # the data order and augmentations (the same on every process)
    schedule: Schedule
    stopping: EarlyStopping
    workers: int = 0
    weights: torch.Tensor | None = None  # per-map loss weights (M,) ("map_weights")
    step: int = 0  # optimizer steps done
    passes: int = 0  # permutations of the samples begun
    order: list[int] = field(default_factory=list)  # the current permutation (encoded items)
    pos: int = 0  # next position in it
    best_score: float = math.inf
    best_step: int = 0
    stopped: bool = False  # ended early (smoothed validation)
    # the training loss (weighted, as optimized) every ~1 % of the budget: (step, mean over the bucket);
    # the convergence criterion reads it (evaluations may be too sparse for "the last 10 % of steps")
    trace: list[tuple[int, float]] = field(default_factory=list)
    trace_sum: float = 0.0
    trace_n: int = 0
    # the loss of a fixed set of training samples, network in evaluation mode, at the same steps as
    # the trace: free of the batch-to-batch scatter (5–23 % per bucket at batch 8 in the study,
    # docs/study/trace_noise.py) that makes two 10 % windows of the trace differ by several % by
    # chance; the convergence verdict reads this one (3.5–5.8 % of the training time, bench_probe.py)
    probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    probe_trace: list[tuple[int, float]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    say: Callable[[str], None] = print
    show_progress: bool = False
    amp_note: str = ""

    @property
    def maps(self) -> list[str]:
        return list(self.cfg["maps"])

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.dataset) // self.cfg["batch_size"])

    @property
    def epoch(self) -> float:
        """Passes over the training samples done (fractional)."""
        return (self.passes - 1 + self.pos / max(1, len(self.order))) if self.order else 0.0

    @property
    def scores(self) -> list[float]:
        return [float(r["val_nrmse_mean"]) for r in self.rows if r.get("val_nrmse_mean") not in (None, "")]

    def meta(self, score: float) -> dict[str, Any]:
        cfg = {k: v for k, v in self.cfg.items() if k not in ("train_subjects", "val_subjects")}
        return {"spec": self.cfg["spec"], "map_norm": self.data.map_norm.to_dict(), "maps": self.maps,
                "sequence_json": self.data.sequence_json, "sequence_digest": self.data.sequence_digest,
                "frames": self.data.frames, "target": self.cfg["target"], "config": cfg,
                "epoch": int(round(self.epoch, 6)), "step": self.step, "val_nrmse": score}

    def lr_factor(self, step: int) -> float:
        return self.schedule.factor(step, self.cfg["steps"], self.scores)


def _check_out(out: Path, resume: bool) -> Checkpoint | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run or to resume none."""
    if resume:
        last_path = out / LAST
        if not last_path.is_file():
            raise MrfreconError(f"{last_path}: nothing to resume (no such file)")
        last = load_checkpoint(last_path)
        if not last.training:
            raise MrfreconError(f"{last_path}: not a resumable checkpoint (no training state)")
        return last
    clash = [name for name in (BEST, LAST, LOG) if (out / name).exists()]
    if clash:
        raise MrfreconError(f"{out}: already holds a training run ({', '.join(clash)}); "
                            f"pass --resume to continue it or choose another --out")
    return None


def _load_init(spec: str, data: TrainData, model: str, maps: Sequence[str]) -> Checkpoint:
    """The checkpoint to fine-tune from, checked against this run: sequence, maps, network."""
    from ..shipped import resolve_checkpoint

    ck = load_checkpoint(resolve_checkpoint(spec))
    where = f"--init {spec}"
    if ck.sequence_digest != data.sequence_digest:
        raise MrfreconError(f"{where}: trained for another sequence (digest {ck.sequence_digest}) than the cohort's "
                            f"({data.sequence_digest})")
    if tuple(ck.maps) != tuple(maps):
        raise MrfreconError(f"{where}: predicts maps {', '.join(ck.maps)}, this run trains {', '.join(maps)}")
    if ck.spec.get("name") != model:
        raise MrfreconError(f"{where}: a {ck.spec.get('name')} network, this run trains {model}")
    return ck


def _setup(model: str, cohort: Path, out: Path, dst: Dist, dev: torch.device, cfg: dict[str, Any],
           last: Checkpoint | None, amp: str | bool | None, workers: int | None) -> _Run:
    """Load the data, build the network, the samples and the optimizer, and restore a resumed
    run's state. Raises before anything is written."""
    amp_dtype, amp_note = autocast_for(dev, amp)
    data = load_training_data(cohort, cfg["target"], cfg["maps"], half_inputs=cfg["half_inputs"])
    cfg.update(train_subjects=data.train_subjects, val_subjects=data.val_subjects, world_size=dst.world,
               sequence_digest=data.sequence_digest)
    init = _load_init(cfg["init"], data, model, cfg["maps"]) if cfg.get("init") else None
    if init is not None:  # fine-tuning keeps the pretrained network's map normalization and its architecture
        data.map_norm = init.map_norm
        options = {k: v for k, v in init.spec.items() if k not in ("name", "frames", "maps", "width")}
        clash = {k: (options.get(k), v) for k, v in cfg["model_options"].items() if options.get(k) != v}
        if clash or float(init.spec.get("width", cfg["width"])) != cfg["width"]:
            what = "; ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in clash.items()) or \
                f"width {init.spec.get('width')} vs {cfg['width']}"
            raise MrfreconError(f"--init {cfg['init']}: architecture differs from this run's ({what})")
        cfg["model_options"] = options

    seed_everything(cfg["seed"])
    net = build(model, frames=data.frames, maps=len(cfg["maps"]), width=cfg["width"], **cfg["model_options"])
    cfg["spec"] = dict(net.spec)
    if init is not None:
        net.load_state_dict(init.state_dict)
    if net.kind == "slice":  # whole slices, padded to the largest
        grid = grid_for(net, tuple(max(s.series.shape[-2:][i] for s in data.train) for i in (0, 1)))
    else:  # fully convolutional: any output patch size; patch models keep their margin of real context
        grid = PatchGrid((cfg["patch"], cfg["patch"]), int(net.margin))
        # a batch of input patches alone (real + imaginary float32 channels per frame, and its copy
        # on the way to the network) must fit: refuse --patch 5000 before allocating 30+ GiB
        side = cfg["patch"] + 2 * int(net.margin)
        check_memory(2 * cfg["batch_size"] * side * side * 2 * data.frames * 4,
                     f"--patch {cfg['patch']} (batch {cfg['batch_size']} of {side}² input patches × {data.frames} frames)")
    if cfg["augment"] and grid.out[0] != grid.out[1]:
        raise MrfreconError(f"--augment: needs square training samples; {model} trains on {grid.out[0]}×{grid.out[1]}")
    targets = [data.map_norm.normalize(s.target, s.foreground) for s in data.train]
    dataset = PatchDataset([s.series for s in data.train], targets, [s.foreground for s in data.train], grid=grid,
                           map_masks=_loss_masks(data, cfg), augment=cfg["augment"])
    if len(dataset) == 0:
        raise MrfreconError(f"{cohort}: the training scans have no foreground: no training patches")
    if cfg["head_init"] == "target" and last is None:
        _calibrate(net, dataset, targets, data, cfg)
    weights = _map_weights(targets, data, cfg)
    probe = tuple(t.to(dev) for t in _probe_samples(dataset, cfg["batch_size"])) if dst.main else None
    per_epoch = -(-len(dataset) // cfg["batch_size"])
    budget = cfg["budget"]
    cfg["steps"] = int(budget["steps"]) if "steps" in budget else int(budget["epochs"]) * per_epoch
    # steps between evaluations as resolved ("eval_every" keeps what was asked, for reuse by settings)
    cfg["eval_period"] = int(cfg["eval_every"] or per_epoch * cfg["validate_every"])
    schedule = parse_schedule(cfg["schedule"])
    schedule.check_budget(cfg["steps"])
    stopping = EarlyStopping(**cfg["stopping"])

    net.to(dev)  # before the optimizer: a resumed optimizer state is loaded onto the parameters' device
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=ADAM_BETAS, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    if workers is None:
        workers = 0 if dev.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) // 2))
    run = _Run(cfg, out, dst, dev, data, net, net, dataset, optimizer, scaler, amp_dtype,
               torch.Generator().manual_seed(cfg["seed"]), schedule, stopping, workers=workers, weights=weights.to(dev),
               probe=probe)
    if last is not None:
        _restore(run, last)

    if dst.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if dev.type == "cuda":  # global-batch statistics, as on one GPU (needs CUDA; same parameters and keys)
            run.net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        run.train_net = DistributedDataParallel(run.net, device_ids=[dev.index] if dev.type == "cuda" else None)
    run.amp_note = amp_note
    return run


def _calibrate(net: nn.Module, dataset: PatchDataset, targets: list[np.ndarray], data: TrainData,
               cfg: dict[str, Any]) -> None:
    """``head_init`` "target": the output starts at the training targets' per-map mean and SD
    over the foreground (:func:`.output_init.calibrate_output`), measured on a fixed batch of
    evenly spaced training samples (no random draw: the run's random streams are untouched)."""
    vals = [np.concatenate([t[:, i][s.foreground] for t, s in zip(targets, data.train, strict=True)])
            for i in range(len(cfg["maps"]))]
    mean = torch.tensor([float(v.mean()) for v in vals])
    sd = torch.tensor([float(v.std()) for v in vals])
    n = min(len(dataset), 4 * cfg["batch_size"])
    items = [dataset[int(i) * (8 if dataset.augment else 1)] for i in np.linspace(0, len(dataset) - 1, n).astype(int)]
    x, _, mask = (torch.stack(t) for t in zip(*items, strict=True))
    calibrate_output(net, x, mask, mean, sd)


def _map_weights(targets: list[np.ndarray], data: TrainData, cfg: dict[str, Any]) -> torch.Tensor:
    """Per-map loss weights (M,): ones ("equal"), or 1 / the target's variance inside each map's
    loss mask over the training split ("inverse-variance"), normalized to mean 1."""
    m = len(cfg["maps"])
    if cfg["map_weights"] == "equal":
        return torch.ones(m)
    masks = _loss_masks(data, cfg) or [np.repeat(s.foreground[:, None], m, axis=1) for s in data.train]
    var = np.array([np.concatenate([t[:, i][k[:, i]] for t, k in zip(targets, masks, strict=True)]).var()
                    for i in range(m)])
    if not np.all(var > 0):
        raise MrfreconError(f"--map-weights inverse-variance: a target map is constant in its loss mask ({dict(zip(cfg['maps'], var))})")
    w = 1.0 / var
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def _loss_masks(data: TrainData, cfg: dict[str, Any]) -> list[np.ndarray] | None:
    """Per training scan, bool (slices, M, y, x) loss masks for ``t1h2o_loss_mask`` "evaluation"
    (T1H2O: foreground ∧ target FF < 0.65, the evaluation mask of :func:`mrfrecon.metrics.masks_for`;
    the other maps: the foreground); None for "foreground" (the dataset's foreground masks)."""
    if cfg["t1h2o_loss_mask"] == DEFAULT_T1H2O_LOSS_MASK:
        return None
    out = []
    for s in data.train:
        masks = masks_for(s.target["ff"], s.foreground, maps=cfg["maps"])
        out.append(np.stack([masks[m] for m in cfg["maps"]], axis=1))
    return out


def _restore(run: _Run, last: Checkpoint) -> None:
    """Continue from ``checkpoint_last.pt``: weights, optimizer, scaler, progress and RNG states."""
    path, prev, cfg = last.path, dict(last.training["config"]), run.cfg
    prev.setdefault("t1h2o_loss_mask", DEFAULT_T1H2O_LOSS_MASK)
    keys = list(_RESUME_KEYS)
    if parse_schedule(cfg["schedule"]).name == "cosine":  # its rate depends on the budget
        keys.append("steps")
    diff = [k for k in keys if prev.get(k) != cfg.get(k)]
    if diff:
        raise MrfreconError(f"{path}: cannot resume with different settings: "
                            + "; ".join(f"{k} {prev.get(k)!r} → {cfg.get(k)!r}" for k in diff))
    t = last.training
    if "step" not in t:
        raise MrfreconError(f"{path}: a run of an earlier mrfrecon (budget in epochs, no step state); "
                            "it cannot be resumed, train it anew")
    run.step = int(t["step"])
    if t.get("stopped"):
        raise MrfreconError(f"{path}: the run already stopped early at step {run.step} (patience "
                            f"{prev.get('patience')}); nothing to resume")
    if run.step >= cfg["steps"]:
        raise MrfreconError(f"{path}: the run already finished its {run.step} steps; ask for more with --steps or --epochs")
    run.best_score, run.best_step = float(t["best_score"]), int(t["best_step"])
    if run.best_step and not (run.out / BEST).is_file():
        raise MrfreconError(f"{run.out / BEST}: missing; the run cannot be resumed consistently")
    run.rows = [dict(r) for r in t["log_rows"]]
    run.trace = [(int(a), float(b)) for a, b in t.get("trace", [])]
    run.trace_sum, run.trace_n = float(t.get("trace_sum", 0.0)), int(t.get("trace_n", 0))
    run.probe_trace = [(int(a), float(b)) for a, b in t.get("probe_trace", [])]
    run.passes, run.pos, run.order = int(t["passes"]), int(t["pos"]), [int(v) for v in t["order"]]
    run.net.load_state_dict(last.state_dict)
    run.optimizer.load_state_dict(t["optimizer"])
    if run.scaler is not None and t.get("scaler"):
        run.scaler.load_state_dict(t["scaler"])
    set_rng_state(t["rng"], run.order_gen)  # last: nothing may draw between here and the first step


def _next_batch(run: _Run) -> list[int]:
    """The next global batch of (encoded) items: batches run through one permutation of the
    samples, the last one of a pass shorter (the paper's reshuffle every epoch)."""
    if run.pos >= len(run.order):
        n = len(run.dataset)
        perm = torch.randperm(n, generator=run.order_gen)
        if run.cfg["augment"]:  # one of the 8 symmetries per sample and pass
            k = torch.randint(0, 8, (n,), generator=run.order_gen)
            perm = perm * 8 + k[perm]
        run.order, run.pos, run.passes = perm.tolist(), 0, run.passes + 1
    b = run.order[run.pos : run.pos + run.cfg["batch_size"]]
    run.pos += len(b)
    return b


def _train_period(run: _Run, n_steps: int) -> tuple[float, dict[str, float], float, float]:
    """``n_steps`` optimizer steps; returns (mean loss, mean loss per map, seconds, samples/s),
    the means over the period's samples of all processes."""
    cfg, dev, dst = run.cfg, run.dev, run.dst
    batches = [_next_batch(run) for _ in range(n_steps)]
    local = [b[dst.rank :: dst.world] for b in batches]  # each process its share of the global batch
    pin = dev.type == "cuda"
    loader = torch.utils.data.DataLoader(run.dataset, batch_sampler=local, num_workers=run.workers, pin_memory=pin)
    run.train_net.train()
    t0 = time.perf_counter()
    m = len(run.maps)
    sums = torch.zeros(m + 1, dtype=torch.float64, device=dev)  # per-map squared error sums, samples
    bucket = max(1, cfg["steps"] // 100)
    acc = torch.zeros((), dtype=torch.float64, device=dev)  # this bucket's loss sum, read once per bucket
    total = sum(len(b) for b in local)
    seen = 0
    base = cfg["lr"]
    with _bar(run.show_progress and dst.main, total, f"steps {run.step + 1}–{run.step + n_steps}/{cfg['steps']}") as update:
        for i, (x, y, mask) in enumerate(loader):
            lr = base * run.lr_factor(run.step)
            for g in run.optimizer.param_groups:
                g["lr"] = lr
            x, y, mask = (t.to(dev, non_blocking=pin) for t in (x, y, mask))
            with autocast(dev, run.amp_dtype):
                pred = run.train_net(x)
            per_map = masked_mse_per_map(pred.float(), y, mask)  # (M,)
            # = masked_mse with equal weights (every map has as many elements)
            loss = per_map.mean() if run.weights is None else (per_map * run.weights).mean()
            run.optimizer.zero_grad(set_to_none=True)
            if run.scaler is not None:  # fp16: scaled gradients
                run.scaler.scale(loss).backward()
                run.scaler.step(run.optimizer)
                run.scaler.update()
            else:
                loss.backward()
                run.optimizer.step()
            run.step += 1
            sums[:m] += per_map.detach().double() * len(x)
            acc += loss.detach().double()
            run.trace_n += 1
            if run.step % bucket == 0 or run.step == cfg["steps"]:
                run.trace_sum += float(acc)
                acc.zero_()
                run.trace.append((run.step, run.trace_sum / run.trace_n))
                run.trace_sum, run.trace_n = 0.0, 0
                if run.probe is not None:
                    run.probe_trace.append((run.step, _probe_loss(run)))
            sums[m] += len(x)
            seen += len(x)
            if i % 10 == 0 or seen == total:  # float() waits for the GPU: not every step
                running = float(sums[:m].sum()) / m / seen
                if not math.isfinite(running):  # NaN/inf weights never recover: stop before writing them
                    raise TrainingDiverged(f"{run.out}: training diverged before step {run.step} (loss {running}); "
                                           f"its checkpoints are those of step {run.best_step or 0} (best) and the "
                                           "last evaluation. Try a lower learning rate, a warm-up or another seed")
                update(seen, running, seen / max(time.perf_counter() - t0, 1e-9))
    run.trace_sum += float(acc)  # a bucket that spans two periods (they end on an evaluation, not a bucket)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    stats = torch.cat([sums.cpu(), torch.tensor([seconds], dtype=torch.float64)])
    if dst.world > 1:  # on the device: nccl reduces CUDA tensors only
        summed, slowest = stats.to(dev), stats.to(dev)
        dist.all_reduce(summed)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        stats = summed.cpu()
        stats[-1] = slowest[-1].cpu()  # the slowest process sets the pace
    count = float(stats[m])
    per = {name: float(stats[j]) / count for j, name in enumerate(run.maps)}
    return float(np.mean(list(per.values()))), per, float(stats[-1]), count / float(stats[-1])


def _probe_samples(dataset: PatchDataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed probe set: :data:`PROBE_BATCHES` × ``batch_size`` training samples evenly spaced
    over the dataset (untransformed; no random draw, so the run's random streams are untouched),
    stacked as (inputs, targets, masks)."""
    n = len(dataset)  # samples; an augmenting dataset's items are 8 per sample (PatchDataset.encode)
    picks = sorted({int(round(v)) for v in np.linspace(0, n - 1, min(n, PROBE_BATCHES * batch_size))})
    items = [dataset[PatchDataset.encode(i, 0) if dataset.augment else i] for i in picks]
    return tuple(torch.stack([it[j] for it in items]) for j in range(3))  # type: ignore[return-value]


@torch.no_grad()
def _probe_loss(run: _Run) -> float:
    """The training objective (per-map masked MSE, the run's map weights) over the probe set with
    the network in evaluation mode (batch norms on their running statistics: the network a
    checkpoint would hold), in batches of the training batch size; the model's mode is restored."""
    assert run.probe is not None
    net, bs = run.net, run.cfg["batch_size"]
    was_training = net.training
    net.eval()
    try:
        xs, ys, ms = run.probe
        sums = torch.zeros(len(run.maps), dtype=torch.float64)
        for i in range(0, len(xs), bs):
            x, y, m = (t[i : i + bs] for t in (xs, ys, ms))  # already on the run's device
            with autocast(run.dev, run.amp_dtype):
                pred = net(x)
            sums += masked_mse_per_map(pred.float(), y, m).double().cpu() * len(x)
        per_map = sums / len(xs)
        w = run.weights.detach().double().cpu() if run.weights is not None else torch.ones_like(per_map)
        return float((per_map * w).mean())
    finally:
        net.train(was_training)


def _train_subset(run: _Run) -> list[ScanData]:
    """Up to :data:`TRAIN_EVAL_SCANS` training scans, evenly spaced over the split."""
    n = len(run.data.train)
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, TRAIN_EVAL_SCANS))})
    return [run.data.train[i] for i in picks]


def _evaluate(run: _Run, train_loss: float, per_map: dict[str, float], seconds: float, rate: float) -> None:
    """Rank 0: validate, keep the best model, write checkpoint_last.pt, log.csv, the learning
    curves and the convergence verdict (all atomically)."""
    cfg = run.cfg
    row: dict[str, Any] = {"step": run.step, "epoch": f"{run.epoch:.6g}", "lr": f"{cfg['lr'] * run.lr_factor(max(0, run.step - 1)):.6g}",
                           "train_loss": f"{train_loss:.6g}", "seconds": f"{seconds:.3f}", "patches_per_s": f"{rate:.1f}"}
    row.update({f"train_loss_{k}": f"{v:.6g}" for k, v in per_map.items()})
    tr = validation_nrmse(run.net, _train_subset(run), run.data.map_norm, run.dev, run.amp_dtype)
    row.update({f"train_nrmse_{k}": f"{x:.6g}" for k, x in tr.items()})
    v = validation_nrmse(run.net, run.data.val, run.data.map_norm, run.dev, run.amp_dtype)
    score = v["mean"]
    if not math.isfinite(score):
        raise TrainingDiverged(f"{run.out}: validation NRMSE is {score} at step {run.step} (the network "
                               f"predicts NaN); its checkpoints are those of the last evaluation")
    row.update({f"val_nrmse_{k}": f"{x:.6g}" for k, x in v.items()})
    run.rows.append(row)
    scores = run.scores
    row["val_smoothed"] = f"{smoothed(scores, run.stopping.window)[-1]:.6g}"
    state = run.net.state_dict()
    # the LOWEST validation NRMSE is kept, as the paper says (the released code's sign bug kept the highest)
    improved = not math.isfinite(run.best_score) or score < run.best_score  # inf before the first evaluation
    if improved:
        run.best_score, run.best_step = score, run.step
        save_checkpoint(run.out / BEST, state, run.meta(score))
    steps_done = [int(r["step"]) for r in run.rows]
    run.stopped = run.step < cfg["steps"] and run.stopping.should_stop(scores, steps_done)
    verdict = _verdict(run)
    training = {
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "step": run.step, "passes": run.passes, "pos": run.pos, "order": list(run.order),
        "best_score": run.best_score, "best_step": run.best_step, "log_rows": run.rows,
        "rng": rng_state(run.order_gen), "config": cfg, "stopped": run.stopped, "convergence": verdict.to_dict(),
        "trace": [[int(a), float(b)] for a, b in run.trace], "trace_sum": run.trace_sum, "trace_n": run.trace_n,
        "probe_trace": [[int(a), float(b)] for a, b in run.probe_trace],
    }
    save_checkpoint(run.out / LAST, state, run.meta(score), training)
    atomic_write_text(run.out / LOG, _log_csv(run.rows, run.maps))
    atomic_write_text(run.out / CONVERGENCE, json.dumps({**_jsonable(verdict.to_dict()), "steps": run.step, "budget": cfg["steps"],
                                                         "best_step": run.best_step, "schedule": str(run.schedule),
                                                         "stopping": cfg["stopping"]}, indent=1))
    _write_curves(run)
    vtxt = ", ".join(f"{m} {float(row[f'val_nrmse_{m}']):.4f}" for m in run.maps)
    ttxt = ", ".join(f"{m} {float(row[f'train_nrmse_{m}']):.4f}" for m in run.maps)
    run.say(f"step {run.step}/{cfg['steps']} (epoch {run.epoch:.2f}, lr {float(row['lr']):.3g}): loss {train_loss:.4g}; "
            f"NRMSE train {ttxt}; val {score:.4f} ({vtxt}){' *best*' if improved else ''}, {seconds:.1f} s, "
            f"{rate:,.0f} patches/s")
    if run.stopped:
        run.say(f"early stop at step {run.step}: the running median of the last {run.stopping.window} validation "
                f"scores has not improved for {run.stopping.patience} evaluations")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """NaN → None: strict JSON has no NaN."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _verdict(run: _Run) -> Convergence:
    """The convergence verdict from the probe set's loss (runs from before it: the fine training-loss
    trace, or the per-evaluation losses) and the schedule's last factor."""
    series = run.probe_trace or run.trace
    steps, losses = ([a for a, _ in series], [b for _, b in series]) if series else \
        ([int(r["step"]) for r in run.rows], [float(r["train_loss"]) for r in run.rows])
    what = "probe-set loss" if run.probe_trace else "training loss"
    last = max(0, run.step - 1)
    return assess_convergence(steps, losses, run.lr_factor(last), run.stopped, what=what,
                              rate_decays=parse_schedule(run.cfg["schedule"]).decays_by_itself)


def _write_curves(run: _Run) -> None:
    """learning_curves.png beside log.csv (matplotlib is optional at import time)."""
    from ..figures import learning_curves

    learning_curves(run.rows, run.maps, run.out / CURVES, title=f"{run.cfg['model']} (seed {run.cfg['seed']}, "
                    f"{run.schedule}, lr {run.cfg['lr']:g}, batch {run.cfg['batch_size']})")


def _train(cfg: dict[str, Any], cohort: Path, out: Path, dst: Dist, dev: torch.device, *, resume: bool,
           amp: str | bool | None, workers: int | None, deterministic_algorithms: bool | None,
           log: Callable[[str], None] | None, show_progress: bool | None) -> Path:
    model, target = cfg["model"], cfg["target"]
    last = _check_out(out, resume)  # everything is checked before anything is written
    run = _setup(model, cohort, out, dst, dev, cfg, last, amp, workers)
    run.say = log if (log is not None and dst.main) else (lambda _msg: None)
    run.show_progress = sys.stderr.isatty() if show_progress is None else show_progress
    if dst.main:
        out.mkdir(parents=True, exist_ok=True)
    grid = run.dataset.grid
    note = run.amp_note
    run.say(f"training {model} ({sum(p.numel() for p in run.net.parameters()):,} parameters, width {cfg['width']:g}) "
            f"on {dev}{f' × {dst.world} processes' if dst.world > 1 else ''}{'; ' + note if note else ''}: "
            f"{len(run.data.train)} training scans, {len(run.dataset):,} samples of {grid.input[0]}×{grid.input[1]} → "
            f"{grid.out[0]}×{grid.out[1]}{' (+ flips and quarter turns)' if cfg['augment'] else ''}, batch "
            f"{cfg['batch_size']} ({run.steps_per_epoch} steps per epoch), steps {run.step + 1}..{cfg['steps']}, "
            f"schedule {run.schedule} from lr {cfg['lr']:g}, evaluation every {cfg['eval_period']} steps, target {target}"
            + (f", initialized from {cfg['init']}" if cfg.get("init") else ""))
    if deterministic_algorithms is None:
        deterministic_algorithms = dev.type == "cpu"  # on CUDA they cost speed
    with deterministic_mode(deterministic_algorithms):
        if cfg.get("init") and not run.rows and dst.main:  # a fresh run: a resumed one has evaluated
            # the pretrained network is a candidate too: fine-tuning that only makes it worse on this
            # cohort's validation scans keeps it as checkpoint_best.pt (and its score is the one to beat)
            with thread_policy():
                _evaluate(run, math.nan, {k: math.nan for k in run.maps}, 0.0, 0.0)
        while run.step < cfg["steps"]:
            n = min(cfg["eval_period"] - run.step % cfg["eval_period"], cfg["steps"] - run.step)
            with thread_policy():  # threads from the cores free at the start of each period
                train_loss, per_map, seconds, rate = _train_period(run, n)
                if dst.main:
                    _evaluate(run, train_loss, per_map, seconds, rate)
            if dst.world > 1:
                dist.barrier()  # the others wait while rank 0 validates and writes
                flag = torch.tensor([float(run.stopped)], device=dev if dev.type == "cuda" else "cpu")
                dist.broadcast(flag, 0)  # rank 0 decided; every process stops together
                run.stopped = bool(flag.item())
            if run.stopped:
                break
    run.say(f"best at step {run.best_step} (val NRMSE {run.best_score:.4f}); {_verdict(run).reason}; "
            f"wrote {out / BEST}, {out / LAST}, {out / LOG}, {out / CURVES}")
    return out / BEST
