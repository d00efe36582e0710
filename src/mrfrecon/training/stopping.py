"""Early stopping on a smoothed validation curve, and the convergence criterion of a run.

Both are pure functions of the run's history (the validation scores and training losses at its
evaluations), so a resumed run decides exactly as an uninterrupted one would.

Why smoothed: at the study scale the validation NRMSE of a patch network jumps 2–3× from one
evaluation to the next (batch 8, a few hundred steps apart; seed 2 of the proposed CNN, B1:
0.066 → 0.223 → 0.078). Patience on the raw curve then stops a run that is still learning
(7 of the first study's 12 runs). The median of the last k evaluations ignores single spikes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MrfreconError

__all__ = ["Convergence", "EarlyStopping", "assess_convergence", "smoothed"]


def smoothed(scores: Sequence[float], window: int) -> list[float]:
    """Running median of the last ``window`` scores at each evaluation (fewer at the start)."""
    if window < 1:
        raise MrfreconError(f"smoothing window must be >= 1 evaluation, got {window}")
    s = [float(v) for v in scores]
    return [float(np.median(s[max(0, i + 1 - window) : i + 1])) for i in range(len(s))]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the smoothed validation score has not improved for ``patience`` evaluations,
    once at least ``min_steps`` optimizer steps are done.

    Parameters
    ----------
    patience
        Evaluations without a new best smoothed score (0: never stop early).
    window
        Evaluations in the running median (1: the raw curve, as the first study).
    min_steps
        The budget every run gets before it may stop.
    min_delta
        Relative improvement that counts as one (0.001: 0.1 % better than the best so far).
    """

    patience: int = 0
    window: int = 3
    min_steps: int = 0
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise MrfreconError(f"--patience: must be >= 0 evaluations (0: no early stopping), got {self.patience}")
        if self.window < 1:
            raise MrfreconError(f"--stop-window: must be >= 1 evaluation, got {self.window}")
        if self.min_steps < 0:
            raise MrfreconError(f"--min-steps: must be >= 0, got {self.min_steps}")
        if not 0 <= self.min_delta < 1:
            raise MrfreconError(f"early stopping min_delta: must be in [0, 1), got {self.min_delta}")

    def best_index(self, scores: Sequence[float]) -> int:
        """Index of the evaluation with the best smoothed score (-1 if none)."""
        best, at = math.inf, -1
        for i, v in enumerate(smoothed(scores, self.window) if scores else []):
            if v < best * (1.0 - self.min_delta):
                best, at = v, i
        return at

    def should_stop(self, scores: Sequence[float], steps: Sequence[int]) -> bool:
        """Whether a run with validation ``scores`` at optimizer ``steps`` (one per evaluation)
        stops now."""
        if not self.patience or not scores or steps[-1] < self.min_steps:
            return False
        return len(scores) - 1 - self.best_index(scores) >= self.patience

    def to_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "window": self.window, "min_steps": self.min_steps,
                "min_delta": self.min_delta}


@dataclass(frozen=True)
class Convergence:
    """The verdict on a finished run: ``converged`` and the reasons in words."""

    converged: bool
    plateau: bool  # training loss: the last 10 % of steps within `tolerance` of the 10 % before
    settled: bool  # the learning rate decayed, or early stopping ended the run
    loss_change: float  # relative change of the mean training loss, last 10 % vs the 10 % before
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"converged": self.converged, "plateau": self.plateau, "settled": self.settled,
                "loss_change": self.loss_change, "reason": self.reason}


def assess_convergence(steps: Sequence[int], losses: Sequence[float], lr_factor_end: float, stopped_early: bool,
                       *, fraction: float = 0.1, tolerance: float = 0.01, decayed: float = 0.1,
                       what: str = "training loss", rate_decays: bool = False) -> Convergence:
    """The stated convergence criterion of mrfrecon's runs.

    A run has converged when (1) its training loss has flattened: the mean training loss over the
    last ``fraction`` of its steps is within ``tolerance`` (relative) of the mean over the
    ``fraction`` before (a still-falling loss fails; a rising one passes — that is overfitting,
    which the best-validation checkpoint handles), and (2) it has settled: the learning rate has
    decayed to ≤ ``decayed`` × its peak, or early stopping on the smoothed validation ended it.

    ``steps``: the optimizer step of each point; ``losses``: the loss there (same length). The
    training loop passes the loss of a fixed probe set of training samples every ≈ 1 % of the
    budget (``what`` "probe-set loss"): the minibatch losses scatter too much for a 1 % tolerance.
    ``lr_factor_end``: the schedule's factor at the last step. ``rate_decays``: the schedule lowers
    the rate by itself over the budget (cosine, step); then a run that early stopping ended before
    its rate decayed has not settled — it stopped before annealing (measured:
    docs/study/budget/early_stopping_cosine.md).
    """
    steps_a = np.asarray(steps, dtype=float)
    loss_a = np.asarray(losses, dtype=float)
    if steps_a.size == 0:
        return Convergence(False, False, False, math.nan, "no training logged")
    end = steps_a[-1]
    last = loss_a[steps_a > end * (1 - fraction)]
    before = loss_a[(steps_a > end * (1 - 2 * fraction)) & (steps_a <= end * (1 - fraction))]
    if last.size == 0 or before.size == 0:
        change, plateau = math.nan, False
    else:
        change = float((last.mean() - before.mean()) / before.mean())
        plateau = change > -tolerance
    settled = lr_factor_end <= decayed or (stopped_early and not rate_decays)
    parts = []
    parts.append(f"{what} {change:+.1%} over the last {fraction:.0%} of steps"
                 + (" (flat)" if plateau else " (still falling)") if math.isfinite(change)
                 else "too few evaluations to judge the training loss")
    parts.append("stopped on the smoothed validation" if stopped_early and not rate_decays else
                 ("stopped early, " if stopped_early else "") + f"learning rate at {lr_factor_end:.3g} × its peak"
                 + (" (decayed)" if lr_factor_end <= decayed else " (not decayed)"))
    return Convergence(bool(plateau and settled), bool(plateau), bool(settled), change, "; ".join(parts))
