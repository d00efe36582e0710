"""The mrfrecon command: subcommands run end to end; bad input gives one clear line."""

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from mrfrecon import Sequence, simulate
from mrfrecon.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), obj={}, catch_exceptions=False)


def test_help_mentions_units():
    r = run("--help")
    assert r.exit_code == 0 and "ms" in r.output and "Hz" in r.output
    for sub in ("match", "dictionary", "sequence", "demo"):
        assert sub in r.output


def test_sequence_export_show(tmp_path):
    p = tmp_path / "s.json"
    assert run("sequence", "export", "--echo-spacing", "1.63", "--out", str(p)).exit_code == 0
    assert Sequence.load(p) == Sequence.mrf_wf(1.63)
    r = run("sequence", "show", "--sequence", str(p))
    assert "1400 spokes" in r.output and "spokes  1001- 1200: FA  15.00°" in r.output


def test_dictionary_and_match(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text("[t1h2o_ms]\nranges = [[800, 1600, 100]]\n[b1]\nvalues = [0.6, 0.8, 1.0]\n[df_hz]\nvalues = [-20, 0, 20]\n")
    d = tmp_path / "d.h5"
    r = run("dictionary", "build", "--grid", str(grid), "--out", str(d))
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and d.exists()
    assert "water atoms" in run("dictionary", "info", str(d)).output
    x = simulate(Sequence.mrf_wf(), t1h2o=np.array([[900.0, 1200.0]]), b1=0.8, ff=np.array([[0.1, 0.4]]))
    np.save(tmp_path / "fp.npy", x[0])  # a list of fingerprints (n, frames)
    out = tmp_path / "maps.npz"
    r = run("match", str(tmp_path / "fp.npy"), "--dictionary", str(d), "--out", str(out))
    assert r.exit_code == 0, r.output
    m = np.load(out)
    assert m["t1h2o"].shape == (2,) and json.loads(str(m["units"]))["t1h2o"] == "ms"
    np.testing.assert_allclose(m["t1h2o"], [900, 1200])
    np.testing.assert_allclose(m["ff"], [0.1, 0.4], atol=0.01)
    # magnitude-only fingerprints are refused, with the reason
    np.save(tmp_path / "mag.npy", np.abs(x[0]))
    r = run("match", str(tmp_path / "mag.npy"), "--dictionary", str(d), "--out", str(tmp_path / "m2.npz"))
    assert r.exit_code == 2 and "magnitude-only" in r.output and "phase" in r.output and not (tmp_path / "m2.npz").exists()
    # an image array (x, y, frames) needs its axis order; a NIfTI --out is refused before any work
    np.save(tmp_path / "img.npy", x.transpose(1, 0, 2))
    r = run("match", str(tmp_path / "img.npy"), "--dictionary", str(d), "--out", str(tmp_path / "m3.npz"))
    assert r.exit_code == 2 and "--axes" in r.output
    r = run("match", str(tmp_path / "img.npy"), "--dictionary", str(d), "--out", str(tmp_path / "maps.nii.gz"))
    assert r.exit_code == 2 and "folder" in r.output


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"flip_angle_deg": [5, 5], "te_ms": [2], "tr_ms": [5, 5], "ti_ms": 8}')
    # run as a real process: one line on stderr, exit status 2, no traceback
    p = subprocess.run([sys.executable, "-m", "mrfrecon", "sequence", "show", "--sequence", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "te_ms: has 1 values" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "mrfrecon", "--debug", "sequence", "show", "--sequence", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" in p.stderr
    r = CliRunner().invoke(cli, ["match", str(tmp_path / "nope.npy"), "--dictionary", str(tmp_path / "d.h5"),
                                 "--out", str(tmp_path / "o.npz")], obj={})
    assert r.exit_code == 2 and "nope.npy" in r.output


def test_demo_runs_and_writes_its_table(tmp_path):
    r = run("demo", "--out", str(tmp_path / "demo"), "--voxels", "300", "--matching-only")  # the matching section alone
    assert r.exit_code == 0, r.output
    text = (tmp_path / "demo" / "demo_matching.md").read_text()
    assert "| t1h2o (ms) |" in text and "same atom pair" in text


def test_match_a_scan_file(tmp_path):
    from mrfrecon.dictionary import Dictionary, Grid
    from mrfrecon.io import Scan, save_scan

    seq = Sequence.mrf_wf()
    fg = np.zeros((1, 4, 4), bool)
    fg[0, 1:3, 1:3] = True
    series = np.zeros((1, 175, 4, 4), np.complex64)
    series[0][:, fg[0]] = simulate(seq, t1h2o=np.array([900.0, 1000.0, 1100.0, 1200.0]), b1=0.8, ff=0.3).T
    save_scan(tmp_path / "s.h5", Scan(series=series, foreground=fg, sequence=seq))
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[800, 1300, 100]]}, "b1": {"values": [0.7, 0.8]}, "df_hz": {"values": [0]}})
    Dictionary.build(seq, grid).save(tmp_path / "d.h5")
    r = run("match", str(tmp_path / "s.h5"), "--dictionary", str(tmp_path / "d.h5"), "--out", str(tmp_path / "m.npz"))
    assert r.exit_code == 0, r.output
    m = np.load(tmp_path / "m.npz")
    assert m["t1h2o"].shape == (1, 4, 4) and m["t1h2o"][0, 0, 0] == 0 and m["residual"][0, 0, 0] == 1
    np.testing.assert_allclose(m["t1h2o"][fg], [900, 1000, 1100, 1200])
    # a dictionary of another sequence is refused
    Dictionary.build(Sequence.mrf_wf(1.63), grid).save(tmp_path / "d2.h5")
    r = run("match", str(tmp_path / "s.h5"), "--dictionary", str(tmp_path / "d2.h5"), "--out", str(tmp_path / "m2.npz"))
    assert r.exit_code == 2 and "built for sequence" in r.output


def test_check_maps_files_inside_the_foreground_and_their_sds(tmp_path):
    """`check` on the maps files `match` writes (0 outside the foreground and where a fingerprint was
    not matched) passes; a map out of range inside the foreground, and a NaN, negative or misshapen
    SD, or an SD without its map, are each a problem."""
    import shutil

    import h5py

    from mrfrecon.dictionary import Dictionary, Grid
    from mrfrecon.inference import _write_maps
    from mrfrecon.io import Scan, save_scan

    seq = Sequence.mrf_wf()
    rng = np.random.default_rng(3)
    fg = np.zeros((1, 8, 8), bool)
    fg[0, 2:6, 1:7] = True
    n = int(fg.sum())
    x = simulate(seq, t1h2o=rng.uniform(900, 1300, n), ff=rng.uniform(0.05, 0.4, n), b1=rng.uniform(0.6, 0.9, n))
    series = np.zeros((1, seq.frames, 8, 8), np.complex64)
    series[0][:, fg[0]] = x.T
    series += (0.02 * np.abs(x).mean() * rng.standard_normal(series.shape)).astype(np.complex64)
    series[0, :, 3, 3] = 0  # a foreground voxel matching leaves (valid False, every map 0)
    save_scan(tmp_path / "s.h5", Scan(series=series, foreground=fg, sequence=seq))
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[800, 1400, 100]]}, "b1": {"values": [0.5, 0.7, 0.9]},
                           "df_hz": {"values": [0]}})
    Dictionary.build(seq, grid).save(tmp_path / "d.h5")
    for out in ("out", "m.h5"):  # <stem>_maps.h5 with masks/foreground; a maps .h5 with maps/valid only
        r = run("match", str(tmp_path / "s.h5"), "--dictionary", str(tmp_path / "d.h5"), "--out", str(tmp_path / out),
                "--uncertainty")
        assert r.exit_code == 0, r.output
    good = tmp_path / "out" / "s_maps.h5"
    with h5py.File(good) as f:
        assert f["maps/b1"][0, 0, 0] == 0 and f["maps/b1"][0, 3, 3] == 0 and "sd/b1" in f
    # as predict writes them: the foreground only, no maps/valid
    pred = tmp_path / "p_maps.h5"
    _write_maps(pred, {"t1h2o": np.where(fg, 1100.0, 0.0), "b1": np.where(fg, 0.8, 0.0)}, fg, {"scan": "s.h5"})
    for p in (good, tmp_path / "m.h5", pred):
        r = CliRunner().invoke(cli, ["check", str(p)], obj={})
        assert r.exit_code == 0 and r.output == f"{p}: ok (maps)\n", r.output

    def damaged(name, edit):
        p = tmp_path / f"{name}.h5"
        shutil.copy(good, p)
        with h5py.File(p, "a") as f:
            edit(f)
        return p

    def replace(f, name, v):
        if name in f:
            del f[name]
        f[name] = v

    cases = {
        "b1-in-foreground": (lambda f: replace(f, "maps/b1", np.zeros((1, 8, 8), np.float32)),
                             "maps/b1: value 0 outside the physical range (0, 3] in the foreground"),
        "t1h2o-background": (lambda f: replace(f, "maps/t1h2o", np.where(fg, 1000.0, -5.0).astype(np.float32)),
                             "maps/t1h2o: background value -5 outside [0, 10000]"),
        "sd-nan": (lambda f: replace(f, "sd/ff", np.where(fg, np.nan, 0.0).astype(np.float32)),
                   "sd/ff: contains NaN or infinite values"),
        "sd-negative": (lambda f: replace(f, "sd/t1h2o", np.where(fg, -1.0, 0.0).astype(np.float32)),
                        "sd/t1h2o: negative standard deviation -1"),
        "sd-shape": (lambda f: replace(f, "sd/b1", np.zeros((1, 8, 7), np.float32)),
                     "sd/b1: shape (1, 8, 7) differs from maps/b1's (1, 8, 8)"),
        "sd-no-map": (lambda f: replace(f, "sd/t2", np.zeros((1, 8, 8), np.float32)), "sd/t2: no map maps/t2 beside it"),
        "noise-negative": (lambda f: replace(f, "sd/noise", -np.ones((1, 8, 8), np.float32)),
                           "sd/noise: negative standard deviation -1"),
    }
    for name, (edit, words) in cases.items():
        p = damaged(name, edit)
        r = CliRunner().invoke(cli, ["check", str(p)], obj={})
        assert r.exit_code == 2 and f"{p}: {words}" in r.output, (name, r.output)
        assert r.output.count("mrfrecon: problem:") == 1, (name, r.output)


def test_progress_is_plain_lines_off_a_terminal(capsys):
    from mrfrecon.cli.common import progress

    with progress(1000, "work") as cb:  # pytest's stdout is not a terminal
        for i in range(0, 1000, 7):
            cb(i)
        cb(1000)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert 2 <= len(lines) <= 12, lines
    assert lines[-1].startswith("work: 1,000/1,000 (100 %)") and "\r" not in out and "\x1b" not in out
