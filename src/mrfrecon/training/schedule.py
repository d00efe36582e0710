"""Learning-rate schedules over optimizer steps, as small pure pieces the training loop uses.

A schedule is written ``NAME[:key=value,...]`` (the ``--schedule`` option) and is a function of
the optimizer step and the run's step budget, except ``plateau``, whose factor also depends on
the validation history (its state is the list of validation scores, which the run keeps anyway,
so a resumed run recomputes it exactly):

- ``constant``: the base rate throughout (the paper: Adam 1e-3, no schedule).
- ``cosine[:warmup=W,final=F]``: linear warm-up from 0 over W steps, then half a cosine from the
  base rate down to F × the base rate at the last step (Loshchilov & Hutter, "SGDR: stochastic
  gradient descent with warm restarts", ICLR 2017, eq. 5, one cycle without restart; warm-up:
  Goyal et al., "Accurate, large minibatch SGD", 2017, section 2.2).
- ``step[:warmup=W,every=S,decay=D]``: after the warm-up, the rate is multiplied by D every S steps.
- ``plateau[:warmup=W,decay=D,patience=P,floor=F]``: after the warm-up, multiplied by D each time
  the validation score has not improved on its best for P evaluations, never below F × base
  (as ``torch.optim.lr_scheduler.ReduceLROnPlateau`` with mode "min", threshold 0).

Warm-up matters here because Adam's first steps, with bias-corrected moments from a handful of
gradients, are the largest relative updates of the run; for deep networks they move the batch
norm scales and the head far from where the data want them (docs/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import MrfreconError

__all__ = ["SCHEDULES", "Schedule", "parse_schedule"]

#: Parameters of each schedule and their defaults.
SCHEDULES: dict[str, dict[str, float]] = {
    "constant": {},
    "cosine": {"warmup": 0, "final": 0.01},
    "step": {"warmup": 0, "every": 0, "decay": 0.1},
    "plateau": {"warmup": 0, "decay": 0.5, "patience": 3, "floor": 0.01},
}
_INTEGER = ("warmup", "every", "patience")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: the factor that multiplies the base rate at each step.

    Parameters
    ----------
    name
        One of :data:`SCHEDULES`.
    params
        Its parameters (missing ones take the defaults of :data:`SCHEDULES`): ``warmup`` steps
        (int ≥ 0), ``final`` (cosine: the last factor, 0 ≤ F < 1), ``every`` (step: steps between
        decays, int ≥ 1), ``decay`` (0 < D < 1), ``patience`` (plateau: evaluations, int ≥ 1),
        ``floor`` (plateau: the smallest factor, 0 < F ≤ 1).
    """

    name: str
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise MrfreconError(f"--schedule: unknown schedule {self.name!r}; expected one of {', '.join(SCHEDULES)}")
        allowed = SCHEDULES[self.name]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            known = ", ".join(allowed) or "none"
            raise MrfreconError(f"--schedule {self.name}: unknown parameter(s) {', '.join(unknown)} (known: {known})")
        merged = {**allowed, **{k: float(v) for k, v in self.params.items()}}
        for k in _INTEGER:
            if k in merged:
                if merged[k] != int(merged[k]):
                    raise MrfreconError(f"--schedule {self.name}: {k} must be a whole number of steps, got {merged[k]:g}")
                merged[k] = int(merged[k])
        object.__setattr__(self, "params", merged)
        p = merged
        if p.get("warmup", 0) < 0:
            raise MrfreconError(f"--schedule {self.name}: warmup must be >= 0 steps, got {p['warmup']}")
        if "decay" in p and not 0 < p["decay"] < 1:
            raise MrfreconError(f"--schedule {self.name}: decay must be in (0, 1), got {p['decay']:g}")
        if "final" in p and not 0 <= p["final"] < 1:
            raise MrfreconError(f"--schedule {self.name}: final must be in [0, 1), got {p['final']:g}")
        if "floor" in p and not 0 < p["floor"] <= 1:
            raise MrfreconError(f"--schedule {self.name}: floor must be in (0, 1], got {p['floor']:g}")
        if self.name == "step" and p["every"] < 1:
            raise MrfreconError("--schedule step: every must be >= 1 step (how often the rate decays)")
        if self.name == "plateau" and p["patience"] < 1:
            raise MrfreconError(f"--schedule plateau: patience must be >= 1 evaluation, got {p['patience']}")

    @property
    def warmup(self) -> int:
        return int(self.params.get("warmup", 0))

    @property
    def decays_by_itself(self) -> bool:
        """Whether the rate falls on a fixed course over the steps (cosine, step), as opposed to
        staying constant or falling only when validation stalls (plateau)."""
        return self.name in ("cosine", "step")

    def check_budget(self, steps: int) -> None:
        """Refuse a warm-up that is not shorter than the run's ``steps``."""
        if self.warmup >= steps:
            raise MrfreconError(f"--schedule {self.name}: warmup {self.warmup} must be shorter than the budget of "
                                f"{steps} optimizer steps")

    def factor(self, step: int, total: int, scores: Sequence[float] = ()) -> float:
        """The multiplier of the base rate for optimizer step ``step`` (0-based) of ``total``;
        ``scores``: the validation scores so far, in order (``plateau`` only)."""
        p, w = self.params, self.warmup
        if self.name == "constant":
            return 1.0
        if step < w:  # linear warm-up: (step + 1)/w, so the first step is not a zero step
            return (step + 1) / w
        if self.name == "cosine":
            span = max(1, total - 1 - w)
            t = min(1.0, (step - w) / span)
            return p["final"] + (1.0 - p["final"]) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.name == "step":
            return float(p["decay"] ** ((step - w) // p["every"]))
        return plateau_factor(scores, p["decay"], p["patience"], p["floor"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    def __str__(self) -> str:
        args = ",".join(f"{k}={v:g}" for k, v in self.params.items())
        return self.name + (f":{args}" if args else "")


def plateau_factor(scores: Sequence[float], decay: float, patience: int, floor: float) -> float:
    """Reduce-on-plateau's factor after the validation ``scores`` (lower is better): ×``decay``
    each time ``patience`` evaluations pass without a new best, counting afresh after each cut;
    never below ``floor``."""
    f, best, since = 1.0, math.inf, 0
    for s in scores:
        if s < best:
            best, since = s, 0
        else:
            since += 1
            if since >= patience:
                f, since = max(floor, f * decay), 0
    return f


def parse_schedule(text: str | Mapping[str, Any] | Schedule) -> Schedule:
    """``"cosine:warmup=200,final=0.01"`` (or a stored ``{"name": ..., **params}``) → :class:`Schedule`."""
    if isinstance(text, Schedule):
        return text
    if isinstance(text, Mapping):
        d = dict(text)
        return Schedule(str(d.pop("name", "")), d)
    name, _, rest = str(text).strip().partition(":")
    params: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise MrfreconError(f"--schedule {name}: expected key=value, got {item!r}")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise MrfreconError(f"--schedule {name}: {key.strip()} must be a number, got {value!r}") from None
        if not math.isfinite(params[key.strip()]):
            raise MrfreconError(f"--schedule {name}: {key.strip()} must be finite, got {value!r}")
    return Schedule(name.strip(), params)
