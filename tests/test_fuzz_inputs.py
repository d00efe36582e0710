"""Table-driven fuzz test: bad input of every file kind and option is refused with one line, exit
status 2, no traceback, and nothing written.

Each case writes its bad file(s) into a fresh folder, snapshots the folder tree, runs the command
in-process (click's CliRunner) and checks the result and that no file appeared or changed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mrfrecon import Sequence
from mrfrecon.cli import cli

SEQ = Sequence.mrf_wf()
BASE = SEQ.to_dict()


# ------------------------------------------------------------------------------ valid inputs
@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """A small valid dictionary, scan, checkpoint and NIfTI map folder, shared by the cases."""
    import nibabel as nib

    from mrfrecon.checkpoint import save_checkpoint
    from mrfrecon.data import MapNorm
    from mrfrecon.dictionary import Dictionary, Grid
    from mrfrecon.io import Scan, save_scan
    from mrfrecon.models import build

    root = tmp_path_factory.mktemp("good")
    grid = Grid.from_spec({"t1h2o_ms": {"values": [800, 1200]}, "t1fat_ms": {"values": [350]},
                           "b1": {"values": [0.8, 1.0]}, "df_hz": {"values": [0]}})
    Dictionary.build(SEQ, grid).save(root / "d.h5")
    rng = np.random.default_rng(0)
    shape = (1, 8, 8)
    series = (rng.normal(size=(1, SEQ.frames, 8, 8)) + 1j * rng.normal(size=(1, SEQ.frames, 8, 8))).astype(np.complex64)
    maps = {"t1h2o": np.full(shape, 1000.0), "ff": np.full(shape, 0.2), "b1": np.full(shape, 0.9),
            "df": np.zeros(shape), "t1fat": np.full(shape, 350.0), "pd": np.ones(shape)}
    save_scan(root / "s.h5", Scan(series=series, foreground=np.ones(shape, bool), sequence=SEQ, maps=maps,
                                  reference={k: maps[k] for k in ("t1h2o", "ff", "b1")}))
    net = build("cohen2018", width=0.1)
    norm = MapNorm(("t1h2o", "ff", "b1"), (500.0, 0.0, 0.3), (2000.0, 1.0, 1.2))
    meta = {"spec": net.spec, "map_norm": norm.to_dict(), "maps": list(norm.names), "sequence_json": SEQ.to_json(),
            "sequence_digest": SEQ.digest(), "frames": SEQ.frames, "target": "reference", "epoch": 1, "val_nrmse": 0.1}
    save_checkpoint(root / "c.pt", net.state_dict(), meta)
    (root / "nifti").mkdir()
    for k, v in maps.items():
        nib.save(nib.Nifti1Image(np.asarray(v[0].T[:, :, None], np.float32), np.diag([2.0, 2.0, 8.0, 1.0])),
                 str(root / "nifti" / f"{k}.nii.gz"))
    from mrfrecon.cohort import simulate_cohort

    simulate_cohort(root / "cohort", preset="tiny", subjects=1, seed=5, reference=False, overrides={"matrix": 16, "slices": 1})
    return {"root": root, "cohort": root / "cohort", "dict": root / "d.h5", "scan": root / "s.h5", "ckpt": root / "c.pt", "nifti": root / "nifti",
            "meta": meta, "state": net.state_dict()}  # type: ignore[dict-item]


# ------------------------------------------------------------------------------ bad-file makers
def seq_file(**changes) -> Callable[[Path, dict], Path]:
    def make(d: Path, g: dict) -> Path:
        doc = json.loads(json.dumps(BASE))
        for k, v in changes.items():
            if v is _DROP:
                doc.pop(k)
            elif callable(v):
                doc[k] = v(doc[k])
            else:
                doc[k] = v
        p = d / "seq.json"
        p.write_text(json.dumps(doc))  # NaN and Infinity are written as JSON's extensions
        return p
    return make


_DROP = object()


def raw_file(name: str, content: bytes | str) -> Callable[[Path, dict], Path]:
    def make(d: Path, g: dict) -> Path:
        p = d / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        return p
    return make


def h5_copy(key: str, edit: Callable[[h5py.File], None], name: str = "x.h5") -> Callable[[Path, dict], Path]:
    def make(d: Path, g: dict) -> Path:
        p = d / name
        p.write_bytes(g[key].read_bytes())
        with h5py.File(p, "r+") as f:
            edit(f)
        return p
    return make


def set_attr(k, v):
    return lambda f: f.attrs.__setitem__(k, v)


def del_attr(k):
    return lambda f: f.attrs.__delitem__(k)


def replace_ds(name, fn):
    def edit(f):
        data = fn(f[name][()])
        del f[name]
        f.create_dataset(name, data=data)
    return edit


def flip_byte(key: str, dataset: str) -> Callable[[Path, dict], Path]:
    def make(d: Path, g: dict) -> Path:
        p = d / "flipped.h5"
        raw = bytearray(g[key].read_bytes())
        with h5py.File(g[key]) as f:
            info = f[dataset].id.get_chunk_info(0)
        raw[info.byte_offset + info.size // 2] ^= 0x10
        p.write_bytes(bytes(raw))
        return p
    return make


def ckpt(edit: Callable[[dict, dict], None]) -> Callable[[Path, dict], Path]:
    def make(d: Path, g: dict) -> Path:
        from mrfrecon.checkpoint import CHECKPOINT_FORMAT

        state = {k: v.clone() for k, v in g["state"].items()}
        payload = {"format": CHECKPOINT_FORMAT, "state_dict": state, "meta": json.loads(json.dumps(g["meta"]))}
        edit(payload["state_dict"], payload["meta"])
        p = d / "bad.pt"
        torch.save({"format": payload["format"], "state_dict": payload["state_dict"],
                    "meta_json": payload["meta"] if isinstance(payload["meta"], str) else
                    json.dumps({"mrfrecon_version": "x", "git_hash": "x", **payload["meta"]})}, p)
        return p
    return make


def nifti(edit: Callable[[Path], None]) -> Callable[[Path, dict], Path]:
    def make(d: Path, g: dict) -> Path:
        import shutil

        p = d / "maps"
        shutil.copytree(g["nifti"], p)
        edit(p)
        return p
    return make


def nii_set(name: str, value=None, shape=None, affine=None):
    def edit(folder: Path):
        import nibabel as nib

        f = folder / f"{name}.nii.gz"
        img = nib.load(str(f))
        vol = np.asarray(img.dataobj, np.float32)
        if value is not None:
            vol[2, 3, 0] = value
        if shape is not None:
            vol = np.zeros(shape, np.float32) + vol.flat[0]
        nib.save(nib.Nifti1Image(vol, img.affine if affine is None else affine), str(f))
    return edit


def _torch_save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def first_weight(fn):
    def edit(state, meta):
        k = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
        state[k] = fn(state[k])
    return edit


def _ff_max_3(state, meta):
    meta["map_norm"]["maximum"][1] = 3.0


# ------------------------------------------------------------------------------ the table
# (id, maker of the bad file or None, argv given the file and the good inputs, text the line must hold)
SHOW = lambda p, g: ["sequence", "show", "--sequence", str(p)]  # noqa: E731
BUILD = lambda p, g: ["dictionary", "build", "--grid", str(p), "--out", str(p.parent / "out.h5")]  # noqa: E731
INFO = lambda p, g: ["dictionary", "info", str(p)]  # noqa: E731
MATCH_SCAN = lambda p, g: ["match", str(p), "--dictionary", str(g["dict"]), "--out", str(p.parent / "m.npz")]  # noqa: E731
MATCH_DICT = lambda p, g: ["match", str(g["scan"]), "--dictionary", str(p), "--out", str(p.parent / "m.npz")]  # noqa: E731
PREDICT = lambda p, g: ["predict", "--checkpoint", str(p), str(g["scan"]), "--out", str(p.parent / "pred")]  # noqa: E731
FROM_MAPS = lambda p, g: ["simulate", "--from-maps", str(p), "--out", str(p.parent / "sim.h5"), "--no-reference"]  # noqa: E731


def opt(*args):
    return lambda p, g: [a.format(out=str(p), scan=str(g["scan"]), dict=str(g["dict"]), ckpt=str(g["ckpt"]),
                                  root=str(p)) for a in args]


def grid(text):
    return raw_file("grid.toml", text)


def scan_map(name, value):
    return h5_copy("scan", replace_ds(name, lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, value, a)))


CASES = [
    # sequences
    ("seq-flip-1e6", seq_file(flip_angle_deg=lambda v: [1e6] + v[1:]), SHOW, "flip_angle_deg[0] = 1e+06° is outside"),
    ("seq-flip-negative", seq_file(flip_angle_deg=lambda v: v[:3] + [-5.0] + v[4:]), SHOW, "flip_angle_deg[3]"),
    ("seq-tr-1e308", seq_file(tr_ms=lambda v: [1e308] * len(v)), SHOW, "tr_ms[0] = 1e+308 ms"),
    ("seq-tr-zero", seq_file(tr_ms=lambda v: [0.0] * len(v)), SHOW, "tr_ms[0] = 0 ms"),
    ("seq-te-after-tr", seq_file(te_ms=lambda v: [9.0] * len(v)), SHOW, "is not shorter than tr_ms[0]"),
    ("seq-te-equals-tr", seq_file(te_ms=lambda v: [3.5] * len(v)), SHOW, "te_ms[0] = 3.5 ms is not shorter"),
    ("seq-te-negative", seq_file(te_ms=lambda v: [-1.0] * len(v)), SHOW, "te_ms[0] = -1 ms is outside"),
    ("seq-ti-1e9", seq_file(ti_ms=1e9), SHOW, "ti_ms: expected a finite number in [0, 10000] ms"),
    ("seq-ti-nan", seq_file(ti_ms=math.nan), SHOW, "ti_ms: expected a finite number"),
    ("seq-recovery-negative", seq_file(recovery_ms=-1.0), SHOW, "recovery_ms"),
    ("seq-phase-infinity", seq_file(excitation_phase_deg=math.inf), SHOW, "excitation_phase_deg: expected a finite"),
    ("seq-angle-nan", seq_file(spoke_angle_increment_deg=math.nan), SHOW, "spoke_angle_increment_deg"),
    ("seq-repetitions-0", seq_file(repetitions=0), SHOW, "repetitions: must be 1-100"),
    ("seq-repetitions-1e6", seq_file(repetitions=10**6), SHOW, "repetitions: must be 1-100"),
    ("seq-repetitions-float", seq_file(repetitions=1.5), SHOW, "repetitions: expected an integer"),
    ("seq-spokes-per-frame-0", seq_file(spokes_per_frame=0), SHOW, "spokes_per_frame: must be >= 1"),
    ("seq-spokes-per-frame-3", seq_file(spokes_per_frame=3), SHOW, "does not divide"),
    ("seq-60k-spokes", seq_file(**{k: (lambda v: v * 43) for k in ("flip_angle_deg", "te_ms", "tr_ms")}), SHOW,
     "more than the limit of 50,000"),
    ("seq-empty", seq_file(**{k: [] for k in ("flip_angle_deg", "te_ms", "tr_ms")}), SHOW, "non-empty"),
    ("seq-missing-te", seq_file(te_ms=_DROP), SHOW, "missing field(s) te_ms"),
    ("seq-unknown-field", seq_file(tr_msec=1), SHOW, "unknown field(s) tr_msec"),
    ("seq-string-flip", seq_file(flip_angle_deg=lambda v: ["five"] + v[1:]), SHOW, "flip_angle_deg[0]: expected a number"),
    ("seq-inversion-string", seq_file(inversion="yes"), SHOW, "inversion: expected true or false"),
    ("seq-binary", raw_file("seq.json", bytes(range(256)) * 8), SHOW, "not a text file"),
    ("seq-utf16", raw_file("seq.json", json.dumps(BASE).encode("utf-16")), SHOW, "not a text file"),
    ("seq-latin1", raw_file("seq.json", b'{"name": "\xe9"}'), SHOW, "not UTF-8 text"),
    ("seq-not-json", raw_file("seq.json", "{nope"), SHOW, "not valid JSON"),
    ("seq-array", raw_file("seq.json", "[1, 2]"), SHOW, "expected a JSON object"),
    ("seq-deep", raw_file("seq.json", "[" * 100_000 + "]" * 100_000), SHOW, "nested too deeply"),
    ("seq-missing-file", None, lambda p, g: ["sequence", "show", "--sequence", str(p / "none.json")], "cannot read"),
    # grids
    ("grid-t1-negative", grid("[t1h2o_ms]\nvalues = [-100, 800]\n"), BUILD, "t1h2o_ms: value -100 outside"),
    ("grid-b1-5", grid("[b1]\nvalues = [0.5, 5.0]\n"), BUILD, "b1: value 5 outside the physical range (0, 3]"),
    ("grid-df-1e30", grid("[df_hz]\nvalues = [0, 1e30]\n"), BUILD, "df_hz: value 1e+30 outside"),
    ("grid-step-0", grid("[t1h2o_ms]\nranges = [[800, 900, 0]]\n"), BUILD, "step > 0"),
    ("grid-1e9-values", grid("[t1h2o_ms]\nranges = [[1, 9000, 1e-5]]\n"), BUILD, "more than 10,000 values"),
    ("grid-unknown-axis", grid("[t2_ms]\nvalues = [40]\n"), BUILD, "unknown axis t2_ms"),
    ("grid-not-toml", grid("[t1h2o_ms\nvalues = 1"), BUILD, "not valid TOML"),
    ("grid-strings", grid('[b1]\nvalues = ["a", "b"]\n'), BUILD, "expected numbers"),
    ("grid-binary", raw_file("grid.toml", b"\xff\xfe\x00\x01"), BUILD, "not valid TOML"),
    # dictionary files
    ("dict-bad-sequence-json", h5_copy("dict", set_attr("sequence_json", "{oops")), INFO, "sequence_json: not valid JSON"),
    ("dict-bad-fat-json", h5_copy("dict", set_attr("fat_model_json", "[1, 2")), INFO, "fat_model_json: not valid JSON"),
    ("dict-fat-json-type", h5_copy("dict", set_attr("fat_model_json", '{"x": 1}')), INFO, "fat_model_json: expected"),
    ("dict-energy-nan", h5_copy("dict", set_attr("energy", float("nan"))), INFO, "energy: expected a finite number"),
    ("dict-energy-text", h5_copy("dict", set_attr("energy", "high")), INFO, "energy: expected a number"),
    ("dict-t2-missing", h5_copy("dict", del_attr("t2h2o_ms")), INFO, "attribute t2h2o_ms missing"),
    ("dict-water-nan", h5_copy("dict", replace_ds("water", lambda a: a * np.nan)), INFO, "water: contains NaN"),
    ("dict-grid-b1-5", h5_copy("dict", replace_ds("grid/b1", lambda a: a * 5)), INFO, "grid: b1: value 4 outside"),
    ("dict-format", h5_copy("dict", set_attr("format", "other/1")), INFO, "not an mrfrecon dictionary"),
    ("dict-truncated", lambda d, g: raw_file("t.h5", g["dict"].read_bytes()[:5000])(d, g), INFO, "not a readable HDF5"),
    ("dict-text", raw_file("t.h5", "hello"), INFO, "not a readable HDF5"),
    ("dict-flipped-byte", flip_byte("dict", "water"), INFO, "water: checksum mismatch"),
    ("dict-other-sequence", h5_copy("dict", lambda f: [f.attrs.__setitem__("sequence_json", Sequence.mrf_wf(1.5).to_json()),
                                                       f.attrs.__setitem__("sequence_digest", Sequence.mrf_wf(1.5).digest())]),
     MATCH_DICT, "built for sequence"),
    # scans
    ("scan-ff-3", scan_map("maps/ff", 3.0), MATCH_SCAN, "maps/ff: value 3 outside the physical range [0, 1]"),
    ("scan-df-1e30", scan_map("maps/df", 1e30), MATCH_SCAN, "maps/df: value 1e+30 outside"),
    ("scan-t1-negative", scan_map("reference/t1h2o", -5.0), MATCH_SCAN, "reference/t1h2o: value -5 outside"),
    ("scan-b1-nan", scan_map("maps/b1", np.nan), MATCH_SCAN, "maps/b1: contains NaN"),
    ("scan-attrs-json", h5_copy("scan", set_attr("attrs_json", "{bad")), MATCH_SCAN, "attrs_json: not valid JSON"),
    ("scan-attrs-list", h5_copy("scan", set_attr("attrs_json", "[]")), MATCH_SCAN, "attrs_json: expected a JSON dict"),
    ("scan-series-nan", h5_copy("scan", replace_ds("series", lambda a: a * np.nan)), MATCH_SCAN, "series: contains NaN"),
    ("scan-empty-foreground", h5_copy("scan", replace_ds("masks/foreground", lambda a: a * 0)), MATCH_SCAN,
     "no voxel in the foreground"),
    ("scan-flipped-byte", flip_byte("scan", "series"), MATCH_SCAN, "series: checksum mismatch"),
    ("scan-flipped-map-byte", flip_byte("scan", "maps/ff"), MATCH_SCAN, "maps/ff: checksum mismatch"),
    ("scan-sequence-json", h5_copy("scan", set_attr("sequence_json", "{}")), MATCH_SCAN, "sequence_json: missing field"),
    ("figure-slice-7", None, opt("figure", "{scan}", "--slice", "7", "--out", "{out}/f.png"), "--slice: 7 is out of range"),
    ("figure-slice-negative", None, opt("figure", "{scan}", "--slice", "-1", "--out", "{out}/f.png"), "'--slice'"),
    # checkpoints
    ("ckpt-nan-weights", ckpt(first_weight(lambda w: w * np.nan)), PREDICT, "contains NaN or infinite weights"),
    ("ckpt-inf-weights", ckpt(first_weight(lambda w: w + np.inf)), PREDICT, "contains NaN or infinite weights"),
    ("ckpt-ff-max-3", ckpt(_ff_max_3), PREDICT, "map_norm/ff: value 3 outside"),
    ("ckpt-target", ckpt(lambda s, m: m.__setitem__("target", "guess")), PREDICT, "target must be one of"),
    ("ckpt-frames", ckpt(lambda s, m: m.__setitem__("frames", "many")), PREDICT, "meta_json"),
    ("ckpt-map-norm", ckpt(lambda s, m: m.__setitem__("map_norm", 5)), PREDICT, "map normalization: invalid stored range"),
    ("ckpt-not-zip", raw_file("bad.pt", b"\x00" * 100), PREDICT, "not a torch zip archive"),
    ("ckpt-meta-not-json", lambda d, g: _torch_save({"format": "mrfrecon.checkpoint/1", "state_dict": g["state"],
                                                     "meta_json": "{x"}, d / "bad.pt"), PREDICT,
     "meta_json: missing or not valid JSON"),
    # NIfTI maps for simulate --from-maps
    ("nifti-df-1e30", nifti(nii_set("df", 1e30)), FROM_MAPS, "df.nii.gz: value 1e+30 outside"),
    ("nifti-ff-3", nifti(nii_set("ff", 3.0)), FROM_MAPS, "ff.nii.gz: value 3 outside"),
    ("nifti-t1-nan", nifti(nii_set("t1h2o", np.nan)), FROM_MAPS, "t1h2o.nii.gz: contains NaN"),
    ("nifti-shape", nifti(nii_set("b1", shape=(8, 9, 1))), FROM_MAPS, "b1.nii.gz: shape (8, 9, 1) differs"),
    ("nifti-affine", nifti(nii_set("pd", affine=np.diag([3.0, 3.0, 8.0, 1.0]))), FROM_MAPS, "pd.nii.gz: affine"),
    ("nifti-missing", nifti(lambda p: (p / "t1fat.nii.gz").unlink()), FROM_MAPS, "no t1fat.nii.gz"),
    ("nifti-garbage", nifti(lambda p: (p / "ff.nii.gz").write_bytes(b"garbage")), FROM_MAPS, "ff.nii.gz: not a readable NIfTI"),
    # cohorts
    ("cohort-other-seed", None, lambda p, g: ["simulate", "--out", str(g["cohort"]), "--seed", "6", "--subjects", "1",
                                              "--no-reference"], "seed 5 (requested 6)"),
    ("cohort-json-entry", lambda d, g: _cohort_copy(d, g, lambda doc: doc["subjects"].__setitem__("sub-000", 5)),
     lambda p, g: ["evaluate", "--predictions", str(p), "--cohort", str(p), "--out", str(p / "e")],
     "subjects/sub-000: expected an entry with a file name"),
    ("cohort-json-escape", lambda d, g: _cohort_copy(d, g, lambda doc: doc["subjects"]["sub-000"].__setitem__("file", "../s.h5")),
     lambda p, g: ["evaluate", "--predictions", str(p), "--cohort", str(p), "--out", str(p / "e")],
     "expected an entry with a file name inside the folder"),
    ("cohort-json-split", lambda d, g: _cohort_copy(d, g, lambda doc: doc["split"].__setitem__("test", "sub-000")),
     lambda p, g: ["evaluate", "--predictions", str(p), "--cohort", str(p), "--out", str(p / "e")], "split/test: expected a list"),
    ("ckpt-unknown-model", ckpt(lambda s, m: m["spec"].__setitem__("name", "resnet")), PREDICT, "bad.pt: spec: unknown model"),
    # options, each refused by its own name
    ("opt-snr-0", None, opt("simulate", "--out", "{out}/c", "--snr", "0"), "'--snr'"),
    ("opt-snr-negative", None, opt("simulate", "--out", "{out}/c", "--snr", "-5"), "'--snr'"),
    ("opt-snr-nan", None, opt("simulate", "--out", "{out}/c", "--snr", "nan"), "'--snr'"),
    ("opt-seed-negative", None, opt("simulate", "--out", "{out}/c", "--seed", "-1"), "'--seed'"),
    ("opt-seed-text", None, opt("simulate", "--out", "{out}/c", "--seed", "five"), "'--seed'"),
    ("opt-workers-0", None, opt("simulate", "--out", "{out}/c", "--workers", "0"), "'--workers'"),
    ("opt-workers-negative", None, opt("simulate", "--out", "{out}/c", "--workers", "-1"), "'--workers'"),
    ("opt-subjects-0", None, opt("simulate", "--out", "{out}/c", "--subjects", "0"), "'--subjects'"),
    ("opt-shard", None, opt("simulate", "--out", "{out}/c", "--shard", "3/2"), "--shard: expected K/N with 1 ≤ K ≤ N"),
    ("opt-out-is-file", None, opt("simulate", "--out", "{scan}"), "--out: "),
    ("opt-rank-0", None, opt("dictionary", "build", "--rank", "0", "--out", "{out}/d.h5"), "'--rank'"),
    ("opt-rank-negative", None, opt("dictionary", "build", "--rank", "-4", "--out", "{out}/d.h5"), "'--rank'"),
    ("opt-energy-0", None, opt("dictionary", "build", "--energy", "0", "--out", "{out}/d.h5"), "'--energy'"),
    ("opt-echo-spacing-0", None, opt("sequence", "show", "--echo-spacing", "0"), "'--echo-spacing'"),
    ("opt-device-bogus", None, opt("--device", "bogus", "sequence", "show"), "--device: 'bogus' is not a torch device"),
    ("opt-train-workers", None, opt("train", "--model", "cohen2018", "--cohort", "{out}", "--out", "{out}/r", "--workers", "-1"),
     "'--workers'"),
    ("opt-train-patch", None, opt("train", "--model", "cohen2018", "--cohort", "{out}", "--out", "{out}/r", "--patch", "5000"),
     "'--patch'"),
    ("opt-train-epochs", None, opt("train", "--model", "cohen2018", "--cohort", "{out}", "--out", "{out}/r", "--epochs", "0"),
     "'--epochs'"),
    ("opt-train-lr", None, opt("train", "--model", "cohen2018", "--cohort", "{out}", "--out", "{out}/r", "--lr", "nan"), "'--lr'"),
    ("opt-train-out-file", None, opt("train", "--model", "cohen2018", "--cohort", "{out}", "--out", "{scan}"), "'--out'"),
    ("opt-predict-tile", None, opt("predict", "--checkpoint", "{ckpt}", "{scan}", "--out", "{out}/p", "--tile", "0"), "'--tile'"),
    ("opt-demo-threads", None, opt("demo", "--out", "{out}/demo", "--threads", "0"), "'--threads'"),
    ("opt-unknown", None, opt("simulate", "--out", "{out}/c", "--bogus"), "No such option '--bogus'"),
    ("opt-unknown-top", None, opt("--bogus", "sequence", "show"), "No such option '--bogus'"),
    ("opt-unknown-command", None, opt("simulte"), "No such command 'simulte'"),
    ("opt-missing-required", None, opt("dictionary", "build"), "Missing option '--out'"),
]
if not torch.cuda.is_available():
    CASES.append(("opt-device-cuda", None, opt("--device", "cuda", "sequence", "show"), "no usable CUDA device"))


def _cohort_copy(d: Path, g: dict, edit) -> Path:
    import shutil

    p = d / "c"
    shutil.copytree(g["cohort"], p)
    doc = json.loads((p / "cohort.json").read_text())
    edit(doc)
    (p / "cohort.json").write_text(json.dumps(doc))
    return p


def _tree(root: Path) -> dict[str, tuple[int, float] | None]:
    """Every path under ``root``, with size and modification time for files (a folder's own time
    changes when a lock file comes and goes; that is not a file written)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) if p.is_file() else None
            for p in root.rglob("*")}


def test_the_table_is_large():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("make, argv, expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(good, tmp_path, make, argv, expect):
    target = make(tmp_path, good) if make is not None else tmp_path
    before, good_before = _tree(tmp_path), _tree(good["root"])
    r = CliRunner().invoke(cli, argv(target, good), obj={})
    out = r.output.strip()
    assert r.exit_code == 2, (r.exit_code, out, r.exception)
    assert "Traceback" not in out and out.count("\n") == 0, out
    assert out.startswith("mrfrecon: error: ") and expect in out, out
    assert _tree(tmp_path) == before and _tree(good["root"]) == good_before  # nothing written, nothing touched


def test_debug_before_or_after_the_subcommand_shows_the_traceback(tmp_path):
    bad = seq_file(ti_ms=1e9)(tmp_path, {})
    for argv in (["--debug", "sequence", "show", "--sequence", str(bad)], ["sequence", "show", "--sequence", str(bad), "--debug"]):
        r = CliRunner().invoke(cli, argv, obj={})
        assert r.exit_code != 0 and r.exception is not None and "ti_ms" in str(r.exception)


def test_check_reports_every_problem(good, tmp_path):
    ok = CliRunner().invoke(cli, ["check", str(good["scan"]), str(good["dict"]), str(good["ckpt"]), str(good["nifti"])], obj={})
    assert ok.exit_code == 0, ok.output
    assert "ok (scan)" in ok.output and "ok (dictionary)" in ok.output and "ok (checkpoint)" in ok.output
    a = flip_byte("scan", "series")(tmp_path, good)
    b = ckpt(first_weight(lambda w: w * np.nan))(tmp_path, good)
    c = seq_file(ti_ms=-3)(tmp_path, good)
    r = CliRunner().invoke(cli, ["check", str(a), str(b), str(c), str(good["scan"])], obj={})
    assert r.exit_code == 2
    assert "series: checksum mismatch" in r.output and "NaN or infinite weights" in r.output and "ti_ms" in r.output
    assert "3 of 4 path(s) have problems" in r.output and "ok (scan)" in r.output
