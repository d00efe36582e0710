"""BIDS derivatives (issue 21, item 4) and checkpoints as ``shipped:<name>`` in the Python API
(item 5).

A small raw BIDS dataset of MRF series (``part-mag``/``part-phase`` NIfTI pairs, two subjects, one
with two sessions) is matched and predicted; the outputs must form a derivative dataset: maps
under ``sub-*/[ses-*/]anat|fmap/`` named from the inputs' entities, a ``dataset_description.json``
with ``GeneratedBy``/``SourceDatasets``, ``Sources`` as BIDS URIs that resolve to the inputs, the
HDF5 maps outside the tree or ignored. File names are checked against the BIDS schema's
derivative rules (bidsschematools); the full BIDS validator runs when one is installed
(``bids-validator-deno``, the npm ``bids-validator``, or ``$MRFRECON_BIDS_VALIDATOR``; see
``scripts/check_bids.sh``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from test_training import FRAMES, make_scan, short_sequence

from mrfrecon import MrfreconError
from mrfrecon.cli import cli
from mrfrecon.io.bids import (BIDS_VERSION, BIDSIGNORE, DerivativeDataset, derivatives_root, output_path,
                              parse_bids_name, plan_derivatives)
from mrfrecon.io.nifti import export_maps, planned_outputs
from mrfrecon.io.readers import read_scan, scan_stem
from mrfrecon.io.scan import save_scan

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (subject folder, file entities) of the raw MRF series
RAW = [("sub-01/ses-1/anat", "sub-01_ses-1_acq-wf_run-1"), ("sub-01/ses-2/anat", "sub-01_ses-2_acq-wf_run-1"),
       ("sub-02/anat", "sub-02")]


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), obj={})


def _write_pair(scan, folder: Path, entities: str) -> Path:
    """The series as a BIDS magnitude/phase pair (x, y, z, t) with the scan's RAS+ affine."""
    folder.mkdir(parents=True, exist_ok=True)
    v = np.ascontiguousarray(scan.series.transpose(3, 2, 0, 1)).astype(np.complex128)
    mag = folder / f"{entities}_part-mag_MRF.nii.gz"
    nib.save(nib.Nifti1Image(np.abs(v), scan.affine_ras()), str(mag))
    nib.save(nib.Nifti1Image(np.angle(v), scan.affine_ras()), str(folder / f"{entities}_part-phase_MRF.nii.gz"))
    # a valid raw image beside it, so that the raw dataset itself validates (the MRF series have no
    # BIDS suffix and are listed in its .bidsignore)
    t1w = folder / f"{entities.split('_acq')[0]}_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.abs(v[..., 0]).astype(np.float32), scan.affine_ras()), str(t1w))
    return mag


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A raw BIDS dataset of MRF series, a small dictionary and an untrained checkpoint (10 frames)."""
    import torch

    from mrfrecon.checkpoint import save_checkpoint
    from mrfrecon.data import MapNorm
    from mrfrecon.dictionary import Dictionary, Grid
    from mrfrecon.models import build

    root = tmp_path_factory.mktemp("bids")
    seq = short_sequence()
    raw = root / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps(
        {"Name": "MRF-WF test data", "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
         "Authors": ["A. Tester", "B. Tester"], "DatasetDOI": "doi:10.0000/mrfrecon.test"}))
    (raw / "README").write_text("MR fingerprinting (MRF-WF) image series of simulated legs for the mrfrecon tests.\n"
                                "The MRF series have no BIDS suffix yet; .bidsignore lists them.\n" * 3)
    (raw / ".bidsignore").write_text("*_MRF.*\n")
    (raw / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    scans, inputs = {}, {}
    for i, (folder, ents) in enumerate(RAW):
        scans[ents] = make_scan(10 + i, seq)
        inputs[ents] = _write_pair(scans[ents], raw / folder, ents)
    grid = Grid.from_spec({"t1h2o_ms": {"ranges": [[800, 1700, 100]]}, "t1fat_ms": {"values": [300, 400]},
                           "b1": {"values": [0.6, 0.8, 1.0, 1.2]}, "df_hz": {"values": [0]}})
    Dictionary.build(seq, grid).save(root / "d.h5")
    torch.manual_seed(0)
    net = build("proposed", frames=FRAMES, maps=3, width=0.1)
    meta = {"spec": net.spec, "map_norm": MapNorm(("t1h2o", "ff", "b1"), (500.0, 0.0, 0.3), (2300.0, 1.0, 1.5)).to_dict(),
            "maps": ["t1h2o", "ff", "b1"], "sequence_json": seq.to_json(), "sequence_digest": seq.digest(),
            "frames": FRAMES, "target": "reference", "epoch": 0, "val_nrmse": 1.0}
    save_checkpoint(root / "ck.pt", net.state_dict(), meta)
    return {"root": root, "raw": raw, "seq": seq, "scans": scans, "inputs": inputs}


def _resolve(dataset: Path, uri: str) -> Path:
    """The file a BIDS URI names (Common principles → "BIDS URI"; links without a scheme are
    relative to the dataset root)."""
    m = re.fullmatch(r"bids:([^:]*):(.*)", uri)
    assert m, uri
    links = json.loads((dataset / "dataset_description.json").read_text()).get("DatasetLinks", {})
    base = dataset if m.group(1) == "" else (dataset / links[m.group(1)])
    return (base / m.group(2)).resolve()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------- names
def test_names_are_built_from_the_inputs_entities():
    # the README's example input: suffix and part- replaced, not kept (was sub-01_MRF_desc-water_T1map)
    stem = scan_stem("sub-01_part-mag_MRF.nii.gz")
    assert output_path("t1h2o", stem, bids=True) == Path("sub-01/anat/sub-01_desc-water_T1map")
    assert output_path("t1h2o", stem, bids=False) == Path("sub-01_desc-water_T1map")
    # entities in BIDS order whatever the input's order; sessions give a ses- folder
    stem = "sub-01_run-2_ses-pre_task-rest_acq-wf_ce-gd_rec-kwic_echo-1_MRF"
    assert parse_bids_name(stem).entities["run"] == "2" and parse_bids_name(stem).suffix == "MRF"
    assert output_path("t1fat", stem, bids=True) == Path(
        "sub-01/ses-pre/anat/sub-01_ses-pre_task-rest_acq-wf_ce-gd_rec-kwic_run-2_desc-fat_T1map")
    assert output_path("ff", stem, bids=True).name == "sub-01_ses-pre_task-rest_acq-wf_ce-gd_rec-kwic_run-2_FFmap"
    # fmap/: TB1map takes no task; the B0 fieldmap and its magnitude no task, ce or rec (schema 1.11)
    assert output_path("b1", stem, bids=True) == Path(
        "sub-01/ses-pre/fmap/sub-01_ses-pre_acq-wf_ce-gd_rec-kwic_run-2_desc-mrf_TB1map")
    assert output_path("df", stem, bids=True).name == "sub-01_ses-pre_acq-wf_run-2_desc-mrf_fieldmap"
    assert output_path("magnitude", stem, bids=True).name == "sub-01_ses-pre_acq-wf_run-2_desc-mrf_magnitude"
    assert output_path("mask", stem, bids=True).name.endswith("_run-2_desc-foreground_mask")
    # a simulated scan (sub-000.h5) has entities and no suffix; other names keep the flat stem
    assert output_path("pd", scan_stem("sub-000.h5"), bids=True) == Path("sub-000/anat/sub-000_desc-mrf_PDmap")
    assert output_path("b1", "s003", bids=False) == Path("s003_desc-mrf_TB1map")
    for bad in ("s003", "sub-01_run-a_MRF", "sub-01_foo-bar_MRF", "sub-01_sub-02_MRF", "sub-0.1_MRF"):
        assert bad == "s003" or parse_bids_name(bad) is None
        with pytest.raises(MrfreconError, match="not a BIDS name"):
            output_path("t1h2o", bad, bids=True)


def test_export_maps_layout_units_and_dataset_files(world, tmp_path):
    """export_maps(bids=True): every map in its place, units as before, sidecars with Sources as
    BIDS URIs, the dataset description, .bidsignore and README; a second export merges."""
    scan = world["scans"]["sub-01_ses-1_acq-wf_run-1"]
    src = world["inputs"]["sub-01_ses-1_acq-wf_run-1"]
    deriv = world["raw"] / "derivatives" / "api-test"
    maps = {**{k: v for k, v in scan.maps.items()}, "t1fat": np.full(scan.shape, 350.0, np.float32),
            "df": np.full(scan.shape, 12.5, np.float32), "pd": np.full(scan.shape, 3.0, np.float32),
            "residual": np.zeros(scan.shape, np.float32)}
    side = {"Sources": [str(src), str(src).replace("part-mag", "part-phase")], "EstimationSoftwareName": "mrfrecon"}
    written = export_maps(maps, deriv, scan_stem(src), scan.affine_ras(), sidecar=side, foreground=scan.foreground,
                          labels=scan.labels, label_names=scan.label_names, bids=True,
                          generated_by={"Description": "test"})
    files = _files(deriv)
    base = "sub-01/ses-1/{}/sub-01_ses-1_acq-wf_run-1_{}"
    expect = [base.format("anat", n) for n in ("desc-water_T1map", "desc-fat_T1map", "FFmap", "desc-mrf_PDmap",
                                                 "desc-foreground_mask", "dseg")]
    expect += [base.format("fmap", n) for n in ("desc-mrf_TB1map", "desc-mrf_fieldmap", "desc-mrf_magnitude")]
    for e in expect:
        assert f"{e}.nii.gz" in files and f"{e}.json" in files, e
    assert base.format("anat", "dseg.tsv") in files
    assert {".bidsignore", "README.md", "dataset_description.json"} <= set(files)
    assert not [f for f in files if "residual" in f or f.endswith(".h5")]
    assert sorted(str(p) for p in written if "sub-01" in str(p)) == sorted(
        str(p) for p in planned_outputs(deriv, scan_stem(src), list(maps), labels=True, bids=True))
    # units and values: T1map in s, TB1map and FF in %, fieldmap in Hz, magnitude = PD
    for key, scale, units in (("t1h2o", 1e-3, "s"), ("ff", 100.0, "%"), ("b1", 100.0, "%"), ("df", 1.0, "Hz")):
        f = deriv / f"{output_path(key, scan_stem(src), bids=True)}"
        vol = np.asarray(nib.load(f"{f}.nii.gz").dataobj).transpose(2, 1, 0)
        np.testing.assert_allclose(vol, maps[key] * np.float32(scale), rtol=1e-6)
        doc = json.loads(Path(f"{f}.json").read_text())
        assert doc["Units"] == units and doc["SkullStripped"] is False and "BasedOn" not in doc
        assert [_resolve(deriv, u) for u in doc["Sources"]] == [Path(s).resolve() for s in side["Sources"]]
        assert doc["Sources"][0] == "bids:raw:sub-01/ses-1/anat/sub-01_ses-1_acq-wf_run-1_part-mag_MRF.nii.gz"
    mag = deriv / f"{output_path('magnitude', scan_stem(src), bids=True)}.nii.gz"
    np.testing.assert_allclose(np.asarray(nib.load(mag).dataobj), 3.0)
    assert nib.load(mag).header.get_qform(coded=True)[1] == 1  # headers as before: qform/sform code 1
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"] == BIDS_VERSION and desc["Name"]
    assert desc["GeneratedBy"] == [{"Name": "mrfrecon", "Version": __import__("mrfrecon").__version__,
                                    "Description": "test"}]
    assert desc["DatasetLinks"] == {"raw": "../.."}  # relative to the derivative root: no local absolute path
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:", "DOI": "doi:10.0000/mrfrecon.test"}]
    assert (deriv / ".bidsignore").read_text().splitlines() == list(BIDSIGNORE)
    # a second export (another subject, another run) merges: one link, two runs in GeneratedBy
    src2 = world["inputs"]["sub-02"]
    export_maps(world["scans"]["sub-02"].maps, deriv, scan_stem(src2), scan.affine_ras(), sidecar={"Sources": [str(src2)]},
                bids=True, generated_by={"Description": "second"})
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert [g["Description"] for g in desc["GeneratedBy"]] == ["test", "second"] and list(desc["DatasetLinks"]) == ["raw"]
    assert (deriv / "sub-02/anat/sub-02_desc-water_T1map.nii.gz").is_file()
    # an input outside any BIDS dataset gets a link to its folder, still relative
    loose = tmp_path / "loose" / "sub-03_part-mag_MRF.nii.gz"
    loose.parent.mkdir()
    shutil.copy(src, loose)
    export_maps({"ff": scan.maps["ff"]}, deriv, scan_stem(loose), scan.affine_ras(), sidecar={"Sources": [str(loose)]},
                bids=True)
    doc = json.loads((deriv / "sub-03/anat/sub-03_FFmap.json").read_text())
    assert doc["Sources"] == ["bids:inputs:sub-03_part-mag_MRF.nii.gz"] and _resolve(deriv, doc["Sources"][0]) == loose.resolve()
    assert not os.path.isabs(json.loads((deriv / "dataset_description.json").read_text())["DatasetLinks"]["inputs"])
    # other files beside the maps (their SDs) get the same Sources; no extra GeneratedBy entry
    from mrfrecon.io.nifti import sidecar_sources

    before = json.loads((deriv / "dataset_description.json").read_text())
    assert sidecar_sources({"Sources": [str(src2)], "X": 1}, deriv, bids=True) == {
        "Sources": ["bids:raw:sub-02/anat/sub-02_part-mag_MRF.nii.gz"], "X": 1}
    assert sidecar_sources({"Sources": [str(src2)]}, tmp_path, bids=False) == {"Sources": [src2.resolve().as_uri()]}
    other = tmp_path / "other" / "sub-04_MRF.nii.gz"
    other.parent.mkdir()
    assert sidecar_sources({"Sources": [str(other)]}, deriv, bids=True)["Sources"] == ["bids:inputs2:sub-04_MRF.nii.gz"]
    after = json.loads((deriv / "dataset_description.json").read_text())
    assert after["GeneratedBy"] == before["GeneratedBy"] and "inputs2" in after["DatasetLinks"]
    # a DataLad/git-annex file is a symlink into the annex: its URI is its place in the dataset
    annexed = world["raw"] / "sub-02" / "anat" / "sub-02_acq-annex_part-mag_MRF.nii.gz"
    annexed.symlink_to(loose)
    try:
        assert DerivativeDataset(deriv).uri(annexed) == "bids:raw:sub-02/anat/sub-02_acq-annex_part-mag_MRF.nii.gz"
        assert DerivativeDataset(deriv).uri(deriv / "sub-02" / "x.nii.gz") == "bids::sub-02/x.nii.gz"
    finally:
        annexed.unlink()


# ----------------------------------------------------------------------------------- where
def test_derivative_root_is_chosen_and_checked(world, tmp_path):
    raw = world["raw"]
    assert derivatives_root(tmp_path / "maps") is None  # outside any BIDS dataset: flat
    assert derivatives_root(raw / "work" / "maps") == raw / "derivatives" / "mrfrecon"
    assert derivatives_root(raw / "derivatives" / "mrfrecon" / "h5") == raw / "derivatives" / "mrfrecon"
    assert derivatives_root(tmp_path, tmp_path / "mine") == tmp_path / "mine"
    ours = tmp_path / "ours"
    DerivativeDataset(ours).save()
    assert derivatives_root(ours / "h5") == ours  # inside an mrfrecon derivative: that one
    stems = {"a": "sub-01_MRF", "b": "s003"}
    assert plan_derivatives(raw / "work", stems) is None  # auto + a non-BIDS input: flat
    with pytest.raises(MrfreconError, match=r"^b: not a BIDS name .*--bids-derivatives needs"):
        plan_derivatives(tmp_path, stems, tmp_path / "deriv")
    with pytest.raises(MrfreconError, match="holds a raw BIDS dataset.*derivatives/mrfrecon"):
        plan_derivatives(tmp_path, {"a": "sub-01_MRF"}, raw)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset_description.json").write_text("{")
    with pytest.raises(MrfreconError, match="dataset_description.json: not a readable JSON file"):
        plan_derivatives(tmp_path, {"a": "sub-01_MRF"}, tmp_path / "broken")


# ------------------------------------------------------------------------- match and predict
def test_match_writes_the_derivative_dataset_when_out_is_inside_bids(world, tmp_path):
    raw = world["raw"]
    src = world["inputs"]["sub-01_ses-2_acq-wf_run-1"]
    out = raw / "derivatives" / "mrfrecon"  # --out inside the raw dataset: the default layout
    r = run("match", src, "--dictionary", world["root"] / "d.h5", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"BIDS derivative dataset {out}" in r.output
    files = _files(out)
    anat, fmap = "sub-01/ses-2/anat/sub-01_ses-2_acq-wf_run-1_", "sub-01/ses-2/fmap/sub-01_ses-2_acq-wf_run-1_"
    for name in ("desc-water_T1map", "desc-fat_T1map", "FFmap", "desc-mrf_PDmap"):
        assert f"{anat}{name}.nii.gz" in files
    for name in ("desc-mrf_TB1map", "desc-mrf_fieldmap", "desc-mrf_magnitude"):
        assert f"{fmap}{name}.nii.gz" in files
    assert f"{anat}desc-foreground_mask.nii.gz" in files
    # the HDF5 maps in --out, which is the derivative root here: listed in .bidsignore
    assert "sub-01_ses-2_acq-wf_run-1_MRF_maps.h5" in files and "*_maps.h5" in (out / ".bidsignore").read_text()
    with h5py.File(out / "sub-01_ses-2_acq-wf_run-1_MRF_maps.h5") as f:
        t1 = f["maps/t1h2o"][()]
    vol = np.asarray(nib.load(out / f"{anat}desc-water_T1map.nii.gz").dataobj).transpose(2, 1, 0)
    np.testing.assert_allclose(vol, t1 / 1000, rtol=1e-6)
    doc = json.loads((out / f"{anat}desc-water_T1map.json").read_text())
    assert [_resolve(out, u) for u in doc["Sources"]] == [src.resolve(), Path(str(src).replace("mag", "phase")).resolve()]
    assert doc["Method"]["dictionary"]["sha256"] and doc["Units"] == "s"
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Description"].startswith("mrfrecon match: two-component")


def test_predict_writes_the_same_layout(world, tmp_path):
    """predict with --bids-derivatives: HDF5 maps in --out, outside the BIDS tree; sessions and
    subjects as BIDS places them; the same dataset takes a second command's runs."""
    deriv = tmp_path / "deriv"
    inputs = [world["inputs"][e] for _, e in RAW]
    r = run("predict", "--checkpoint", world["root"] / "ck.pt", *inputs, "--out", tmp_path / "h5",
            "--bids-derivatives", deriv)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "h5").iterdir()) == [
        "sub-01_ses-1_acq-wf_run-1_MRF_maps.h5", "sub-01_ses-2_acq-wf_run-1_MRF_maps.h5", "sub-02_MRF_maps.h5"]
    files = _files(deriv)
    for ses in ("ses-1", "ses-2"):
        assert f"sub-01/{ses}/anat/sub-01_{ses}_acq-wf_run-1_desc-water_T1map.nii.gz" in files
        assert f"sub-01/{ses}/anat/sub-01_{ses}_acq-wf_run-1_FFmap.json" in files
        assert f"sub-01/{ses}/fmap/sub-01_{ses}_acq-wf_run-1_desc-mrf_TB1map.nii.gz" in files
    assert "sub-02/anat/sub-02_desc-water_T1map.nii.gz" in files and "sub-02/fmap/sub-02_desc-mrf_TB1map.json" in files
    assert not [f for f in files if f.endswith(".h5")]
    doc = json.loads((deriv / "sub-02/fmap/sub-02_desc-mrf_TB1map.json").read_text())
    assert doc["Units"] == "%" and doc["TrainingTarget"] == "reference"
    assert [_resolve(deriv, u) for u in doc["Sources"]][0] == world["inputs"]["sub-02"].resolve()
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Description"].startswith("mrfrecon predict: CNN proposed")
    assert not os.path.isabs(desc["DatasetLinks"]["raw"])
    # match into the same dataset: a second GeneratedBy entry, the same link
    r = run("match", inputs[2], "--dictionary", world["root"] / "d.h5", "--out", tmp_path / "h5m",
            "--bids-derivatives", deriv)
    assert r.exit_code == 0, r.output
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert len(desc["GeneratedBy"]) == 2 and list(desc["DatasetLinks"]) == ["raw"]
    # mrfrecon check takes the whole derivative tree: sidecars as sidecars, maps in their BIDS units
    r = run("check", deriv)
    assert r.exit_code == 0 and "ok (folder)" in r.output, r.output
    t1 = deriv / "sub-02/anat/sub-02_desc-water_T1map"
    side = json.loads(t1.with_suffix(".json").read_text())
    t1.with_suffix(".json").write_text(json.dumps({**side, "Units": "ms"}))
    r = run("check", deriv)
    assert r.exit_code == 2 and "sub-02_desc-water_T1map.json: Units 'ms': expected 's'" in r.output, r.output
    t1.with_suffix(".json").write_text(json.dumps(side))
    img = nib.load(f"{t1}.nii.gz")  # the same map written in ms under a sidecar that says s: out of range
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(data * 1000, img.affine), f"{t1}.nii.gz")
    r = run("check", deriv)
    assert r.exit_code == 2 and "sub-02_desc-water_T1map.nii.gz: value" in r.output, r.output
    nib.save(nib.Nifti1Image(data, img.affine), f"{t1}.nii.gz")
    (deriv / "dataset_description.json").write_text(json.dumps({k: v for k, v in desc.items() if k != "GeneratedBy"}))
    r = run("check", deriv)
    assert r.exit_code == 2 and r.output.count("mrfrecon: problem:") == 1, r.output
    assert "GeneratedBy: a derivative dataset needs" in r.output, r.output


def test_non_bids_inputs_and_bad_requests(world, tmp_path):
    """Inputs without entities keep the flat layout (also when --out is inside a BIDS dataset);
    --bids-derivatives with such an input, or naming a raw dataset, is one line and writes
    nothing; inputs whose maps would share a name are refused."""
    scan = world["scans"]["sub-02"]
    save_scan(tmp_path / "s003.h5", scan)
    out = world["raw"] / "work-flat"
    r = run("predict", "--checkpoint", world["root"] / "ck.pt", tmp_path / "s003.h5", "--out", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["s003_maps.h5", *[p.name for p in planned_outputs(out, "s003", ["t1h2o", "ff", "b1"])]])
    assert not (world["raw"] / "derivatives" / "mrfrecon" / "sub-s003").exists()
    doc = json.loads((out / "s003_desc-water_T1map.json").read_text())
    assert doc["Sources"] == [(tmp_path / "s003.h5").resolve().as_uri()]  # no dataset: file: URIs
    shutil.rmtree(out)
    for args, msg in (([tmp_path / "s003.h5", "--bids-derivatives", tmp_path / "d"], "s003.h5: not a BIDS name"),
                      ([world["inputs"]["sub-02"], "--bids-derivatives", world["raw"]], "holds a raw BIDS dataset"),
                      ([world["inputs"]["sub-02"], "--no-nifti", "--bids-derivatives", tmp_path / "d"], "drop --no-nifti")):
        r = run("predict", "--checkpoint", world["root"] / "ck.pt", *args, "--out", tmp_path / "o")
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
    r = run("match", tmp_path / "s003.h5", "--dictionary", world["root"] / "d.h5", "--out", tmp_path / "m.npz",
            "--bids-derivatives", tmp_path / "d")
    assert r.exit_code == 2 and "give a folder as --out" in r.output
    # two runs that differ only by rec-: their fieldmaps (which carry no rec-) would collide
    from mrfrecon.checkpoint import load_checkpoint
    from mrfrecon.inference import plan_outputs

    ck = load_checkpoint(world["root"] / "ck.pt")
    ck.meta["maps"] = ["t1h2o", "ff", "b1", "df", "pd"]
    a, b = tmp_path / "sub-01_rec-a_part-mag_MRF.nii.gz", tmp_path / "sub-01_rec-b_part-mag_MRF.nii.gz"
    with pytest.raises(MrfreconError, match="rec-a.* and .*rec-b.*: both would write .*sub-01_desc-mrf_fieldmap"):
        plan_outputs(ck, [a, b], tmp_path / "h5", bids_derivatives=tmp_path / "deriv")


# ------------------------------------------------------------------------------ validation
def _derivative_dataset(world, tmp_path) -> Path:
    deriv = world["raw"] / "derivatives" / "validate"
    if not (deriv / "dataset_description.json").exists():
        inputs = [world["inputs"][e] for _, e in RAW]
        r = run("predict", "--checkpoint", world["root"] / "ck.pt", *inputs, "--out", deriv, "--bids-derivatives", deriv)
        assert r.exit_code == 0, r.output
        r = run("match", inputs[0], "--dictionary", world["root"] / "d.h5", "--out", deriv, "--bids-derivatives", deriv)
        assert r.exit_code == 0, r.output
        scan = world["scans"]["sub-02"]  # ROI labels: dseg + tsv
        export_maps({}, deriv, "sub-02_MRF", scan.affine_ras(), labels=scan.labels, label_names=scan.label_names,
                    sidecar={"Sources": [str(world["inputs"]["sub-02"])]}, bids=True)
    return deriv


def test_names_follow_the_bids_schema(world, tmp_path):
    """Every file of the derivative dataset that .bidsignore does not list matches a file rule of
    the BIDS schema (bidsschematools: common + derivative imaging rules)."""
    bst = pytest.importorskip("bidsschematools", reason="bidsschematools (test extra) not installed")
    from bidsschematools import rules, schema

    sc = schema.load_schema()
    regexes = [r["regex"] for g in (sc.rules.files.common.core, sc.rules.files.deriv.imaging)
               for r in rules.regexify_filename_rules(g, sc, level=1)]
    deriv = _derivative_dataset(world, tmp_path)
    ignored = [re.compile(p.replace(".", r"\.").replace("*", ".*") + "$") for p in BIDSIGNORE]
    checked = 0
    for f in _files(deriv):
        if f.startswith(".") or any(i.match(Path(f).name) for i in ignored):
            continue
        assert any(re.match(r, f) for r in regexes), f"{f}: no BIDS {sc.bids_version} file rule matches"
        checked += 1
    assert checked >= 25 and bst is not None


def _validator() -> list[str] | None:
    cmd = os.environ.get("MRFRECON_BIDS_VALIDATOR")
    if cmd:
        return cmd.split()
    for name in ("bids-validator-deno", "bids-validator"):
        found = shutil.which(name) or (Path(sys.prefix) / "bin" / name if (Path(sys.prefix) / "bin" / name).exists() else None)
        if found:
            return [str(found)]
    return None


def test_the_bids_validator_accepts_the_derivatives(world, tmp_path):
    """The BIDS validator reports no error: the schema validator (3.x, derivative rules) on the
    derivative dataset; the legacy npm validator (1.x, which knows no derivative names and skips
    derivatives/ by design) on the raw dataset holding it."""
    cmd = _validator()
    if cmd is None:
        pytest.skip("no BIDS validator installed (pip install bids-validator-deno, or npm install bids-validator; "
                    "or set MRFRECON_BIDS_VALIDATOR); scripts/check_bids.sh runs both")
    deriv = _derivative_dataset(world, tmp_path)
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=300).stdout
    legacy = re.search(r"\b1\.\d+\.\d+", version) is not None
    targets = [world["raw"]] if legacy else [deriv, world["raw"]]
    for target in targets:
        r = subprocess.run([*cmd, str(target), "--json"], capture_output=True, text=True, timeout=600)
        doc = json.loads(r.stdout[r.stdout.index("{"):])
        issues = doc["issues"]
        errors = issues.get("errors", []) if isinstance(issues, dict) else [
            i for i in issues.get("issues", []) if i.get("severity") == "error"]
        assert not errors, f"{' '.join(cmd)} {target}: {json.dumps(errors)[:2000]}"


# --------------------------------------------------------------- item 5: shipped checkpoints
def test_python_api_takes_shipped_checkpoints_and_loads_once(world, tmp_path, monkeypatch):
    import mrfrecon.checkpoint as ckmod
    from mrfrecon import predict_scan
    from mrfrecon.inference import predict_folder
    from mrfrecon.shipped import open_checkpoint, ship

    monkeypatch.setenv("MRFRECON_SHIPPED_DIR", str(tmp_path / "shipped"))
    ship(world["root"] / "ck.pt", "tiny", command="test")
    scan = world["scans"]["sub-02"]
    direct = predict_scan(world["root"] / "ck.pt", scan)
    shipped = predict_scan("shipped:tiny", scan)
    # a path to any readable input is read with the checkpoint's sequence (10 frames, not MRF-WF's 175)
    from_file = predict_scan("shipped:tiny", world["inputs"]["sub-02"])
    read = read_scan(world["inputs"]["sub-02"], sequence=world["seq"])
    for m in direct:
        np.testing.assert_array_equal(shipped[m], direct[m])
        np.testing.assert_array_equal(from_file[m], predict_scan(world["root"] / "ck.pt", read)[m])
    assert open_checkpoint("shipped:tiny").path == tmp_path / "shipped" / "tiny.pt"
    with pytest.raises(MrfreconError, match="no shipped checkpoint 'nope'"):
        predict_scan("shipped:nope", scan)
    from mrfrecon.experiments.occlusion import run_occlusion

    with pytest.raises(MrfreconError, match="no shipped checkpoint 'nope'"):  # before any cohort or training
        run_occlusion(tmp_path / "occ", checkpoint="shipped:nope", log=None)
    # predict_folder: the checkpoint read and the network built once for all scans
    loads, builds = [], []
    real_load, real_build = ckmod.load_checkpoint, ckmod.Checkpoint.build_model
    monkeypatch.setattr(ckmod, "load_checkpoint", lambda p: loads.append(p) or real_load(p))
    monkeypatch.setattr(ckmod.Checkpoint, "build_model", lambda self, *a, **k: builds.append(1) or real_build(self, *a, **k))
    inputs = [world["inputs"][e] for _, e in RAW]
    written = predict_folder("shipped:tiny", inputs, tmp_path / "out", bids_derivatives=tmp_path / "deriv")
    assert len(written) == 3 and len(loads) == 1 and len(builds) == 1
    doc = json.loads((tmp_path / "deriv/sub-02/anat/sub-02_desc-water_T1map.json").read_text())
    assert doc["Method"]["checkpoint"]["sha256"] == json.loads((tmp_path / "shipped/MANIFEST.json").read_text())[
        "checkpoints"]["tiny"]["sha256"]
