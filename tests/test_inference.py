"""Inference, checkpoints and evaluation: a trained tiny network reloads and predicts identically,
mismatched or broken input is refused with a clear message, outputs never replace inputs, and
the evaluation and the CLI commands work end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mrfrecon import MrfreconError, Sequence
from mrfrecon.checkpoint import load_checkpoint, save_checkpoint
from mrfrecon.inference import load_maps, predict_folder, predict_scan
from mrfrecon.io import CohortIndex, load_scan, save_scan
from mrfrecon.io.nifti import BIDS_MAPS
from test_training import FRAMES, make_cohort, make_scan, short_sequence


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(cohort folder, best checkpoint) of a 3-epoch run of the proposed CNN at width 0.1."""
    from mrfrecon.training import train

    root = tmp_path_factory.mktemp("inference")
    cohort = make_cohort(root / "cohort")
    best = train("proposed", cohort, root / "run", preset="tiny", width=0.1, patch=8, epochs=3, log=None)
    return cohort, best


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_checkpoint_reloads_and_predicts_identically(trained, tmp_path):
    from mrfrecon.metrics import masks_for, nrmse

    cohort, best = trained
    ck = load_checkpoint(best)
    scan = load_scan(cohort / "s003.h5")
    a = predict_scan(best, scan)
    b = predict_scan(ck, scan)
    again = save_checkpoint(tmp_path / "copy.pt", ck.state_dict, ck.meta)  # a round trip through the file format
    c = predict_scan(again, scan)
    tiled = predict_scan(ck, scan, tile=8)  # patch-wise = fully convolutional (to float rounding)
    for m in ck.maps:
        np.testing.assert_array_equal(a[m], b[m])
        np.testing.assert_array_equal(a[m], c[m])
        np.testing.assert_allclose(tiled[m], a[m], rtol=1e-4, atol=1e-4 * float(np.abs(a[m]).max()))
    # the stored validation score is the score of exactly these weights on the validation scan
    val = load_scan(cohort / "s002.h5")
    pred = predict_scan(ck, val)
    masks = masks_for(val.reference["ff"], val.foreground)
    score = np.mean([nrmse(pred[m], val.reference[m], masks[m]) for m in ck.maps])
    assert score == pytest.approx(ck.val_nrmse, rel=1e-5)


def test_mismatched_scans_are_refused(trained):
    cohort, best = trained
    scan = load_scan(cohort / "s003.h5")
    # another frame count
    full = Sequence.mrf_wf()
    idx = np.linspace(0, full.spokes - 1, 96).astype(int)
    seq12 = Sequence(flip_angle_deg=full.flip_angle_deg[idx], te_ms=full.te_ms[idx], tr_ms=full.tr_ms[idx],
                     ti_ms=full.ti_ms, spokes_per_frame=8)
    other = make_scan(7, seq12)
    with pytest.raises(MrfreconError, match=f"12 frames.*trained on {FRAMES}"):
        predict_scan(best, other)
    # same frame count, another sequence
    seq = short_sequence()
    seq_b = dataclasses.replace(seq, flip_angle_deg=seq.flip_angle_deg * 1.5)
    with pytest.raises(MrfreconError, match="digest"):
        predict_scan(best, dataclasses.replace(scan, sequence=seq_b))
    # NaN in the series
    nan = dataclasses.replace(scan, series=scan.series.copy())
    nan.series[1, 3, 4, 4] = np.nan
    with pytest.raises(MrfreconError, match="non-finite.*NaN"):
        predict_scan(best, nan)


def test_corrupt_checkpoints_give_clear_errors(trained, tmp_path):
    _, best = trained
    raw = best.read_bytes()
    cases = {
        "truncated.pt": raw[: len(raw) // 2],
        "random.pt": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty.pt": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled object: never unpickled
    ok = torch.load(best, weights_only=True)
    torch.save({**ok, "meta_json": "{}"}, tmp_path / "nometa.pt")
    torch.save({**ok, "state_dict": {"x": torch.zeros(2)}}, tmp_path / "wrongweights.pt")
    expect = {"truncated.pt": "not a readable checkpoint", "random.pt": "not a readable checkpoint",
              "empty.pt": "not a readable checkpoint", "foreign.pt": "not an mrfrecon checkpoint",
              "module.pt": "not a readable checkpoint", "nometa.pt": "missing spec",
              "missing.pt": "no such checkpoint"}
    for name, msg in expect.items():
        with pytest.raises(MrfreconError, match=msg) as e:
            load_checkpoint(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(MrfreconError, match="do not fit the stored model spec"):
        load_checkpoint(tmp_path / "wrongweights.pt").build_model()


def test_predict_folder_writes_maps_and_nifti_and_never_inputs(trained, tmp_path):
    import nibabel as nib

    cohort, best = trained
    scans = [cohort / "s002.h5", cohort / "s003.h5"]
    out = tmp_path / "pred"
    written = predict_folder(best, scans, out)
    assert [p.name for p in written] == ["s002_maps.h5", "s003_maps.h5"]
    maps, attrs = load_maps(written[1])
    direct = predict_scan(best, load_scan(scans[1]))
    for m in ("t1h2o", "ff", "b1"):
        np.testing.assert_array_equal(maps[m], direct[m])
        part, _, scale, _ = BIDS_MAPS[m]  # BIDS units: T1map in s, FF and TB1map in %
        img = nib.load(out / f"s003_{part}.nii.gz")
        np.testing.assert_allclose(np.asarray(img.dataobj).transpose(2, 1, 0), direct[m] * np.float32(scale), rtol=1e-6)
    assert attrs["target"] == "reference" and attrs["scan"] == str(scans[1]) and attrs["checkpoint"] == str(best)

    # an output that would replace an input is refused; nothing is written
    clash = tmp_path / "clash"
    clash.mkdir()
    for name in ("a.h5", "a_maps.h5"):
        (clash / name).write_bytes((cohort / "s003.h5").read_bytes())
    before = _snapshot(clash)
    with pytest.raises(MrfreconError, match="is an input file"):
        predict_folder(best, [clash / "a.h5", clash / "a_maps.h5"], clash)
    assert _snapshot(clash) == before

    # one bad scan among good ones: no file at all (existing outputs untouched)
    s = load_scan(cohort / "s003.h5")
    s.series[0, 0, 0, 0] = np.nan
    save_scan(tmp_path / "bad.h5", s)
    before = _snapshot(out)
    with pytest.raises(MrfreconError, match="bad.h5.*NaN"):
        predict_folder(best, [scans[0], tmp_path / "bad.h5"], out)
    assert _snapshot(out) == before
    other = make_scan(9, dataclasses.replace(short_sequence(), ti_ms=20.0))
    save_scan(tmp_path / "other.h5", other)
    with pytest.raises(MrfreconError, match="other.h5.*digest"):
        predict_folder(best, [scans[0], tmp_path / "other.h5"], out)
    assert _snapshot(out) == before


def test_evaluate_perfect_and_trained(trained, tmp_path):
    from mrfrecon.evaluation import evaluate, write_report

    cohort, best = trained
    scans = [cohort / "s002.h5", cohort / "s003.h5"]
    perfect = {p.stem: load_scan(p, series=False).reference for p in scans}
    r = evaluate(perfect, scans)
    for m in ("t1h2o", "ff", "b1"):
        assert r.summary[m]["nrmse"].mean == 0 and r.summary[m]["ssim"].mean == pytest.approx(1.0)
        assert r.r2[m]["r2_determination"] == pytest.approx(1.0) and r.r2[m]["n_rois"] == 4
    # against the ground truth: the 1 % reference perturbation shows up as a small error
    g = evaluate(perfect, scans, against="ground-truth")
    assert 0 < g.summary["ff"]["nrmse"].mean < 0.05

    predict_folder(best, scans, tmp_path / "pred", nifti=False)
    t = evaluate(tmp_path / "pred", scans)
    assert set(t.per_scan) == {"s002", "s003"}
    assert all(0 < t.per_scan[s]["t1h2o"]["nrmse"] < 2 for s in t.per_scan)
    files = write_report(t, tmp_path / "eval")
    assert [f.name for f in files] == ["per_scan.csv", "summary.csv", "summary.md"]
    assert (tmp_path / "eval" / "per_scan.csv").read_text().count("\n") == 1 + 2 * 3
    assert "| t1h2o |" in (tmp_path / "eval" / "summary.md").read_text()
    assert "ROI set 'major-muscles'" in (tmp_path / "eval" / "summary.md").read_text() and t.rois == "major-muscles"
    assert evaluate(tmp_path / "pred", scans, rois="all-labels").rois == "all-labels"
    with pytest.raises(MrfreconError, match="no predicted maps for 1 scan.*s001"):
        evaluate(tmp_path / "pred", [cohort / "s001.h5", *scans])


def _cli(*args):
    from mrfrecon.cli import cli

    return CliRunner().invoke(cli, list(map(str, args)), obj={}, catch_exceptions=False)


def test_cli_train_predict_evaluate(tmp_path):
    cohort = make_cohort(tmp_path / "cohort")
    r = _cli("train", "--model", "balsiger2018", "--cohort", cohort, "--out", tmp_path / "run", "--epochs", "1",
             "--width", "0.1", "--patch", "8")
    assert r.exit_code == 0, r.output
    assert "best checkpoint" in r.output
    test = CohortIndex.load(cohort).paths("test")
    r = _cli("predict", "--checkpoint", tmp_path / "run" / "checkpoint_best.pt", *test, "--out", tmp_path / "pred")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pred" / "s003_maps.h5").is_file() and (tmp_path / "pred" / "s003_FFmap.nii.gz").is_file()
    r = _cli("evaluate", "--predictions", tmp_path / "pred", "--cohort", cohort, "--out", tmp_path / "eval")
    assert r.exit_code == 0, r.output
    assert "| ff |" in r.output and (tmp_path / "eval" / "summary.csv").is_file()
    # bad input: one line, status 2
    r = _cli("predict", "--checkpoint", cohort / "s000.h5", *test, "--out", tmp_path / "p2")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "not a readable checkpoint" in r.output
    r = _cli("train", "--model", "proposed", "--cohort", cohort, "--out", tmp_path / "run", "--epochs", "1")
    assert r.exit_code == 2 and "already holds a training run" in r.output
