"""Training: a tiny synthetic cohort (no simulation pipeline needed), loss goes down, checkpoints
reload, resume equals an uninterrupted run, two-process DDP (gloo), bad input, every model kind."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from mrfrecon import MrfreconError, Sequence, simulate
from mrfrecon.io import CohortIndex, Scan, save_scan

FRAMES = 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def short_sequence() -> Sequence:
    """80 spokes of the MRF-WF schedule (every ~18th), 8 per frame → 10 frames."""
    full = Sequence.mrf_wf()
    idx = np.linspace(0, full.spokes - 1, 8 * FRAMES).astype(int)
    return Sequence(flip_angle_deg=full.flip_angle_deg[idx], te_ms=full.te_ms[idx], tr_ms=full.tr_ms[idx],
                    ti_ms=full.ti_ms, spokes_per_frame=8, name="mrf-wf-short")


def _smooth(rng, shape, lo, hi, sigma=3.0):
    a = gaussian_filter(rng.standard_normal(shape), sigma=(0, sigma, sigma))
    a = (a - a.min()) / (a.max() - a.min())
    return (lo + (hi - lo) * a).astype(np.float32)


def make_scan(seed: int, seq: Sequence, slices: int = 2, size: int = 24, snr: float = 50.0) -> Scan:
    """One synthetic scan: smooth random T1H2O (ms), FF and B1 maps in an elliptic foreground,
    fingerprints from ``simulate`` plus complex noise; reference = maps with a 1 % perturbation."""
    rng = np.random.default_rng(seed)
    shape = (slices, size, size)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    fg = np.broadcast_to(((yy - c) / (0.45 * size)) ** 2 + ((xx - c) / (0.4 * size)) ** 2 <= 1, shape).copy()
    maps = {"t1h2o": _smooth(rng, shape, 900.0, 1600.0), "ff": _smooth(rng, shape, 0.0, 0.8),
            "b1": _smooth(rng, shape, 0.6, 1.2)}
    fp = simulate(seq, t1h2o=maps["t1h2o"].ravel(), ff=maps["ff"].ravel(), b1=maps["b1"].ravel())
    series = fp.reshape(*shape, seq.frames).transpose(0, 3, 1, 2) * fg[:, None]
    sd = np.abs(series[:, :, fg[0]]).mean() / snr
    series = series + sd * (rng.standard_normal(series.shape) + 1j * rng.standard_normal(series.shape))
    for k in maps:
        maps[k][~fg] = 0.0
    reference = {k: np.where(fg, v * (1 + 0.01 * rng.standard_normal(shape)), 0).astype(np.float32) for k, v in maps.items()}
    labels = np.zeros(shape, np.int16)
    labels[:, :, : size // 2][fg[:, :, : size // 2]] = 1
    labels[:, :, size // 2 :][fg[:, :, size // 2 :]] = 2
    return Scan(series=series.astype(np.complex64), foreground=fg, sequence=seq, maps=maps, reference=reference,
                labels=labels, label_names={1: "right_muscle", 2: "left_muscle"}, attrs={"subject": f"s{seed:03d}"})


def make_cohort(root: Path, n: int = 4, split=(2, 1, 1), **kw) -> Path:
    """``n`` scans in ``root`` with ``cohort.json`` (train/val/test = ``split``)."""
    seq = short_sequence()
    root.mkdir(parents=True, exist_ok=True)
    subjects = {}
    for i in range(n):
        save_scan(root / f"s{i:03d}.h5", make_scan(i, seq, **kw))
        subjects[f"s{i:03d}"] = {"file": f"s{i:03d}.h5"}
    names = list(subjects)
    a, b = split[0], split[0] + split[1]
    CohortIndex(root, subjects, {"train": names[:a], "val": names[a:b], "test": names[b:]}).save()
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def _log(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_training_lowers_validation_nrmse_and_keeps_the_best(cohort, tmp_path):
    from mrfrecon.checkpoint import load_checkpoint
    from mrfrecon.training import train

    out = tmp_path / "run"
    best = train("proposed", cohort, out, preset="tiny", width=0.1, patch=8, epochs=4, log=None)
    assert best == out / "checkpoint_best.pt" and (out / "checkpoint_last.pt").is_file()
    rows = _log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) >= {"train_loss", "val_nrmse_t1h2o", "val_nrmse_ff", "val_nrmse_b1", "val_nrmse_mean",
                            "seconds", "patches_per_s"}
    val = [float(r["val_nrmse_mean"]) for r in rows]
    loss = [float(r["train_loss"]) for r in rows]
    assert loss[-1] < 0.5 * loss[0]
    assert min(val[1:]) < val[0]
    ck = load_checkpoint(best)
    assert ck.epoch == 1 + int(np.argmin(val))  # the lowest validation NRMSE is kept (not the highest)
    assert ck.val_nrmse == pytest.approx(min(val), rel=1e-5)
    assert ck.frames == FRAMES and ck.maps == ("t1h2o", "ff", "b1") and ck.target == "reference"
    assert ck.spec["name"] == "proposed" and ck.spec["width"] == 0.1
    assert ck.sequence == short_sequence() and ck.meta["mrfrecon_version"]
    assert len(ck.meta["git_hash"]) == 40 or ck.meta["git_hash"] == "unknown"
    # the map range comes from the training split only (s000, s001), not from val/test
    from mrfrecon.io import load_scan

    ff_train = np.concatenate([load_scan(cohort / f"s00{i}.h5", series=False).reference["ff"].ravel() for i in (0, 1)])
    fg_train = np.concatenate([load_scan(cohort / f"s00{i}.h5", series=False).foreground.ravel() for i in (0, 1)])
    norm = ck.map_norm
    assert norm.maximum[1] == pytest.approx(float(ff_train[fg_train].max()))
    assert norm.minimum[1] == pytest.approx(float(ff_train[fg_train].min()))


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_resume_equals_uninterrupted(cohort, tmp_path):
    from mrfrecon.training import train

    kw = dict(preset="tiny", width=0.1, patch=8, seed=3, log=None)
    train("proposed", cohort, tmp_path / "a", epochs=2, **kw)
    train("proposed", cohort, tmp_path / "b", epochs=1, **kw)
    train("proposed", cohort, tmp_path / "b", epochs=2, resume=True, **kw)
    a, b = _state(tmp_path / "a" / "checkpoint_last.pt"), _state(tmp_path / "b" / "checkpoint_last.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    oa, ob = a["training"]["optimizer"]["state"], b["training"]["optimizer"]["state"]
    for i in oa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(oa[i][k], ob[i][k])
    assert torch.equal(a["training"]["rng"]["data_order"], b["training"]["rng"]["data_order"])
    la, lb = _log(tmp_path / "a" / "log.csv"), _log(tmp_path / "b" / "log.csv")
    drop = ("seconds", "patches_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == [{k: v for k, v in r.items() if k not in drop} for r in lb]
    # a different seed gives different weights (the comparison above is not vacuous)
    train("proposed", cohort, tmp_path / "c", epochs=1, **{**kw, "seed": 4})
    c = _state(tmp_path / "c" / "checkpoint_last.pt")
    assert not torch.equal(c["state_dict"]["head.0.weight"], b["state_dict"]["head.0.weight"])
    # finished: asking to resume to the same epoch count says so; other settings are refused
    with pytest.raises(MrfreconError, match="already finished"):
        train("proposed", cohort, tmp_path / "b", epochs=2, resume=True, **kw)
    with pytest.raises(MrfreconError, match="different settings.*batch_size"):
        train("proposed", cohort, tmp_path / "b", epochs=3, resume=True, batch_size=4, **kw)


@pytest.mark.slow
def test_two_process_ddp_gloo_writes_a_checkpoint(cohort, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MRFRECON_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mrfrecon", "train", "--model", "proposed", "--cohort", str(cohort), "--out", str(out),
           "--preset", "tiny", "--epochs", "2", "--width", "0.1", "--patch", "8"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "2 processes" in r.stdout
    assert [ln.startswith("step ") for ln in r.stdout.splitlines()].count(True) == 2  # only rank 0 reports (and writes)
    from mrfrecon.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "checkpoint_best.pt")
    assert ck.spec["name"] == "proposed" and ck.meta["config"]["world_size"] == 2
    assert len(_log(out / "log.csv")) == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_best.pt", "checkpoint_last.pt", "convergence.json",
                                                     "learning_curves.png", "log.csv"]


def test_bad_input_is_refused_and_nothing_is_overwritten(cohort, tmp_path):
    from mrfrecon.io import load_scan
    from mrfrecon.training import train

    kw = dict(preset="tiny", width=0.1, patch=8, epochs=1, log=None)
    # an existing run is not overwritten without --resume
    out = tmp_path / "run"
    train("proposed", cohort, out, **kw)
    before = _snapshot(out)
    with pytest.raises(MrfreconError, match="already holds a training run"):
        train("proposed", cohort, out, **kw)
    assert _snapshot(out) == before
    with pytest.raises(MrfreconError, match="nothing to resume"):
        train("proposed", cohort, tmp_path / "fresh", resume=True, **kw)
    assert not (tmp_path / "fresh").exists()

    # NaN in a training series
    bad = make_cohort(tmp_path / "nan", n=3, split=(1, 1, 1))
    s = load_scan(bad / "s000.h5")
    s.series[0, 2, 5, 5] = np.nan
    save_scan(bad / "s000.h5", s)
    with pytest.raises(MrfreconError, match="s000.h5.*NaN"):
        train("proposed", bad, tmp_path / "nan_run", **kw)
    assert not (tmp_path / "nan_run").exists()

    # ground truth asked for, only reference maps present
    ref_only = make_cohort(tmp_path / "ref_only", n=3, split=(1, 1, 1))
    for p in ref_only.glob("*.h5"):
        s = load_scan(p)
        s.maps = {}
        save_scan(p, s)
    with pytest.raises(MrfreconError, match="no ground-truth map.*--target reference"):
        train("proposed", ref_only, tmp_path / "gt_run", target="ground-truth", **kw)

    # empty cohort, empty validation split
    empty = tmp_path / "empty"
    empty.mkdir()
    CohortIndex(empty, {}, {"train": [], "val": [], "test": []}).save()
    with pytest.raises(MrfreconError, match="empty"):
        train("proposed", empty, tmp_path / "e_run", **kw)
    noval = make_cohort(tmp_path / "noval", n=2, split=(2, 0, 0))
    with pytest.raises(MrfreconError, match="validation split is empty"):
        train("proposed", noval, tmp_path / "nv_run", **kw)
    assert not any((tmp_path / d).exists() for d in ("gt_run", "e_run", "nv_run"))
    with pytest.raises(MrfreconError, match="unknown model"):
        train("resnet", cohort, tmp_path / "x", **kw)


@pytest.mark.parametrize("model", ["cohen2018", "fang2018", "balsiger2018", "proposed"])
def test_every_model_trains_and_predicts(cohort, tmp_path, model):
    from mrfrecon.checkpoint import load_checkpoint
    from mrfrecon.inference import predict_scan
    from mrfrecon.io import load_scan
    from mrfrecon.training import train

    # variations ride along: the ground truth as target, a subset of maps in another order, float16 inputs
    target = "ground-truth" if model == "cohen2018" else "reference"
    maps = ("b1", "t1h2o") if model == "balsiger2018" else ("t1h2o", "ff", "b1")
    best = train(model, cohort, tmp_path / model, preset="tiny", width=0.1, patch=8, epochs=1, target=target,
                 maps=maps, half_inputs=model == "proposed", log=None)
    ck = load_checkpoint(best)
    assert ck.target == target and ck.maps == maps and ck.spec["name"] == model
    scan = load_scan(cohort / "s003.h5")
    pred = predict_scan(best, scan)
    assert tuple(pred) == maps
    for m in pred.values():
        assert m.shape == scan.shape and m.dtype == np.float32 and np.isfinite(m).all()
        assert (m[~scan.foreground] == 0).all()
    lo, hi = ck.map_norm.minimum[maps.index("t1h2o")], ck.map_norm.maximum[maps.index("t1h2o")]
    assert lo <= pred["t1h2o"][scan.foreground].min() and pred["t1h2o"].max() <= hi  # clipped to the training range


def test_mixed_precision_only_on_cuda():
    from mrfrecon.training import autocast_for

    assert autocast_for(torch.device("cpu"), None) == (None, "")
    dtype, note = autocast_for(torch.device("cpu"), "bf16")
    assert dtype is None and "ignored on cpu" in note
    with pytest.raises(MrfreconError, match="amp"):
        autocast_for(torch.device("cpu"), "fp8")
    if torch.cuda.is_available():
        assert autocast_for(torch.device("cuda"), "fp16")[0] == torch.float16
        assert autocast_for(torch.device("cuda"), "off")[0] is None


def test_t1h2o_loss_mask_evaluation_drops_water_poor_voxels_from_the_t1h2o_loss(cohort, tmp_path):
    """``t1h2o_loss_mask="evaluation"``: the T1H2O channel's loss mask is the evaluation mask
    (foreground ∧ target FF < 0.65), the other maps keep the foreground; a T1H2O error confined to
    fat voxels then costs nothing; the setting is stored and a resume with the other one refused."""
    from mrfrecon.data import masked_mse
    from mrfrecon.io import CohortIndex, load_scan
    from mrfrecon.metrics import FF_THRESHOLD
    from mrfrecon.training import train
    from mrfrecon.training.loop import _loss_masks

    class _Data:  # the part of TrainData that _loss_masks reads
        def __init__(self, scans):
            self.train = [type("S", (), {"target": sc.reference, "foreground": sc.foreground}) for sc in scans]

    scans = [load_scan(p, series=False) for p in CohortIndex.load(cohort).paths("train")]
    for sc in scans:  # a fatty region in every scan (the synthetic FF seldom exceeds 0.65)
        ff = sc.reference["ff"].copy()
        ff[:, :, :8][sc.foreground[:, :, :8]] = 0.9
        sc.reference = {**sc.reference, "ff": ff}
    cfg = {"maps": ["t1h2o", "ff", "b1"], "t1h2o_loss_mask": "evaluation"}
    masks = _loss_masks(_Data(scans), cfg)
    assert _loss_masks(_Data(scans), {**cfg, "t1h2o_loss_mask": "foreground"}) is None
    tested = 0
    for sc, m in zip(scans, masks, strict=True):
        fat = sc.foreground & (sc.reference["ff"] >= FF_THRESHOLD)
        assert fat[0].any() and (sc.foreground[0] & ~fat[0]).any()
        tested += 1
        assert m.shape == (sc.foreground.shape[0], 3, *sc.foreground.shape[1:])
        assert np.array_equal(m[:, 0], sc.foreground & ~fat)
        assert np.array_equal(m[:, 1], sc.foreground) and np.array_equal(m[:, 2], sc.foreground)
        # an error in T1H2O only, only in fat voxels: zero loss with these masks, not with the foreground
        t = torch.zeros((1, 3, *sc.foreground.shape[1:]))
        pred = t.clone()
        pred[0, 0][torch.from_numpy(fat[0])] = 1.0
        assert masked_mse(pred, t, torch.from_numpy(m[:1]).float()).item() == 0.0
        assert masked_mse(pred, t, torch.from_numpy(sc.foreground[:1, None]).float()).item() > 0.0
    assert tested > 0  # some training scan has fat voxels in its first slice

    kw = dict(preset="tiny", width=0.1, patch=8, seed=3, log=None)
    train("cohen2018", cohort, tmp_path / "a", epochs=1, t1h2o_loss_mask="evaluation", **kw)
    assert torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=False)["training"]["config"][
        "t1h2o_loss_mask"] == "evaluation"
    with pytest.raises(MrfreconError, match="different settings.*t1h2o_loss_mask"):
        train("cohen2018", cohort, tmp_path / "a", epochs=2, resume=True, **kw)
    with pytest.raises(MrfreconError, match="t1h2o_loss_mask"):
        train("cohen2018", cohort, tmp_path / "b", epochs=1, t1h2o_loss_mask="water", **kw)


def test_train_command_passes_network_options(cohort, tmp_path):
    """``mrfrecon train --option NAME=VALUE``: the value is read as bool/number/word, reaches the
    network (stored in the checkpoint's spec) and an unknown or malformed option is one line."""
    from click.testing import CliRunner

    from mrfrecon.cli import cli
    from mrfrecon.cli.nets import parse_model_options

    assert parse_model_options(("batchnorm=FALSE", "width=0.5", "receptive-field=7", "activation=relu")) == {
        "batchnorm": False, "width": 0.5, "receptive_field": 7, "activation": "relu"}
    common = ["train", "--model", "cohen2018", "--cohort", str(cohort), "--epochs", "1", "--width", "0.1",
              "--patch", "8"]
    r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "a"), "--option", "batchnorm=true",
                                 "--option", "activation=relu"], obj={})
    assert r.exit_code == 0, r.output
    spec = json.loads(torch.load(tmp_path / "a" / "checkpoint_best.pt", weights_only=False)["meta_json"])["spec"]
    assert spec["batchnorm"] is True and spec["activation"] == "relu"
    for bad, says in ((["--option", "depth=3"], "unknown option(s) depth"), (["--option", "batchnorm"], "NAME=VALUE")):
        r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "b"), *bad], obj={})
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "b" / "checkpoint_best.pt").exists()


def test_schedules_resume_exactly_mid_schedule_and_bad_schedules_are_one_line(cohort, tmp_path):
    """A cosine schedule with warm-up, interrupted mid-schedule and resumed, gives the same weights,
    optimizer state and log as the uninterrupted run; the logged learning rate follows the closed
    form; resuming with another schedule is refused naming it; bad schedules are one line, exit 2."""
    from click.testing import CliRunner

    from mrfrecon.cli import cli
    from mrfrecon.training import train
    from mrfrecon.training.schedule import parse_schedule

    kw = dict(preset="tiny", width=0.1, patch=8, seed=5, log=None, steps=12, eval_every=4,
              schedule="cosine:warmup=3,final=0.1", head_init="target", map_weights="inverse-variance")
    train("proposed", cohort, tmp_path / "a", **kw)
    # the run "b" is interrupted after its second evaluation (step 8 of 12): the same run, stopped there
    import mrfrecon.training.loop as loop

    class Stop(Exception):
        pass

    real = loop._evaluate
    seen = {"n": 0}

    def stop_after_two(run, *a):
        real(run, *a)
        seen["n"] += 1
        if seen["n"] == 2:
            raise Stop

    loop._evaluate = stop_after_two
    try:
        with pytest.raises(Stop):
            train("proposed", cohort, tmp_path / "b", **kw)
    finally:
        loop._evaluate = real
    assert torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=True)["training"]["step"] == 8
    with pytest.raises(MrfreconError, match="different settings: schedule"):
        train("proposed", cohort, tmp_path / "b", resume=True, **{**kw, "schedule": "cosine:warmup=3,final=0.2"})
    with pytest.raises(MrfreconError, match="different settings: steps"):  # a cosine's rate depends on the budget
        train("proposed", cohort, tmp_path / "b", resume=True, **{**kw, "steps": 16})
    train("proposed", cohort, tmp_path / "b", resume=True, **kw)
    a, b = _state(tmp_path / "a" / "checkpoint_last.pt"), _state(tmp_path / "b" / "checkpoint_last.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for i in a["training"]["optimizer"]["state"]:
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(a["training"]["optimizer"]["state"][i][k], b["training"]["optimizer"]["state"][i][k])
    la, lb = _log(tmp_path / "a" / "log.csv"), _log(tmp_path / "b" / "log.csv")
    drop = ("seconds", "patches_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == [{k: v for k, v in r.items() if k not in drop} for r in lb]
    s = parse_schedule(kw["schedule"])
    assert [float(r["lr"]) for r in la] == pytest.approx([1e-3 * s.factor(k - 1, 12) for k in (4, 8, 12)], rel=1e-5)
    assert a["training"]["trace"] == b["training"]["trace"] and len(a["training"]["trace"]) == 12
    assert a["training"]["probe_trace"] == b["training"]["probe_trace"] and len(a["training"]["probe_trace"]) == 12
    common = ["train", "--model", "cohen2018", "--cohort", str(cohort), "--steps", "20", "--width", "0.1", "--patch", "8"]
    for bad, says in ((["--schedule", "linear"], "--schedule: unknown schedule 'linear'"),
                      (["--schedule", "cosine:warmup=20"], "warmup 20 must be shorter than the budget of 20"),
                      (["--schedule", "step:every=5,decay=0"], "decay must be in (0, 1)"),
                      (["--schedule", "step:every=5,decay=-1"], "decay must be in (0, 1)"),
                      (["--epochs", "2"], "give one budget, not both")):
        r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "c"), *bad], obj={})
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


def test_init_is_validated_at_step_0_and_kept_when_fine_tuning_only_hurts(cohort, tmp_path):
    """train --init: the pretrained network is evaluated before the first step (log row at step
    0) and competes for checkpoint_best.pt; its output layer is kept (head_init "pretrained")."""
    from mrfrecon.checkpoint import load_checkpoint
    from mrfrecon.training import train

    kw = dict(preset="tiny", width=0.1, patch=8, seed=3, log=None)
    pre = train("proposed", cohort, tmp_path / "pre", steps=40, eval_every=40, head_init="target", **kw)
    # a rate 50× the preset's wrecks the pretrained weights within a few Adam steps (deterministic on the CPU)
    fine = train("proposed", cohort, tmp_path / "fine", steps=4, eval_every=2, init=str(pre), lr=0.05,
                 head_init="target", **kw)
    rows = _log(tmp_path / "fine" / "log.csv")
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    assert np.isnan(float(rows[0]["train_loss"])) and float(rows[0]["seconds"]) == 0.0
    ref = load_checkpoint(pre)
    # step 0 scores the pretrained network itself: the same validation NRMSE as its own best evaluation
    assert float(rows[0]["val_nrmse_mean"]) == pytest.approx(ref.val_nrmse, rel=1e-5)
    val = [float(r["val_nrmse_mean"]) for r in rows]
    assert min(val[1:]) > val[0]  # fine-tuning at this rate only hurt ...
    ck = load_checkpoint(fine)
    assert ck.meta["step"] == 0 and ck.val_nrmse == pytest.approx(val[0], rel=1e-5)  # ... so the kept model is the pretrained one
    for k, v in ref.state_dict.items():
        assert torch.equal(v, ck.state_dict[k]), k
    assert ck.meta["config"]["head_init"] == "pretrained"
    conv = json.loads((tmp_path / "fine" / "convergence.json").read_text())
    assert conv["best_step"] == 0 and conv["steps"] == 4


def test_probe_loss_is_the_objective_on_fixed_samples_in_eval_mode_and_the_verdict_reads_it(cohort, tmp_path):
    """The convergence verdict reads the loss of a fixed probe set (network in evaluation mode):
    checked against the objective written out in numpy, with the batch norms' running statistics
    and the training mode untouched; convergence.json's change is the probe trace's window means."""
    import types

    import mrfrecon.training.loop as loop
    from mrfrecon.data import PatchDataset, PatchGrid
    from mrfrecon.models import build
    from mrfrecon.training import train

    rng = np.random.default_rng(0)
    series = [rng.normal(size=(1, 2 * FRAMES, 20, 20)).astype(np.float32)]
    maps = [rng.uniform(size=(1, 3, 20, 20)).astype(np.float32)]
    fg = [rng.uniform(size=(1, 20, 20)) > 0.3]
    net = build("proposed", frames=FRAMES, maps=3, width=0.1)
    ds = PatchDataset(series, maps, fg, grid=PatchGrid((4, 4), int(net.margin)), augment=True)
    probe = loop._probe_samples(ds, batch_size=3)
    assert len(probe[0]) == min(len(ds), loop.PROBE_BATCHES * 3)
    net.train()
    for _ in range(2):  # running statistics away from their initial values
        net(probe[0][:3])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    w = torch.tensor([0.5, 1.0, 1.5])
    run = types.SimpleNamespace(net=net, cfg={"batch_size": 3}, probe=probe, dev=torch.device("cpu"), amp_dtype=None,
                                maps=["t1h2o", "ff", "b1"], weights=w)
    got = loop._probe_loss(run)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    with torch.no_grad():
        pred = net(probe[0]).numpy()
    y, m = probe[1].numpy(), probe[2].numpy()
    per_map = (((pred - y) * m) ** 2).mean(axis=(0, 2, 3))
    assert got == pytest.approx(float((per_map * w.numpy()).mean()), rel=1e-5)

    out = tmp_path / "run"
    train("cohen2018", cohort, out, preset="tiny", width=0.1, patch=8, seed=1, log=None, steps=40, eval_every=20,
          schedule="cosine:warmup=4,final=0.05")
    t = torch.load(out / "checkpoint_last.pt", weights_only=True)["training"]
    steps, loss = np.array(t["probe_trace"]).T
    assert list(steps) == list(range(1, 41)) and np.isfinite(loss).all()
    conv = json.loads((out / "convergence.json").read_text())
    change = loss[steps > 36].mean() / loss[(steps > 32) & (steps <= 36)].mean() - 1
    assert conv["loss_change"] == pytest.approx(change, rel=1e-9) and conv["reason"].startswith("probe-set loss")
