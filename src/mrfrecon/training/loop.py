"""The training loop: one run of :func:`train` (see the package docstring for what it follows)."""

from __future__ import annotations

import contextlib
import csv
import io as _io
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
from ..data import MAP_NAMES, MapNorm, PatchDataset, PatchGrid, grid_for, masked_mse, predict_volume
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

__all__ = ["ADAM_BETAS", "BEST", "LAST", "LOG", "TrainingDiverged", "train", "validation_nrmse"]

BEST = "checkpoint_best.pt"
LAST = "checkpoint_last.pt"
LOG = "log.csv"

# Paper, section 2.2.3 (Kingma & Ba defaults apart from the learning rate, which is also 1e-3).
ADAM_BETAS = (0.9, 0.999)

class TrainingDiverged(MrfreconError):
    """The loss or the validation NRMSE became NaN or infinite: the run stops, its last good
    checkpoints stay as they were (nothing of the diverged epoch is written)."""


# Settings that must agree between a run and its resumption (anything else may change).
_RESUME_KEYS = ("model", "spec", "target", "maps", "seed", "batch_size", "lr", "patch", "half_inputs",
                "train_subjects", "val_subjects", "world_size", "sequence_digest", "t1h2o_loss_mask")
#: Where the T1H2O term of the loss counts: every foreground voxel (the paper and its code), or
#: only where the target FF < 0.65 — the voxels the evaluation scores (paper, section 2.3).
#: Elsewhere the reference T1H2O of water-poor voxels is dictionary-matching noise: at the study
#: preset 92 % of the T1H2O target's variance lies there (docs/study/t1h2o_strata.md).
T1H2O_LOSS_MASKS = ("foreground", "evaluation")
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
    cols = ["epoch", "train_loss", *[f"val_nrmse_{m}" for m in maps], "val_nrmse_mean", "seconds", "patches_per_s"]
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in cols})
    return buf.getvalue()


def _resolve_config(model: str, preset: str, target: str, maps: Sequence[str], seed: int, epochs: int | None,
                    batch_size: int | None, lr: float | None, width: float | None, patch: int | None,
                    model_options: dict[str, Any] | None, patience: int | None = None,
                    t1h2o_loss_mask: str | None = None) -> dict[str, Any]:
    p = load_preset(preset)["training"]
    cfg = {
        "model": model, "preset": preset, "target": target, "maps": list(maps), "seed": int(seed),
        "epochs": int(p["epochs"] if epochs is None else epochs),
        "batch_size": int(p["batch_size"] if batch_size is None else batch_size),
        "lr": float(p["learning_rate"] if lr is None else lr),
        "width": float(p["width"] if width is None else width),
        "patch": int(p["patch"] if patch is None else patch),
        "validate_every": int(p.get("validate_every", 1)),
        # early stopping: epochs without a new best validation NRMSE before the run stops (0: off)
        "patience": int(p.get("patience", 0) if patience is None else patience),
        "model_options": dict(model_options or {}),
        "t1h2o_loss_mask": str(p.get("t1h2o_loss_mask", DEFAULT_T1H2O_LOSS_MASK) if t1h2o_loss_mask is None
                               else t1h2o_loss_mask),
    }
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
    for key in ("epochs", "batch_size", "patch", "validate_every"):
        if cfg[key] < 1:
            raise MrfreconError(f"{key}: must be >= 1, got {cfg[key]}")
    if cfg["patience"] < 0:
        raise MrfreconError(f"patience: must be >= 0 (0: no early stopping), got {cfg['patience']}")
    if not (cfg["lr"] > 0 and math.isfinite(cfg["lr"])) or not cfg["width"] > 0:
        raise MrfreconError(f"lr and width must be > 0, got lr={cfg['lr']}, width={cfg['width']}")
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
    batch_size: int | None = None,
    lr: float | None = None,
    width: float | None = None,
    patch: int | None = None,
    model_options: dict[str, Any] | None = None,
    patience: int | None = None,
    t1h2o_loss_mask: str | None = None,
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
        ``tiny``/``demo``/``paper``: epochs, batch size, learning rate, width, output patch size
        and validation interval; the keyword arguments below override them.
    target
        ``"reference"`` (dictionary-matching maps, as the paper) or ``"ground-truth"``
        (simulated cohorts only).
    maps
        The maps to predict, in output order (default T1H2O, FF, B1).
    patch
        Output patch size of the patch and pixel models (the paper's 32; the tiny preset 16).
        Slice models (fang2018) always train on whole slices.
    model_options
        Further options of the network (e.g. ``{"receptive_field": 7}``, ``{"activation": "relu"}``).
    patience
        Early stopping: the run ends after ``patience`` validated epochs without a new best
        validation NRMSE (``epochs`` is then the cap); 0 trains all ``epochs``. Default: the
        preset's ``patience`` (0 where it has none).
    t1h2o_loss_mask
        ``"foreground"`` (the paper: the T1H2O loss over every foreground voxel) or
        ``"evaluation"`` (only where the target FF < 0.65; :data:`T1H2O_LOSS_MASKS`). Default:
        the preset's (``foreground`` where it has none).
    resume
        Continue the run in ``out`` from ``checkpoint_last.pt`` (after its last finished epoch),
        up to ``epochs``; with the same settings the result is identical to an uninterrupted run.
    device, amp
        Torch device (default CUDA if available) and mixed precision (``"auto"``, ``"off"``,
        ``"bf16"``, ``"fp16"``; CUDA only).
    workers
        DataLoader worker processes that cut patches (0: in this process). Default: 0 on the CPU
        (the cores are busy training); on CUDA half the CPU cores, at most 8 — one worker cuts
        roughly 800 paper-size patches/s, less than a GPU trains.
    half_inputs
        Hold the normalized series in memory as float16 (half the memory, relative error ~5e-4;
        for the paper-scale cohort on a machine with less than ~80 GB of RAM).
    deterministic
        Deterministic algorithms (default: on the CPU yes, on CUDA no — slower there).
    log, show_progress
        One line per epoch goes to ``log`` (``None``: silent); a rich progress bar on stderr
        (default: when stderr is a terminal).
    """
    cfg = _resolve_config(model, preset, target, tuple(maps), seed, epochs, batch_size, lr, width, patch, model_options,
                          patience, t1h2o_loss_mask)
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


@dataclass
class _Run:
    """Everything one training run holds between epochs."""

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
    order_gen: torch.Generator  # the data order (single process)
    sampler: Any = None  # DistributedSampler under torchrun
    workers: int = 0
    epoch: int = 0  # epochs finished
    best_score: float = math.inf
    best_epoch: int = 0
    stopped: bool = False  # ended early (patience)
    rows: list[dict[str, Any]] = field(default_factory=list)
    say: Callable[[str], None] = print
    show_progress: bool = False
    amp_note: str = ""

    @property
    def maps(self) -> list[str]:
        return list(self.cfg["maps"])

    def meta(self, epoch: int, score: float) -> dict[str, Any]:
        cfg = {k: v for k, v in self.cfg.items() if k not in ("train_subjects", "val_subjects")}
        return {"spec": self.cfg["spec"], "map_norm": self.data.map_norm.to_dict(), "maps": self.maps,
                "sequence_json": self.data.sequence_json, "sequence_digest": self.data.sequence_digest,
                "frames": self.data.frames, "target": self.cfg["target"], "config": cfg, "epoch": epoch, "val_nrmse": score}


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


def _setup(model: str, cohort: Path, out: Path, dst: Dist, dev: torch.device, cfg: dict[str, Any],
           last: Checkpoint | None, amp: str | bool | None, workers: int | None) -> _Run:
    """Load the data, build the network, the samples and the optimizer, and restore a resumed
    run's state. Raises before anything is written."""
    amp_dtype, amp_note = autocast_for(dev, amp)
    data = load_training_data(cohort, cfg["target"], cfg["maps"], half_inputs=cfg["half_inputs"])
    cfg.update(train_subjects=data.train_subjects, val_subjects=data.val_subjects, world_size=dst.world,
               sequence_digest=data.sequence_digest)

    seed_everything(cfg["seed"])
    net = build(model, frames=data.frames, maps=len(cfg["maps"]), width=cfg["width"], **cfg["model_options"])
    cfg["spec"] = dict(net.spec)
    if net.kind == "slice":  # whole slices, padded to the largest
        grid = grid_for(net, tuple(max(s.series.shape[-2:][i] for s in data.train) for i in (0, 1)))
    else:  # fully convolutional: any output patch size; patch models keep their margin of real context
        grid = PatchGrid((cfg["patch"], cfg["patch"]), int(net.margin))
        # a batch of input patches alone (real + imaginary float32 channels per frame, and its copy
        # on the way to the network) must fit: refuse --patch 5000 before allocating 30+ GiB
        side = cfg["patch"] + 2 * int(net.margin)
        check_memory(2 * cfg["batch_size"] * side * side * 2 * data.frames * 4,
                     f"--patch {cfg['patch']} (batch {cfg['batch_size']} of {side}² input patches × {data.frames} frames)")
    targets = [data.map_norm.normalize(s.target, s.foreground) for s in data.train]
    dataset = PatchDataset([s.series for s in data.train], targets, [s.foreground for s in data.train], grid=grid,
                           map_masks=_loss_masks(data, cfg))
    if len(dataset) == 0:
        raise MrfreconError(f"{cohort}: the training scans have no foreground: no training patches")

    net.to(dev)  # before the optimizer: a resumed optimizer state is loaded onto the parameters' device
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=ADAM_BETAS, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    if workers is None:
        workers = 0 if dev.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) // 2))
    run = _Run(cfg, out, dst, dev, data, net, net, dataset, optimizer, scaler, amp_dtype,
               torch.Generator().manual_seed(cfg["seed"]), workers=workers)
    if last is not None:
        _restore(run, last)

    if dst.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data.distributed import DistributedSampler

        if dev.type == "cuda":  # global-batch statistics, as on one GPU (needs CUDA; same parameters and keys)
            run.net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        run.train_net = DistributedDataParallel(run.net, device_ids=[dev.index] if dev.type == "cuda" else None)
        run.sampler = DistributedSampler(dataset, num_replicas=dst.world, rank=dst.rank, shuffle=True, seed=cfg["seed"])
    run.amp_note = amp_note
    return run


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
    diff = [k for k in _RESUME_KEYS if prev.get(k) != cfg.get(k)]
    if diff:
        raise MrfreconError(f"{path}: cannot resume with different settings: "
                            + "; ".join(f"{k} {prev.get(k)!r} → {cfg.get(k)!r}" for k in diff))
    run.epoch = int(last.training["epoch"])
    if last.training.get("stopped"):
        raise MrfreconError(f"{path}: the run already stopped early at epoch {run.epoch} (patience "
                            f"{prev.get('patience')}); nothing to resume")
    if run.epoch >= cfg["epochs"]:
        raise MrfreconError(f"{path}: the run already finished {run.epoch} epoch(s); ask for more with --epochs")
    run.best_score, run.best_epoch = float(last.training["best_score"]), int(last.training["best_epoch"])
    if run.best_epoch and not (run.out / BEST).is_file():
        raise MrfreconError(f"{run.out / BEST}: missing; the run cannot be resumed consistently")
    run.rows = [dict(r) for r in last.training["log_rows"]]
    run.net.load_state_dict(last.state_dict)
    run.optimizer.load_state_dict(last.training["optimizer"])
    if run.scaler is not None and last.training.get("scaler"):
        run.scaler.load_state_dict(last.training["scaler"])
    set_rng_state(last.training["rng"], run.order_gen)  # last: nothing may draw between here and the first epoch


def _train_epoch(run: _Run, epoch: int) -> tuple[float, float, float]:
    """One pass over the reshuffled samples; returns (mean loss, seconds, samples/s) over all processes."""
    cfg, dev = run.cfg, run.dev
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)  # DistributedSampler: seeded by (seed, epoch)
        order: Any = run.sampler
        batch = -(-cfg["batch_size"] // run.dst.world)  # the global batch, shared out
    else:
        order = torch.randperm(len(run.dataset), generator=run.order_gen).tolist()
        batch = cfg["batch_size"]
    pin = dev.type == "cuda"
    # the loader's own generator only seeds its workers (no random augmentation): kept off the global RNG
    loader = torch.utils.data.DataLoader(run.dataset, batch_size=batch, sampler=order, num_workers=run.workers,
                                         pin_memory=pin, drop_last=False,
                                         generator=torch.Generator().manual_seed(cfg["seed"] + epoch))
    run.train_net.train()
    total = len(order)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    seen = 0
    with _bar(run.show_progress and run.dst.main, total, f"epoch {epoch}/{cfg['epochs']}") as update:
        for step, (x, y, m) in enumerate(loader):
            x, y, m = (t.to(dev, non_blocking=pin) for t in (x, y, m))
            with autocast(dev, run.amp_dtype):
                pred = run.train_net(x)
            loss = masked_mse(pred.float(), y, m)
            run.optimizer.zero_grad(set_to_none=True)
            if run.scaler is not None:  # fp16: scaled gradients
                run.scaler.scale(loss).backward()
                run.scaler.step(run.optimizer)
                run.scaler.update()
            else:
                loss.backward()
                run.optimizer.step()
            loss_sum += loss.detach().double() * len(x)
            seen += len(x)
            if step % 10 == 0 or seen == total:  # float() waits for the GPU: not every step
                running = float(loss_sum) / seen
                if not math.isfinite(running):  # NaN/inf weights never recover: stop before writing them
                    raise TrainingDiverged(f"{run.out}: training diverged in epoch {epoch} (loss {running}); its "
                                           f"checkpoints are those of epoch {run.epoch}. Try a lower learning rate "
                                           "or another seed")
                update(seen, running, seen / max(time.perf_counter() - t0, 1e-9))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    stats = torch.tensor([float(loss_sum), seen, seconds], dtype=torch.float64)
    if run.dst.world > 1:  # on the device: nccl reduces CUDA tensors only
        summed, slowest = stats.to(dev), stats.to(dev)
        dist.all_reduce(summed)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        stats = summed.cpu()
        stats[2] = slowest[2].cpu()  # the slowest process sets the pace
    return float(stats[0] / stats[1]), seconds, float(stats[1] / stats[2])


def _end_epoch(run: _Run, epoch: int, train_loss: float, seconds: float, rate: float) -> None:
    """Rank 0: validate, keep the best model, write checkpoint_last.pt and log.csv (all atomically)."""
    cfg = run.cfg
    validate = epoch % cfg["validate_every"] == 0 or epoch == cfg["epochs"]
    row: dict[str, Any] = {"epoch": epoch, "train_loss": f"{train_loss:.6g}", "seconds": f"{seconds:.3f}",
                           "patches_per_s": f"{rate:.1f}"}
    score = math.nan
    if validate:
        v = validation_nrmse(run.net, run.data.val, run.data.map_norm, run.dev, run.amp_dtype)
        score = v["mean"]
        if not math.isfinite(score):
            raise TrainingDiverged(f"{run.out}: validation NRMSE is {score} after epoch {epoch} (the network "
                                   f"predicts NaN); its checkpoints are those of epoch {run.epoch}")
        row.update({f"val_nrmse_{k}": f"{x:.6g}" for k, x in v.items()})
    state = run.net.state_dict()
    # the LOWEST validation NRMSE is kept, as the paper says (the released code's sign bug kept the highest)
    improved = validate and (run.best_epoch == 0 or score < run.best_score)
    if improved:
        run.best_score, run.best_epoch = score, epoch
        save_checkpoint(run.out / BEST, state, run.meta(epoch, score))
    # early stopping (not in the paper, which trains 100 epochs and keeps the best: at the study's scale
    # the best epoch comes long before any fixed cap, and the epochs after it only cost time)
    run.stopped = bool(cfg.get("patience")) and epoch < cfg["epochs"] and epoch - run.best_epoch >= cfg["patience"]
    run.rows.append(row)
    training = {
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "epoch": epoch, "best_score": run.best_score, "best_epoch": run.best_epoch, "log_rows": run.rows,
        "rng": rng_state(run.order_gen), "config": cfg, "stopped": run.stopped,
    }
    save_checkpoint(run.out / LAST, state, run.meta(epoch, score), training)
    atomic_write_text(run.out / LOG, _log_csv(run.rows, run.maps))
    vtxt = (f"val NRMSE {score:.4f} (" + ", ".join(f"{m} {float(row[f'val_nrmse_{m}']):.4f}" for m in run.maps) + ")"
            if validate else "not validated")
    run.say(f"epoch {epoch}/{cfg['epochs']}: loss {train_loss:.4g}, {vtxt}{' *best*' if improved else ''}, "
            f"{seconds:.1f} s, {rate:,.0f} patches/s")
    if run.stopped:
        run.say(f"early stop: no better validation NRMSE in the {epoch - run.best_epoch} epochs since epoch "
                f"{run.best_epoch} (patience {cfg['patience']})")


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
            f"{grid.out[0]}×{grid.out[1]}, batch {cfg['batch_size']}, epochs {run.epoch + 1}..{cfg['epochs']}, "
            f"target {target}")
    if deterministic_algorithms is None:
        deterministic_algorithms = dev.type == "cpu"  # on CUDA they cost speed
    with deterministic_mode(deterministic_algorithms):
        for epoch in range(run.epoch + 1, cfg["epochs"] + 1):
            with thread_policy():  # threads from the cores free at the start of each epoch
                train_loss, seconds, rate = _train_epoch(run, epoch)
                if dst.main:
                    _end_epoch(run, epoch, train_loss, seconds, rate)
            run.epoch = epoch
            if dst.world > 1:
                dist.barrier()  # the others wait while rank 0 validates and writes
                flag = torch.tensor([float(run.stopped)], device=dev if dev.type == "cuda" else "cpu")
                dist.broadcast(flag, 0)  # rank 0 decided; every process stops together
                run.stopped = bool(flag.item())
            if run.stopped:
                break
    run.say(f"best epoch {run.best_epoch} (val NRMSE {run.best_score:.4f}); wrote {out / BEST}, {out / LAST}, {out / LOG}")
    return out / BEST
