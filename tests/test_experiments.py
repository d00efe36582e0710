"""The paper's experiments: statistics against scipy on known inputs, occlusion zeroes both channels
of a frame (checked on the input the network receives), and every command end to end at the tiny
preset — each writes every file its report.md names, and reuses its trained runs."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats as st
from torch import nn

from mrfrecon import MrfreconError
from mrfrecon.cli import cli
from mrfrecon.data import MapNorm, predict_volume
from mrfrecon.experiments.occlusion import OcclusionScan, frame_importance, occlude
from mrfrecon.experiments.receptive_field import parse_fields
from mrfrecon.experiments.stats import bonferroni, compare_to_best, min_wilcoxon_p, wilcoxon_paired
from mrfrecon.metrics import masks_for, nrmse
from mrfrecon.models import frame_channels


def _half_last_digit(x: float, digits: int) -> float:
    """Half a unit of the last digit of ``x`` rounded to ``digits`` significant digits (0.1439, 2 → 0.005)."""
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine's cores are shared: one thread here, restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(*args: str):
    r = CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def linked_files(report: Path) -> list[Path]:
    """Every relative file a report.md links to or shows (``[..](x)``, ``![..](x)``)."""
    text = report.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets, "the report links no files"
    return [report.parent / t for t in targets if "://" not in t]


def assert_report_complete(out: Path, *expected: str) -> str:
    report = out / "report.md"
    assert report.is_file()
    files = linked_files(report)
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"report.md names missing files: {missing}"
    names = {f.name for f in files}
    for e in expected:
        assert e in names, f"{e} not shown in report.md"
    text = report.read_text()
    assert "git `" in text and "mrfrecon 0." in text and "## Settings" in text and "## Seeds" in text
    for png in out.glob("*.png"):
        assert png.stat().st_size < 300_000, png
    return text


# ================================================================================ statistics
def test_bonferroni_and_exact_wilcoxon_on_a_hand_made_example():
    np.testing.assert_allclose(bonferroni([0.01, 0.2, 0.5, np.nan], m=3), [0.03, 0.6, 1.0, np.nan])
    np.testing.assert_allclose(bonferroni([0.01, 0.02]), [0.02, 0.04])
    # six pairs, every difference positive and distinct: W- = 0, exact two-sided p = 2 / 2**6
    x = np.array([0.30, 0.32, 0.35, 0.31, 0.40, 0.38])
    y = x - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    stat, p, n, note = wilcoxon_paired(x, y)
    assert (stat, n, note) == (0.0, 6, "")
    assert p == pytest.approx(2 / 64) == pytest.approx(min_wilcoxon_p(6))
    ref = st.wilcoxon(x, y)
    assert p == pytest.approx(ref.pvalue) and stat == ref.statistic


def test_compare_to_best_matches_scipy_with_bonferroni():
    rng = np.random.default_rng(1)
    best = rng.uniform(0.02, 0.03, 9)
    groups = {"1": best + rng.uniform(0.01, 0.02, 9), "5": best + rng.normal(0.003, 0.004, 9), "11": best,
              "21": best + rng.normal(0.002, 0.003, 9)}
    rows = {r.label: r for r in compare_to_best(groups)}
    assert rows["11"].best and rows["11"].note == "best" and math.isnan(rows["11"].p)
    for k in ("1", "5", "21"):
        r = rows[k]
        ref = st.wilcoxon(groups[k], groups["11"])
        assert r.p == pytest.approx(ref.pvalue)
        assert r.p_corrected == pytest.approx(min(1.0, 3 * ref.pvalue))  # 3 comparisons against the best
        assert r.significant == (r.p_corrected < 0.05)
        assert r.median == pytest.approx(np.median(groups[k]))
    assert rows["1"].significant and rows["1"].p == pytest.approx(2 / 2**9)  # all nine scans worse
    # higher is better (e.g. SSIM): the best is the highest median
    assert next(r for r in compare_to_best(groups, lower_is_better=False) if r.best).label == "1"


def test_paired_tests_without_power_give_nan_and_say_why():
    one = compare_to_best({"1": [0.2], "11": [0.1]})
    r1 = next(r for r in one if not r.best)
    assert math.isnan(r1.p) and math.isnan(r1.p_corrected) and not r1.significant and "at least 2" in r1.note
    same = compare_to_best({"1": [0.2, 0.3, 0.4], "11": [0.2, 0.3, 0.4]})
    assert any("zero" in r.note for r in same)
    with_nan = wilcoxon_paired([0.1, np.nan, 0.3], [0.2, 0.1, np.nan])
    assert with_nan[2] == 1 and math.isnan(with_nan[1])
    with pytest.raises(MrfreconError):
        compare_to_best({"a": [1.0, 2.0], "b": [1.0]})
    assert parse_fields("11,1, 3") == (1, 3, 11)
    for bad in ("2", "0,1", "23", "a"):
        with pytest.raises(MrfreconError):
            parse_fields(bad)


# ================================================================================ occlusion
class Spy(nn.Module):
    """A small patch network (margin 1) that records every input it is given."""

    kind = "patch"
    margin = 1

    def __init__(self, frames: int, maps: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2 * frames, maps, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.sigmoid(self.conv(x))


def _scan(frames: int, rng: np.random.Generator) -> OcclusionScan:
    shape = (2, 12, 14)
    fg = np.zeros(shape, bool)
    fg[:, 3:9, 2:11] = True
    series = (rng.standard_normal((2, frames, 12, 14)) + 1j * rng.standard_normal((2, frames, 12, 14))).astype(np.complex64)
    series *= fg[:, None]
    target = {"t1h2o": np.where(fg, rng.uniform(900, 1500, shape), 0), "ff": np.where(fg, rng.uniform(0, 0.9, shape), 0),
              "b1": np.where(fg, rng.uniform(0.5, 1.0, shape), 0)}
    return OcclusionScan("s", series, fg, {k: v.astype(np.float32) for k, v in target.items()})


def test_occlude_zeroes_both_channels_of_each_frame():
    x = torch.randn(2 * 7, 5, 6)
    xb = occlude(x, [0, 3, 6])
    assert xb.shape == (3, 14, 5, 6)
    for i, t in enumerate([0, 3, 6]):
        re_, im_ = frame_channels(t, 7)
        assert (re_, im_) == (t, 7 + t)
        assert torch.all(xb[i, [re_, im_]] == 0)
        keep = [c for c in range(14) if c not in (re_, im_)]
        assert torch.equal(xb[i, keep], x[keep])
    assert torch.equal(x, x.clone())  # the input itself is untouched


def test_frame_importance_feeds_the_network_occluded_inputs_and_matches_the_metrics():
    frames = 6
    rng = np.random.default_rng(0)
    scan = _scan(frames, rng)
    norm = MapNorm(("t1h2o", "ff", "b1"), (800.0, 0.0, 0.4), (1600.0, 1.0, 1.1))
    net = Spy(frames)
    res = frame_importance(net, [scan], norm, frames_per_batch=4)
    # per slice: one baseline pass, then the frames in batches of 4 (4 + 2)
    assert [len(x) for x in net.seen] == [1, 4, 2] * 2
    for z in range(2):
        base = net.seen[3 * z][0]
        # the baseline input is the normalized series as channels, cropped to the foreground box ± margin
        channels = np.concatenate([scan.series_norm[z].real, scan.series_norm[z].imag])
        padded = np.pad(channels, ((0, 0), (1, 1), (1, 1)))
        np.testing.assert_array_equal(base.numpy(), padded[:, 3:11, 2:13])
        occluded = torch.cat(net.seen[3 * z + 1 : 3 * z + 3])
        for t in range(frames):
            zeroed = [c for c in range(2 * frames) if not torch.any(occluded[t, c] != 0)]
            assert zeroed == [t, frames + t]  # exactly the real and imaginary channel of frame t
            keep = [c for c in range(2 * frames) if c not in zeroed]
            assert torch.equal(occluded[t, keep], base[keep])
    # baseline NRMSE equals the metrics module's on the whole-slice prediction (the crop is exact)
    pred = norm.denormalize(predict_volume(net, scan.series_norm), scan.foreground)
    masks = masks_for(scan.target["ff"], scan.foreground)
    for j, m in enumerate(norm.names):
        assert res.baseline[0, j] == pytest.approx(nrmse(pred[m], scan.target[m], masks[m]), rel=1e-5)
    assert res.occluded.shape == (1, frames, 3) and res.importance.shape == (frames, 3)
    np.testing.assert_allclose(res.importance, np.abs(res.occluded[0] - res.baseline[0]))


# ================================================================================ end to end (tiny preset)
@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """``experiment compare`` at the tiny preset without --cohort: simulates OUT/cohort first."""
    out = tmp_path_factory.mktemp("exp") / "compare"
    r = run("experiment", "compare", "--preset", "tiny", "--out", str(out), "--epochs", "1", "--threads", "1",
            "--target", "both", "--seeds", "2", "--jobs", "2", "--models", "proposed,cohen2018")
    assert "report:" in r.output and "table1_against_ground-truth" in r.output
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_compare_end_to_end(compared):
    text = assert_report_complete(compared, "table1_against_reference.csv", "table1_against_reference.md",
                                  "table1_against_ground-truth.csv", "figure2_trained_on_reference.png",
                                  "summary.csv", "per_scan.csv", "training.csv")
    assert (compared / "cohort" / "cohort.json").is_file()
    for t in ("reference", "ground-truth"):
        for m in ("proposed", "cohen2018"):
            for s in (0, 1):
                assert (compared / "runs" / t / m / f"seed-{s}" / "checkpoint_best.pt").is_file()
    gt = (compared / "table1_against_ground-truth.md").read_text()
    ref = (compared / "table1_against_reference.md").read_text()
    assert "Dictionary matching" in gt and "Dictionary matching" not in ref
    for baseline in ("Constant", "Matching, box 3×3", "Matching, box 5×5", "Matching, median 5×5"):
        assert baseline in gt and baseline in ref
    assert (compared / "table1_trained_on_reference_against_ground-truth.md").is_file()
    assert (compared / "wilcoxon.csv").is_file()
    rows = _csv(compared / "summary.csv")
    nets = {(r["trained_on"], r["method"], r["seed"], r["against"]) for r in rows if r["seed"]}
    assert len(nets) == 2 * 2 * 2 * 2  # targets × networks × seeds × against
    base = {(r["trained_on"], r["method"], r["against"]) for r in rows if not r["seed"]}
    assert ("-", "matching", "ground-truth") in base and ("-", "matching", "reference") not in base
    assert ("reference", "constant", "ground-truth") in base and ("ground-truth", "constant", "reference") in base
    assert {r["metric"] for r in rows} == {"nrmse", "psnr", "ssim", "r2_determination", "r2_regression"}
    assert all(np.isfinite(float(r["mean"])) for r in rows if r["metric"] == "nrmse")
    assert "Peak resident memory" in text and "± " in ref
    assert "cannot rank the methods" in text  # one test subject
    assert "R² (major-muscles)" in ref and {r["rois"] for r in rows if r["metric"].startswith("r2")} == {"major-muscles"}
    # a second run reuses every checkpoint (same settings)
    run("experiment", "compare", "--preset", "tiny", "--out", str(compared), "--epochs", "1", "--threads", "1",
        "--target", "both", "--seeds", "2", "--models", "proposed,cohen2018")
    assert {r["status"] for r in _csv(compared / "training.csv")} == {"reused"}


def test_runs_are_reused_resumed_or_replaced(compared, tmp_path):
    from mrfrecon.experiments.runs import train_or_reuse
    from mrfrecon.io import CohortIndex

    index = CohortIndex.load(compared / "cohort")
    kw = dict(preset="tiny", target="reference", seed=0)
    d = tmp_path / "run"
    assert train_or_reuse("c", "cohen2018", index, d, epochs=1, **kw).status == "trained"
    assert train_or_reuse("c", "cohen2018", index, d, epochs=1, **kw).status == "reused"
    assert train_or_reuse("c", "cohen2018", index, d, epochs=2, **kw).status == "resumed"
    logs: list[str] = []
    again = train_or_reuse("c", "cohen2018", index, d, epochs=2, width=0.2, log=logs.append, **kw)
    assert again.status == "trained" and again.settings["width"] == 0.2
    assert any("settings changed" in s and "width" in s for s in logs)


def test_compare_without_batchnorm_reuses_the_networks_that_have_none(compared, tmp_path):
    """``--batchnorm off``: the networks with batch norms train without any (the proposed CNN
    without its head's BN too), DRONE — which has none — is the same run as in a comparison with
    them, so its copied run folder is reused; the report says batch norm was off."""

    from mrfrecon.checkpoint import load_checkpoint
    from mrfrecon.experiments.runs import batchnorm_options

    assert batchnorm_options("proposed", True) == {}
    assert batchnorm_options("proposed", False) == {"batchnorm": False, "head_batchnorm": False}
    assert batchnorm_options("balsiger2018", False) == batchnorm_options("fang2018", False) == {"batchnorm": False}
    assert batchnorm_options("cohen2018", False) == {"batchnorm": False}  # DRONE's default: the same run
    out = tmp_path / "nobn"
    shutil.copytree(compared / "runs" / "reference" / "cohen2018", out / "runs" / "reference" / "cohen2018")
    run("experiment", "compare", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(out),
        "--epochs", "1", "--threads", "1", "--seeds", "1", "--models", "balsiger2018,cohen2018", "--batchnorm", "off")
    status = {r["run"]: r["status"] for r in _csv(out / "training.csv")}
    assert status == {"balsiger2018 [reference] s0": "trained", "cohen2018 [reference] s0": "reused"}, status
    ck = load_checkpoint(out / "runs" / "reference" / "balsiger2018" / "seed-0" / "checkpoint_best.pt")
    assert ck.spec["batchnorm"] is False
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ck.build_model().modules())
    meta = json.loads((out / "runs" / "reference" / "balsiger2018" / "seed-0" / "run.json").read_text())
    assert meta["settings"]["model_options"] == {"batchnorm": False}
    assert "off in every network" in (out / "report.md").read_text()
    rf = tmp_path / "rf-nobn"
    run("experiment", "receptive-field", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(rf),
        "--fields", "1", "--epochs", "1", "--threads", "1", "--batchnorm", "off")
    spec = load_checkpoint(rf / "runs" / "reference" / "rf01" / "checkpoint_best.pt").spec
    assert (spec["receptive_field"], spec["batchnorm"], spec["head_batchnorm"]) == (1, False, False)
    assert "off (a deviation" in (rf / "report.md").read_text()


def test_receptive_field_end_to_end(compared, tmp_path):
    out = tmp_path / "rf"
    r = run("experiment", "receptive-field", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(out),
            "--fields", "1,11", "--epochs", "1", "--threads", "1")
    assert "best receptive field" in r.output
    text = assert_report_complete(out, "figure3_receptive_field_against_reference.png", "wilcoxon.csv",
                                  "nrmse_per_scan.csv", "nrmse_by_field_against_reference.csv")
    assert "Power" in text and "no difference can be significant" in text  # one test scan
    rows = _csv(out / "wilcoxon.csv")
    assert {r["receptive_field"] for r in rows} == {"1", "11"}
    assert sum(r["best"] == "True" for r in rows if r["against"] == "reference") == 3  # one best per map
    other = [r for r in rows if r["best"] == "False"]
    assert other and all(r["p"] == "nan" and r["note"] for r in other)
    assert (out / "runs" / "reference" / "rf01" / "checkpoint_best.pt").is_file()


def test_occlusion_end_to_end(compared, tmp_path):
    out = tmp_path / "occ"
    ck = compared / "runs" / "reference" / "proposed" / "seed-0" / "checkpoint_best.pt"
    r = run("experiment", "occlusion", "--checkpoint", str(ck), "--cohort", str(compared / "cohort"), "--out", str(out),
            "--threads", "1")
    assert "most important frames" in r.output
    assert_report_complete(out, "figure4_occlusion.png", "importance.csv", "nrmse_per_scan.csv", "importance_summary.csv")
    rows = _csv(out / "importance.csv")
    assert len(rows) == 175 and rows[0]["frame"] == "0"
    assert float(rows[0]["flip_angle_deg"]) == pytest.approx(5.0) and float(rows[0]["te_ms"]) == pytest.approx(2.39)
    imp = np.array([[float(r[f"importance_{m}"]) for m in ("t1h2o", "ff", "b1")] for r in rows])
    assert np.all(np.isfinite(imp)) and np.all(imp >= 0) and imp.max() > 0
    # the baseline NRMSE is the comparison's (same checkpoint, same test scans)
    base = float(_csv(out / "nrmse_per_scan.csv")[0]["nrmse_original"])
    table = {(r["method"], r["against"], r["map"], r["metric"]): float(r["mean"]) for r in _csv(compared / "summary.csv")
             if r["trained_on"] == "reference" and r["seed"] in ("", "0")}
    assert base == pytest.approx(table[("proposed", "reference", "t1h2o", "nrmse")], rel=1e-4)


def test_demo_end_to_end(compared, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(compared / "cohort", out / "cohort")  # the simulation is tested above; reuse it
    r = run("demo", "--preset", "tiny", "--out", str(out), "--voxels", "300", "--threads", "1")
    assert "Table 1 — networks trained on the reference maps" in r.output and "report:" in r.output
    text = assert_report_complete(out, "figure2_trained_on_reference.png", "figure2_trained_on_ground-truth.png",
                                  "table1_against_ground-truth.md")
    assert "Dictionary matching of 300 simulated fingerprints" in text and "Constant" in text
    assert (out / "runs" / "ground-truth" / "fang2018" / "seed-0" / "checkpoint_best.pt").is_file()
    m = run("demo", "--out", str(tmp_path / "m"), "--voxels", "300", "--matching-only")
    assert "| t1h2o (ms) |" in (tmp_path / "m" / "demo_matching.md").read_text() and "same atom pair" in m.output


def test_early_frames_test_finds_early_importance():
    """Synthetic occlusion result: in every one of 8 scans the first 3 frames raise the NRMSE
    more than the later ones for map 0, equally for map 1 → the exact two-sided p 2/2^8 for
    map 0, and no test (nan) for map 1."""
    import numpy as np

    from mrfrecon.experiments.occlusion import OcclusionResult, early_frames_test

    rng = np.random.default_rng(0)
    n, t = 8, 12
    base = np.full((n, 2), 0.1)
    occ = base[:, None, :] + np.zeros((n, t, 2))
    occ[:, :3, 0] += 0.01 + 0.001 * rng.random((n, 3))
    occ[:, 3:, 0] += 0.001 * rng.random((n, t - 3))
    res = OcclusionResult(("t1h2o", "ff"), [f"s{i}" for i in range(n)], base, occ, np.zeros((t, 2)))
    rows = early_frames_test(res, 3)
    assert rows[0]["scans where the early frames matter more"] == "8 / 8"
    assert float(rows[0]["p (two-sided)"]) == pytest.approx(2 / 2**8, rel=1e-2)
    assert rows[1]["scans where the early frames matter more"] == "0 / 8"
    assert rows[1]["p (two-sided)"] == rows[1]["W"] == "nan"  # identical samples: no test


def test_receptive_field_with_two_seeds_averages_each_scan_over_the_seeds(compared, tmp_path):
    from mrfrecon.experiments.overfit import overfit_scores
    from mrfrecon.io import CohortIndex

    out = tmp_path / "rf2"
    r = run("experiment", "receptive-field", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(out),
            "--fields", "1,3", "--epochs", "1", "--threads", "1", "--seeds", "2", "--seed", "4")
    assert "best receptive field" in r.output
    runs = {(f, s): out / "runs" / "reference" / f"rf{f:02d}" / f"seed-{s}" / "checkpoint_best.pt" for f in (1, 3) for s in (4, 5)}
    assert all(p.is_file() for p in runs.values())
    index = CohortIndex.load(compared / "cohort")
    assert len(index.paths("test")) == 1  # one test scan: its NRMSE per field is the mean of the two seeds'
    rows = {(int(r_["receptive_field"]), r_["map"]): float(r_["nrmse"]) for r_ in _csv(out / "nrmse_per_scan.csv")
            if r_["against"] == "reference"}
    for f in (1, 3):
        per_seed = [overfit_scores(runs[(f, s)], index, "reference", split="test") for s in (4, 5)]
        for m in ("t1h2o", "ff", "b1"):
            assert rows[(f, m)] == pytest.approx((per_seed[0][m] + per_seed[1][m]) / 2, rel=1e-4)
        assert per_seed[0] != per_seed[1]  # two different networks
        # the seeds table: the mean over the (one) test scan of each seed, then mean ± SD over the seeds
        by_seed = {(int(r_["seed"]), r_["map"]): float(r_["nrmse"]) for r_ in _csv(out / "nrmse_per_scan_by_seed.csv")
                   if r_["against"] == "reference" and r_["receptive_field"] == str(f)}
        for s in (4, 5):
            for m in ("t1h2o", "ff", "b1"):
                assert by_seed[(s, m)] == pytest.approx(per_seed[s - 4][m], rel=1e-4)
        cell = {r_["method"].rstrip(" †"): r_ for r_ in _csv(out / "nrmse_seeds_against_reference.csv")}[f"proposed {f}×{f}"]
        mean, sd = (float(x) for x in cell["T1H2O"].split(" ± "))
        a, b = per_seed[0]["t1h2o"], per_seed[1]["t1h2o"]
        # the cell is rounded for display (mean 4, SD 2 significant digits): within half its last digit
        want_mean, want_sd = (a + b) / 2, abs(a - b) / 2 ** 0.5
        assert mean == pytest.approx(want_mean, rel=1e-4, abs=_half_last_digit(want_mean, 4))
        assert sd == pytest.approx(want_sd, rel=1e-4, abs=_half_last_digit(want_sd, 2))
    assert "4, 5" in (out / "report.md").read_text()
    # † marks a field with a run whose convergence.json says it did not converge, in both tables
    for f in (1, 3):
        ok = all(json.loads((runs[(f, s)].parent / "convergence.json").read_text())["converged"] for s in (4, 5))
        for table, col in (("nrmse_seeds_against_reference.csv", "method"),
                           ("nrmse_by_field_against_reference.csv", "receptive field")):
            label = next(r_[col] for r_ in _csv(out / table) if f"{f}×{f}" in r_[col])
            assert label.endswith("†") == (not ok)
    # the baselines are the comparison's (its own code path, the same training split and test scan)
    base = {(r_["method"], r_["map"]): float(r_["nrmse"]) for r_ in _csv(out / "nrmse_per_scan_by_seed.csv")
            if r_["against"] == "reference" and not r_["seed"]}
    table = {(r_["method"], r_["map"]): float(r_["mean"]) for r_ in _csv(compared / "summary.csv")
             if r_["trained_on"] in ("reference", "-") and r_["against"] == "reference" and r_["metric"] == "nrmse"
             and not r_["seed"]}
    for m in ("t1h2o", "ff", "b1"):
        assert base[("constant", m)] == pytest.approx(table[("constant", m)], rel=1e-4)
        assert base[("matching-box3", m)] == pytest.approx(table[("matching-box3", m)], rel=1e-4)
    gt = {r_["method"] for r_ in _csv(out / "nrmse_seeds_against_ground-truth.csv")}
    assert {"constant", "matching-box3", "matching"} <= gt


def test_experiment_steps_sets_every_runs_budget(compared, tmp_path):
    """--steps: the budget in optimizer steps of every run of an experiment (here the receptive-field
    sweep at the tiny preset, whose own budget is in epochs); the log's last step is the budget."""
    out = tmp_path / "rf-steps"
    run("experiment", "receptive-field", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(out),
        "--fields", "1", "--steps", "7", "--threads", "1")
    d = out / "runs" / "reference" / "rf01"
    assert json.loads((d / "run.json").read_text())["settings"]["budget"] == {"steps": 7}
    assert int(_csv(d / "log.csv")[-1]["step"]) == 7


# ================================================================================ the budget-doubling test
def test_doubling_verdict_on_known_per_subject_values():
    """15 subjects: a 10 % gain at twice the budget on one map is 'not converged', a 1 % gain —
    significant but below the 2 % tolerance — and a loss are 'converged'; 2 subjects cannot
    reach α after the correction: 'undecided'. p-values checked against scipy."""
    from mrfrecon.experiments.budget import doubling_cells, doubling_verdict

    rng = np.random.default_rng(3)
    short = {(a, m): rng.uniform(0.03, 0.08, 15) for a in ("reference", "ground-truth") for m in ("t1h2o", "ff", "b1")}
    jitter = {k: rng.uniform(-0.002, 0.002, 15) for k in short}
    small = {k: v * 0.99 + 1e-5 * rng.uniform(0, 1, 15) if k == ("reference", "ff") else v + jitter[k]
             for k, v in short.items()}
    cells = doubling_cells("proposed", short, small)
    ff = next(c for c in cells if (c.against, c.map) == ("reference", "ff"))
    assert ff.p_corrected < 0.05 and ff.change == pytest.approx(-0.01, abs=1e-3) and not ff.material
    assert doubling_verdict(cells)[0] == "converged"
    gain = {**small, ("reference", "t1h2o"): short[("reference", "t1h2o")] * 0.9}
    cells = doubling_cells("proposed", short, gain)
    c = next(c for c in cells if (c.against, c.map) == ("reference", "t1h2o"))
    assert c.change == pytest.approx(-0.1) and c.better == 15 and c.material
    assert c.p == pytest.approx(st.wilcoxon(short[("reference", "t1h2o")], gain[("reference", "t1h2o")]).pvalue)
    assert c.p_corrected == pytest.approx(min(1.0, 6 * c.p))
    verdict, why = doubling_verdict(cells)
    assert verdict == "not converged" and "T1H2O against the reference by 10.0%" in why
    worse = {**small, ("ground-truth", "b1"): short[("ground-truth", "b1")] * 1.2}
    assert doubling_verdict(doubling_cells("proposed", short, worse))[0] == "converged"
    two = {k: v[:2] for k, v in short.items()}
    assert doubling_verdict(doubling_cells("proposed", two, {k: v * 0.5 for k, v in two.items()}))[0] == "undecided"


def test_equal_budget_ranking_against_scipy():
    """The networks at one budget: the best is the lowest median; each other network's p is
    scipy's paired Wilcoxon against it times the 2 other networks; a network 10 % worse on every
    subject differs, one with differences of both signs ties. The order of a pair across budgets
    counts a flip where the means swap."""
    from scipy.stats import wilcoxon

    from mrfrecon.experiments.budget import equal_budget_rows, order_kept

    rng = np.random.default_rng(3)
    a = rng.uniform(0.03, 0.06, 15)
    noise = rng.normal(0, 0.004, 15)
    vals = {"cohen2018": {("reference", "t1h2o"): a}, "proposed": {("reference", "t1h2o"): a * 1.1},
            "balsiger2018": {("reference", "t1h2o"): a + noise}}
    [row] = equal_budget_rows(vals)
    assert row["best"] == min(vals, key=lambda m: np.median(vals[m][("reference", "t1h2o")]))
    best = vals[row["best"]][("reference", "t1h2o")]
    for m, v in vals.items():
        c = row[m]
        assert c["mean"] == pytest.approx(float(np.mean(v[("reference", "t1h2o")])))
        if m == row["best"]:
            assert c["tied"] and np.isnan(c["p_corrected"])
        else:
            p = wilcoxon(v[("reference", "t1h2o")], best).pvalue
            assert c["p_corrected"] == pytest.approx(min(1.0, 2 * p))
            assert c["tied"] == (min(1.0, 2 * p) >= 0.05)
    assert not row["proposed"]["tied"]  # 10 % worse on 15 / 15 subjects: p 2 × 2 / 2¹⁵
    swapped = {**vals, "proposed": {("reference", "t1h2o"): a * 0.9}}
    [pair] = [q for q in order_kept([row], equal_budget_rows(swapped), list(vals)) if {q["a"], q["b"]} ==
              {"cohen2018", "proposed"}]
    assert (pair["kept"], pair["cells"], pair["flips"]) == (0, 1, ["T1H2O against the reference"])


def test_budget_experiment_reuses_a_comparisons_runs_and_scores_them_alike(compared, tmp_path):
    """`experiment budget --base COMPARE`: the comparison's finished 4-step run is reused (not
    trained again), the 8-step run is trained into OUT with its own budget, the short run's
    per-subject NRMSE equals the comparison's own evaluation of it, and one test subject gives
    'undecided'. A base with other settings is refused in one line before anything is trained."""
    cmp_dir = tmp_path / "cmp"
    run("experiment", "compare", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(cmp_dir),
        "--steps", "4", "--threads", "1", "--seeds", "1", "--models", "cohen2018,balsiger2018")
    before = (cmp_dir / "runs" / "reference" / "cohen2018" / "seed-0" / "log.csv").read_text()
    out = tmp_path / "budget"
    r = run("experiment", "budget", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(out),
            "--steps", "4", "--models", "cohen2018,balsiger2018", "--base", str(cmp_dir), "--threads", "1")
    assert "cohen2018: undecided at 4 steps" in r.output
    assert (cmp_dir / "runs" / "reference" / "cohen2018" / "seed-0" / "log.csv").read_text() == before
    long_dir = out / "runs" / "steps-8" / "reference" / "cohen2018" / "seed-0"
    assert json.loads((long_dir / "run.json").read_text())["settings"]["budget"] == {"steps": 8}
    assert int(_csv(long_dir / "log.csv")[-1]["step"]) == 8
    assert not (out / "runs" / "steps-4").exists()
    assert_report_complete(out, "doubling.csv", "verdict.csv", "verdict.json", "per_scan.csv", "training.csv",
                           "ranking.csv", "order.csv")
    for model in ("cohen2018", "balsiger2018"):
        mine = {(r_["against"], r_["map"], r_["scan"]): float(r_["nrmse"]) for r_ in _csv(out / "per_scan.csv")
                if r_["steps"] == "4" and r_["model"] == model}
        theirs = {(r_["against"], r_["map"], r_["scan"]): float(r_["nrmse"]) for r_ in _csv(cmp_dir / "per_scan.csv")
                  if r_["method"] == model}
        assert mine and mine.keys() == theirs.keys()
        for k, v in mine.items():
            assert v == pytest.approx(theirs[k], rel=1e-5)
    cells = _csv(out / "doubling.csv")
    assert len(cells) == 12 and {c["long_steps"] for c in cells} == {"8"}
    # the networks at each budget: each mean is its per-subject values' mean; the constant baseline as the comparison's
    ranking = _csv(out / "ranking.csv")
    per = _csv(out / "per_scan.csv")
    for q in (q for q in ranking if q["method"] in ("cohen2018", "balsiger2018")):
        v = [float(x["nrmse"]) for x in per if (x["model"], x["steps"], x["against"], x["map"]) ==
             (q["method"], q["steps"], q["against"], q["map"])]
        assert len(v) == 1 and float(q["mean"]) == pytest.approx(v[0], rel=1e-5)
    const = {(q["against"], q["map"]): float(q["mean"]) for q in ranking if q["method"] == "constant"}
    theirs = {(x["against"], x["map"]): float(x["nrmse"]) for x in _csv(cmp_dir / "per_scan.csv")
              if x["method"] == "constant"}
    assert const and all(v == pytest.approx(theirs[k], rel=1e-5) for k, v in const.items())
    assert {q["steps"] for q in ranking} == {"4", "8"}
    assert "## The networks at an equal budget" in (out / "report.md").read_text()
    assert json.loads((out / "verdict.json").read_text())["verdicts"]["cohen2018"]["verdict"] == "undecided"
    # a base trained with another budget: refused, nothing trained
    bad = CliRunner().invoke(cli, ["experiment", "budget", "--preset", "tiny", "--cohort", str(compared / "cohort"),
                                   "--out", str(tmp_path / "b2"), "--steps", "5", "--models", "cohen2018", "--base",
                                   str(cmp_dir), "--threads", "1"], obj={})
    assert bad.exit_code == 2 and "budget" in bad.output and "only reused" in bad.output, bad.output
    assert not (tmp_path / "b2" / "runs").exists()
    assert (cmp_dir / "runs" / "reference" / "cohen2018" / "seed-0" / "log.csv").read_text() == before


def test_compare_augment_trains_every_run_with_flips_and_quarter_turns(compared, tmp_path):
    """--augment reaches each run's training (its checkpoint's config) and its reuse key: the same
    folder without --augment trains again."""
    from mrfrecon.checkpoint import load_checkpoint

    out = tmp_path / "aug"
    args = ["experiment", "compare", "--preset", "tiny", "--cohort", str(compared / "cohort"), "--out", str(out),
            "--steps", "3", "--threads", "1", "--seeds", "1", "--models", "balsiger2018"]
    run(*args, "--augment")
    d = out / "runs" / "reference" / "balsiger2018" / "seed-0"
    assert json.loads((d / "run.json").read_text())["settings"]["augment"] is True
    assert load_checkpoint(d / "checkpoint_last.pt").training["config"]["augment"] is True
    assert "| augment | True |" in (out / "report.md").read_text()
    run(*args, "--augment")
    assert {r["status"] for r in _csv(out / "training.csv")} == {"reused"}
    run(*args)
    assert {r["status"] for r in _csv(out / "training.csv")} == {"trained"}
    assert json.loads((d / "run.json").read_text())["settings"]["augment"] is False
