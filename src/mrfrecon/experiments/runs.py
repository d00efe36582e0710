"""Trained runs of the experiments: reuse by settings, several at once, progress with an ETA.

A run is one network trained once (:func:`mrfrecon.training.train`) into its own folder::

    runs/<target>/<model>/seed-<s>/   checkpoint_best.pt, checkpoint_last.pt, log.csv, run.json, train.log

Runs are reused: a folder whose checkpoint was trained with the same settings (model, options,
target, seed, budget, schedule, early stopping, batch, learning rate, width, patch, augmentation) on the same cohort split
is not trained again; an interrupted one is resumed (bit-exact on the CPU); one with other
settings is replaced (its files are deleted first, with a log line). A run whose loss or
validation NRMSE became NaN is marked ``diverged`` (file ``diverged.txt``), reported, and kept
out of the tables; it is not retried with the same settings (CPU training is deterministic).

:func:`train_runs` trains a list of runs with ``jobs`` processes of one torch thread each: on a
shared 2-core machine single-threaded processes never wait at a barrier for a descheduled
thread, as torch's threads do with small batches (benchmarks/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MrfreconError
from ..io import CohortIndex, atomic_write_text
from .common import MAPS, Log, _quiet

__all__ = ["RunInfo", "RunSpec", "batchnorm_options", "canonical_options", "run_settings", "train_or_reuse",
           "train_runs"]

_SETTING_KEYS = ("model", "target", "maps", "seed", "budget", "batch_size", "lr", "width", "patch", "eval_every",
                 "validate_every", "schedule", "stopping", "augment", "head_init", "map_weights", "model_options",
                 "t1h2o_loss_mask")
DIVERGED = "diverged.txt"
#: Relative training cost per epoch (measured at the study preset, one thread): the order in which
#: :func:`train_runs` starts runs, longest first, so that the last ones to finish are short.
_COST = {"proposed": 10.0, "fang2018": 6.0, "balsiger2018": 2.0, "cohen2018": 1.0}


def run_settings(model: str, preset: str, *, target: str, seed: int, epochs: int | None = None,
                 steps: int | None = None, width: float | None = None, patch: int | None = None,
                 batch_size: int | None = None, model_options: Mapping[str, Any] | None = None,
                 maps: Sequence[str] = MAPS, patience: int | None = None, augment: bool | None = None) -> dict[str, Any]:
    """The training settings of a run as stored in a checkpoint's ``config`` (the preset's
    values unless overridden; :func:`mrfrecon.training.loop._resolve_config` decides them), for
    comparison with an existing run: the keys of :data:`_SETTING_KEYS`."""
    from ..training.loop import _resolve_config

    cfg = _resolve_config(model, preset, target, tuple(maps), seed, epochs, batch_size, None, width, patch,
                          dict(model_options or {}), patience, steps=steps, augment=augment)
    out = {k: cfg[k] for k in _SETTING_KEYS}
    out["model_options"] = canonical_options(model, model_options or {})
    return out


def canonical_options(model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without those equal to the model's defaults (:data:`mrfrecon.models.MODELS`),
    keys sorted: the proposed CNN with ``{"receptive_field": 11}`` is the same run as with ``{}``,
    so the receptive-field sweep reuses the comparison's 11 × 11 network of the same seed."""
    from ..models import MODELS

    defaults = MODELS[model].options if model in MODELS else {}
    return {k: options[k] for k in sorted(options) if not (k in defaults and _jsonable(defaults[k]) == _jsonable(options[k]))}


def batchnorm_options(model: str, batchnorm: bool) -> dict[str, Any]:
    """The options of ``model`` that take every batch norm out when ``batchnorm`` is False ({}
    when True: the networks as published). DRONE has none to begin with; the proposed CNN loses
    its head's BN too. Why an experiment would: at the study scale, batch statistics over batches
    of 8 patches held the 5 × 5 CNN's T1H2O at the constant predictor with the first study scheme
    (docs/study/first_scheme.md, "Batch normalization")."""
    from ..models import MODELS

    if batchnorm:
        return {}
    opts = MODELS[model].options if model in MODELS else {}
    return {k: False for k in ("batchnorm", "head_batchnorm") if k in opts}


def _cohort_identity(index: CohortIndex) -> dict[str, Any]:
    """What must not change for a run to be reused: the training and validation subjects and
    how the cohort was made (its attributes: preset, seed, simulation settings)."""
    return {"train": list(index.split["train"]), "val": list(index.split["val"]), "attrs": index.attrs}


@dataclass
class RunInfo:
    """A run: where, how (``"trained"``, ``"resumed"``, ``"reused"`` or ``"diverged"``), how
    long training took now (s; 0 when reused), the epochs it trained (``epochs_done``; fewer
    than the cap when it stopped early), and the best checkpoint's epoch and validation NRMSE
    (NaN and 0 for a run that diverged before its first validation)."""

    name: str
    model: str
    target: str
    path: Path
    checkpoint: Path
    status: str
    seconds: float
    best_epoch: int
    val_nrmse: float
    parameters: int
    settings: dict[str, Any]
    seed: int = 0
    epochs_done: int = 0  # evaluations logged (one per evaluation period)
    seconds_total: float = 0.0  # all periods of the run, this session or earlier (from log.csv)
    message: str = ""
    best_step: int = 0  # optimizer step of the kept (best-validation) model
    steps_done: int = 0  # optimizer steps trained
    converged: bool = False  # the stated criterion (convergence.json)
    convergence: str = ""  # its reasons in words

    @property
    def ok(self) -> bool:
        return self.status != "diverged"


@dataclass(frozen=True)
class RunSpec:
    """One run to make: a name for logs and tables, the model and its options, the target
    maps, the seed, and the folder."""

    name: str
    model: str
    target: str
    seed: int
    run_dir: Path
    model_options: Mapping[str, Any] = field(default_factory=dict)
    steps: int | None = None  # this run's budget in optimizer steps (None: the experiment's)


def _jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d))


def _log_rows(run_dir: Path) -> list[dict[str, str]]:
    import csv

    f = run_dir / "log.csv"
    if not f.is_file():
        return []
    try:
        return list(csv.DictReader(f.read_text().splitlines()))
    except (OSError, csv.Error):
        return []


def train_or_reuse(
    name: str,
    model: str,
    index: CohortIndex,
    run_dir: str | os.PathLike[str],
    *,
    preset: str,
    target: str = "reference",
    seed: int = 0,
    epochs: int | None = None,
    steps: int | None = None,
    width: float | None = None,
    patch: int | None = None,
    batch_size: int | None = None,
    patience: int | None = None,
    model_options: Mapping[str, Any] | None = None,
    augment: bool | None = None,
    log: Log = _quiet,
    show_progress: bool | None = None,
    reuse_only: bool = False,
) -> RunInfo:
    """Train ``model`` on ``index``'s training split into ``run_dir`` (best model on validation
    NRMSE, :func:`mrfrecon.training.train`), unless a run with the same settings is there
    (module docstring). A run that diverges returns status ``"diverged"`` instead of raising.
    ``reuse_only``: the folder belongs to another experiment; a finished run with these settings
    is reused, anything else raises :class:`MrfreconError` (nothing there is trained, resumed or
    deleted)."""
    from ..checkpoint import load_checkpoint
    from ..models import count_parameters
    from ..training import BEST, LAST, LOG, TrainingDiverged, train
    from ..training.loop import DEFAULT_T1H2O_LOSS_MASK

    run_dir = Path(run_dir)
    want = run_settings(model, preset, target=target, seed=seed, epochs=epochs, steps=steps, width=width, patch=patch,
                        batch_size=batch_size, model_options=model_options, patience=patience, augment=augment)
    ident = _jsonable(_cohort_identity(index))
    best, last, logf, meta, bad = run_dir / BEST, run_dir / LAST, run_dir / LOG, run_dir / "run.json", run_dir / DIVERGED
    status = "trained"
    stored = json.loads(meta.read_text()) if meta.is_file() else {}
    same = stored.get("cohort") == ident and _jsonable(stored.get("settings")) == _jsonable(want)
    if bad.is_file() and same:
        msg = bad.read_text().strip()
        log(f"{name}: diverged before with these settings ({msg}); not retried")
        return RunInfo(name, model, target, run_dir, best, "diverged", 0.0, 0, float("nan"), 0, want, seed, 0, 0.0, msg)
    if best.exists() or last.exists() or bad.exists():
        why: list[str] = []
        done_steps, total_steps, stopped = None, None, False
        if stored.get("cohort") != ident:
            why.append("cohort split or simulation settings")
        cfg: dict[str, Any] = {}
        if best.exists() or last.exists():
            src = load_checkpoint(last if last.exists() else best)
            cfg = (src.training or {}).get("config") or src.meta.get("config", {})
            if src.training is not None and "step" in src.training:
                done_steps = int(src.training["step"])
                stopped = bool(src.training.get("stopped"))
            total_steps = cfg.get("steps")
        cfg.setdefault("t1h2o_loss_mask", DEFAULT_T1H2O_LOSS_MASK)  # runs from before the option
        cfg["model_options"] = canonical_options(model, cfg.get("model_options") or {})
        diff = [k for k in _SETTING_KEYS if _jsonable(cfg.get(k)) != _jsonable(want[k])]
        if "stopping" in diff and done_steps is not None and not stopped and not _would_stop(run_dir, want):
            # early stopping only ends a run, it never changes its steps: a run that neither its own rule
            # nor the new one stops at any of its evaluations is the same run under both (finished:
            # reused; unfinished: resumed under the new rule)
            diff.remove("stopping")
        why += [f"{k} {cfg.get(k)!r} → {want[k]!r}" for k in diff]
        if bad.exists():
            why.append("an earlier run with other settings diverged")
        # a longer budget of a schedule that does not depend on it continues the run
        longer = (diff == ["budget"] and not bad.exists() and stored.get("cohort") == ident and not stopped
                  and done_steps is not None and _budget_grows(cfg, want))
        if longer:
            why = []
        if not why and not stopped and done_steps is not None and total_steps is not None and \
                (done_steps < total_steps or longer):
            status = "resumed"
        elif not why and best.exists() and (stopped or (done_steps is not None and done_steps == total_steps)):
            status = "reused"
        if reuse_only and status != "reused":
            raise MrfreconError(f"{run_dir}: not a finished run with these settings ("
                                + ("; ".join(why) if why else f"unfinished at step {done_steps} of {total_steps}")
                                + "); runs of another experiment are only reused, never trained here")
        if status not in ("resumed", "reused"):
            if not why:
                why.append("an unfinished run without its training state")
            log(f"{name}: settings changed ({'; '.join(why)}): training again in {run_dir}")
            for f in (best, last, logf, meta, bad):
                f.unlink(missing_ok=True)
    elif reuse_only:
        raise MrfreconError(f"{run_dir}: no trained run there (checkpoint_best.pt); runs of another experiment are "
                            "only reused, never trained here")
    t0 = time.perf_counter()
    if status != "reused":
        if status == "resumed":
            log(f"{name}: resuming the interrupted run in {run_dir}")
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta, json.dumps({"name": name, "settings": want, "cohort": ident, "preset": preset}, indent=1))
        try:
            budget = want["budget"]
            train(model, index.root, run_dir, preset=preset, target=target, seed=seed, epochs=budget.get("epochs"),
                  steps=budget.get("steps"), batch_size=want["batch_size"], width=want["width"], patch=want["patch"],
                  patience=want["stopping"]["patience"], model_options=dict(want["model_options"]), augment=want["augment"],
                  resume=status == "resumed", log=log, show_progress=show_progress)
        except TrainingDiverged as e:
            atomic_write_text(bad, str(e) + "\n")
            log(f"{name}: DIVERGED — {e}")
            return RunInfo(name, model, target, run_dir, best, "diverged", time.perf_counter() - t0, 0, float("nan"), 0,
                           want, seed, 0, 0.0, str(e))
    else:
        log(f"{name}: reusing {best} (same settings)")
    seconds = time.perf_counter() - t0 if status != "reused" else 0.0
    ck = load_checkpoint(best)
    rows = _log_rows(run_dir)
    total = sum(float(r.get("seconds") or 0) for r in rows)
    conv = _convergence(run_dir)
    return RunInfo(name, model, target, run_dir, best, status, seconds, ck.epoch, ck.val_nrmse,
                   count_parameters(ck.build_model()), want, seed, len(rows), total,
                   best_step=int(ck.meta.get("step", 0)), steps_done=int(rows[-1]["step"]) if rows else 0,
                   converged=bool(conv.get("converged")), convergence=str(conv.get("reason", "no verdict (older run)")))


def _would_stop(run_dir: Path, want: Mapping[str, Any]) -> bool:
    """Whether the early stopping of ``want`` would have ended the run in ``run_dir`` at one of
    its logged evaluations (before the end of its budget)."""
    from ..training.stopping import EarlyStopping

    rule = EarlyStopping(**want["stopping"])
    rows = [r for r in _log_rows(run_dir) if r.get("val_nrmse_mean") not in (None, "")]
    scores = [float(r["val_nrmse_mean"]) for r in rows]
    steps = [int(r["step"]) for r in rows]
    budget = int(want["budget"].get("steps", 0)) or None
    return any((budget is None or steps[i] < budget) and rule.should_stop(scores[: i + 1], steps[: i + 1])
               for i in range(len(rows)))


def _budget_grows(cfg: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether ``want``'s budget extends the stored run's (same unit, more of it) under a schedule
    whose rate does not depend on the budget (not cosine)."""
    from ..training.schedule import parse_schedule

    old, new = cfg.get("budget") or {}, want["budget"]
    if set(old) != set(new) or parse_schedule(want["schedule"]).name == "cosine":
        return False
    key = next(iter(new))
    return int(new[key]) > int(old[key])


def _convergence(run_dir: Path) -> dict[str, Any]:
    """The run's ``convergence.json`` (:func:`mrfrecon.training.stopping.assess_convergence`), or {}."""
    from ..training.loop import CONVERGENCE

    f = run_dir / CONVERGENCE
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


# ============================================================================ several runs
def _worker_init(threads: int) -> None:
    """A training process: ``threads`` torch threads, and it ends with its parent (Linux)."""
    import signal

    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch

    torch.set_num_threads(threads)


def _run_one(spec: RunSpec, index_root: str, kw: dict[str, Any]) -> RunInfo:
    index = CohortIndex.load(index_root)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    with open(spec.run_dir / "train.log", "a", buffering=1) as fh:
        def log(msg: str) -> None:
            fh.write(time.strftime("%H:%M:%S ") + msg + "\n")

        kw = dict(kw, steps=spec.steps) if spec.steps is not None else kw
        return train_or_reuse(spec.name, spec.model, index, spec.run_dir, target=spec.target, seed=spec.seed,
                              model_options=dict(spec.model_options), log=log, show_progress=False, **kw)


def _hms(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def estimate_remaining(specs: Sequence[RunSpec], done: Mapping[str, RunInfo], cap: int, jobs: int) -> float | None:
    """Seconds until every run of ``specs`` is trained, from the runs' ``log.csv``: per model,
    the mean seconds per epoch seen so far and the median epochs of its finished runs (the
    epoch cap while none has finished), divided over ``jobs`` processes. ``None`` while some
    model has no finished epoch yet."""
    import statistics

    per_epoch: dict[str, list[float]] = {}
    epochs_of: dict[str, list[int]] = {}
    progress: dict[str, int] = {}
    for s in specs:
        rows = _log_rows(s.run_dir)
        progress[s.name] = len(rows)
        per_epoch.setdefault(s.model, []).extend(float(r["seconds"]) for r in rows if r.get("seconds"))
        if s.name in done and done[s.name].ok:
            epochs_of.setdefault(s.model, []).append(len(rows))
    left = 0.0
    for s in specs:
        if s.name in done:
            continue
        if not per_epoch.get(s.model):
            return None
        expect = statistics.median(epochs_of[s.model]) if epochs_of.get(s.model) else cap
        left += max(expect - progress[s.name], 1) * statistics.fmean(per_epoch[s.model])
    return left / max(jobs, 1)


def train_runs(
    specs: Sequence[RunSpec],
    index: CohortIndex,
    *,
    preset: str,
    jobs: int = 1,
    threads: int = 1,
    epochs: int | None = None,
    steps: int | None = None,
    width: float | None = None,
    patch: int | None = None,
    patience: int | None = None,
    augment: bool | None = None,
    log: Log = _quiet,
    progress: Callable[[int, str], Any] | None = None,
    report_every: float = 300.0,
) -> list[RunInfo]:
    """Train (or reuse, or resume) every run of ``specs``; returns their :class:`RunInfo` in
    the order of ``specs``.

    ``jobs`` processes train at once, each with ``threads`` torch threads (``jobs=1`` trains in
    this process with its current threads); the runs of the first target start first, and
    within a target the longest. Each run logs to its
    folder's ``train.log``; ``log`` gets a line when a run ends and, every ``report_every``
    seconds, the state of all runs with an ETA. ``progress(total, description)``: a context
    manager yielding ``update(done)`` (runs finished)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from .common import no_bar

    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be distinct: {names}")
    kw = {"preset": preset, "epochs": epochs, "steps": steps, "width": width, "patch": patch, "patience": patience,
          "augment": augment}
    want = run_settings("cohen2018", preset, target="reference", seed=0, epochs=epochs, steps=steps)
    budget = want["budget"]
    # evaluations per run at the budget (the ETA's cap); the preset's epochs when the budget is in epochs
    cap = -(-budget["steps"] // want["eval_every"]) if "steps" in budget and want["eval_every"] else \
        int(budget.get("epochs", 1)) // max(1, want["validate_every"])
    # targets in the order given (the first target's table is complete first), longest runs first within one
    targets = list(dict.fromkeys(s.target for s in specs))
    order = sorted(specs, key=lambda s: (targets.index(s.target), -_COST.get(s.model, 1.0)))
    done: dict[str, RunInfo] = {}
    t0 = time.perf_counter()
    bar = progress if progress is not None else no_bar

    def finished(info: RunInfo, cb: Callable[[int], None]) -> None:
        done[info.name] = info
        eta = estimate_remaining(specs, done, cap, jobs)
        log(f"[{len(done)}/{len(specs)}] {info.name}: {info.status}"
            + (f", best at step {info.best_step}/{info.steps_done} (val NRMSE {info.val_nrmse:.4f}), "
               f"{'converged' if info.converged else 'NOT converged'}, {info.seconds:.0f} s" if info.ok
               else f" — {info.message}")
            + f"; elapsed {_hms(time.perf_counter() - t0)}" + (f", ETA {_hms(eta)}" if eta is not None else ""))
        cb(len(done))

    with bar(len(specs), f"training {len(specs)} runs ({jobs} at a time)") as cb:
        if jobs <= 1:
            for s in order:
                finished(_run_one(s, str(index.root), kw), cb)
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                     initargs=(threads,)) as pool:
                futs = {pool.submit(_run_one, s, str(index.root), kw): s for s in order}
                pending = set(futs)
                last_report = time.perf_counter()
                while pending:
                    ready, pending = wait(pending, timeout=30, return_when=FIRST_COMPLETED)
                    for f in ready:
                        finished(f.result(), cb)
                    if pending and time.perf_counter() - last_report >= report_every:
                        last_report = time.perf_counter()
                        running = [s for s in order if s.name not in done and _log_rows(s.run_dir)]
                        eta = estimate_remaining(specs, done, cap, jobs)
                        state = ", ".join(f"{s.name} evaluation {len(_log_rows(s.run_dir))}" for s in running[:jobs])
                        log(f"[{len(done)}/{len(specs)} runs done] running: {state or '-'}; elapsed "
                            f"{_hms(time.perf_counter() - t0)}" + (f", ETA {_hms(eta)}" if eta is not None else ""))
    return [done[s.name] for s in specs]
