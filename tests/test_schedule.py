"""Learning-rate schedules, smoothed early stopping and the convergence criterion (pure pieces of
training), against closed forms and synthetic curves."""

from __future__ import annotations

import math

import pytest

from mrfrecon.errors import MrfreconError
from mrfrecon.training.schedule import Schedule, parse_schedule, plateau_factor
from mrfrecon.training.stopping import EarlyStopping, assess_convergence, smoothed


def test_cosine_with_warmup_against_its_closed_form():
    s = parse_schedule("cosine:warmup=10,final=0.05")
    total = 110
    # warm-up: (step + 1) / W
    assert [s.factor(k, total) for k in range(10)] == pytest.approx([(k + 1) / 10 for k in range(10)])
    # then f + (1 − f)·(1 + cos(π t))/2 with t = (step − W)/(total − 1 − W)
    for k in (10, 35, 60, 85, 109):
        t = (k - 10) / (total - 1 - 10)
        assert s.factor(k, total) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)), abs=1e-12)
    assert s.factor(10, total) == pytest.approx(1.0)
    assert s.factor(109, total) == pytest.approx(0.05)
    assert s.factor(59, total) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))


def test_step_constant_and_plateau_factors():
    s = parse_schedule("step:warmup=4,every=10,decay=0.5")
    assert s.factor(3, 100) == pytest.approx(1.0)
    assert [s.factor(k, 100) for k in (4, 13, 14, 23, 24, 44)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.0625])
    assert parse_schedule("constant").factor(12345, 20000) == 1.0
    # plateau: ×0.5 after 2 evaluations without a new best, counting afresh; floor 0.2
    scores = [1.0, 0.9, 0.95, 0.92, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]
    assert plateau_factor(scores[:2], 0.5, 2, 0.2) == 1.0
    assert plateau_factor(scores[:4], 0.5, 2, 0.2) == 0.5
    assert plateau_factor(scores[:5], 0.5, 2, 0.2) == 0.5  # a new best does not raise it back
    assert plateau_factor(scores[:7], 0.5, 2, 0.2) == 0.25
    assert plateau_factor(scores, 0.5, 2, 0.2) == 0.2  # the floor
    p = parse_schedule("plateau:decay=0.5,patience=2,floor=0.2")
    assert p.factor(50, 100, scores[:4]) == 0.5


def test_schedule_text_round_trips_and_bad_input_names_the_option():
    s = parse_schedule("cosine:warmup=300,final=0.01")
    assert parse_schedule(s.to_dict()) == s and str(s) == "cosine:warmup=300,final=0.01"
    for text, what in [("linear", "unknown schedule 'linear'"), ("cosine:warmup=-1", "warmup must be >= 0"),
                       ("step:every=10,decay=0", r"decay must be in \(0, 1\)"),
                       ("step:every=10,decay=-0.5", r"decay must be in \(0, 1\)"),
                       ("plateau:decay=1.5", r"decay must be in \(0, 1\)"), ("step", "every must be >= 1"),
                       ("cosine:warmup=2.5", "whole number"), ("cosine:speed=3", "unknown parameter"),
                       ("cosine:warmup", "expected key=value"), ("cosine:final=x", "must be a number"),
                       ("cosine:final=nan", "must be finite"), ("constant:warmup=3", "unknown parameter")]:
        with pytest.raises(MrfreconError, match=what) as e:
            parse_schedule(text)
        assert str(e.value).startswith("--schedule") and "\n" not in str(e.value)
    with pytest.raises(MrfreconError, match="warmup 500 must be shorter than the budget of 500"):
        parse_schedule("cosine:warmup=500").check_budget(500)
    Schedule("cosine", {"warmup": 499}).check_budget(500)


def test_smoothed_early_stopping_ignores_a_spike_and_waits_for_the_minimum_budget():
    # a falling curve with one spike (as the study's B1 jumps 0.066 → 0.223 → 0.078), then a plateau
    curve = [0.30, 0.20, 0.15, 0.40, 0.12, 0.11, 0.10, 0.10, 0.105, 0.102, 0.103, 0.104, 0.101]
    steps = [100 * (i + 1) for i in range(len(curve))]
    assert smoothed([3, 1, 2, 10, 4], 3) == [3, 2, 2, 2, 4]
    raw = EarlyStopping(patience=1, window=1)
    # the raw curve with patience 1 stops at the spike
    assert raw.should_stop(curve[:4], steps[:4])
    med = EarlyStopping(patience=3, window=3)
    assert not any(med.should_stop(curve[:k], steps[:k]) for k in range(1, 10))
    stop_at = next(k for k in range(1, len(curve) + 1) if med.should_stop(curve[:k], steps[:k]))
    # smoothed best: the median of (0.10, 0.10, 0.105) at evaluation 8 ... no better for 3 evaluations
    sm = smoothed(curve, 3)
    best = min(range(len(sm)), key=lambda i: (sm[i], i))
    assert stop_at == best + 1 + 3
    # the minimum budget holds the stop back
    late = EarlyStopping(patience=3, window=3, min_steps=steps[stop_at - 1] + 100)
    assert not late.should_stop(curve[:stop_at], steps[:stop_at])
    assert late.should_stop(curve[: stop_at + 1], steps[: stop_at + 1])
    assert not EarlyStopping(patience=0).should_stop(curve, steps)
    with pytest.raises(MrfreconError, match="--stop-window"):
        EarlyStopping(patience=2, window=0)


def test_convergence_criterion():
    steps = list(range(100, 2100, 100))
    falling = [1.0 / (1 + 0.3 * i) for i in range(20)]
    flat = [0.2 + 0.5 * math.exp(-i) for i in range(20)]
    v = assess_convergence(steps, falling, 0.01, False)
    assert not v.converged and not v.plateau and v.settled and "still falling" in v.reason
    v = assess_convergence(steps, flat, 1.0, False)
    assert not v.converged and v.plateau and not v.settled and "not decayed" in v.reason
    v = assess_convergence(steps, flat, 0.01, False)
    assert v.converged and abs(v.loss_change) < 0.01
    assert assess_convergence(steps, flat, 1.0, True).converged  # stopped on the smoothed validation
    # under a schedule that decays by itself, a run stopped before its rate decayed has not settled
    v = assess_convergence(steps, flat, 0.87, True, rate_decays=True)
    assert not v.converged and not v.settled and "stopped early" in v.reason and "not decayed" in v.reason
    assert assess_convergence(steps, flat, 0.05, True, rate_decays=True).converged
    assert not assess_convergence([], [], 1.0, False).converged


def test_inverse_variance_map_weights_against_numpy():
    from types import SimpleNamespace

    import numpy as np

    from mrfrecon.training.loop import _map_weights

    rng = np.random.default_rng(0)
    fg = [rng.random((2, 9, 9)) > 0.3 for _ in range(2)]
    targets = [np.stack([rng.normal(0.4, sd, (2, 9, 9)) for sd in (0.05, 0.3, 0.15)], axis=1).astype(np.float32)
               for _ in range(2)]
    data = SimpleNamespace(train=[SimpleNamespace(foreground=f, target={"ff": t[:, 1]}) for f, t in zip(fg, targets)])
    cfg = {"maps": ["t1h2o", "ff", "b1"], "map_weights": "equal", "t1h2o_loss_mask": "foreground"}
    assert _map_weights(targets, data, cfg).tolist() == [1.0, 1.0, 1.0]
    cfg["map_weights"] = "inverse-variance"
    w = _map_weights(targets, data, cfg).numpy()
    var = np.array([np.concatenate([t[:, i][f] for t, f in zip(targets, fg)]).var() for i in range(3)])
    expect = (1 / var) / (1 / var).mean()
    np.testing.assert_allclose(w, expect, rtol=1e-5)
    assert w[0] > w[2] > w[1]  # the map of smallest variance weighs most
    # with the evaluation mask the T1H2O variance is taken where the target FF < 0.65
    cfg["t1h2o_loss_mask"] = "evaluation"
    w2 = _map_weights(targets, data, cfg).numpy()
    m = [f & (t[:, 1] < 0.65) for t, f in zip(targets, fg)]
    var[0] = np.concatenate([t[:, 0][k] for t, k in zip(targets, m)]).var()
    np.testing.assert_allclose(w2, (1 / var) / (1 / var).mean(), rtol=1e-5)
