"""Sequence: the built-in MRF-WF schedule and JSON round trip with validation."""

import json
import math
import re

import numpy as np
import pytest

from mrfrecon import MrfreconError, Sequence


def test_mrf_wf_schedule_matches_publication():
    s = Sequence.mrf_wf(echo_spacing_ms=1.11)
    assert s.spokes == 1400 and s.frames == 175 and s.spokes_per_frame == 8
    fa = s.flip_angle_deg
    # spokes are 1-based in the publication
    assert np.all(fa[0:600] == 5) and np.all(fa[600:800] == 10)
    assert np.all(fa[800:1000] == 5) and np.all(fa[1000:1200] == 15) and np.all(fa[1200:] == 5)
    assert np.all(s.te_ms[:800] == 2.39) and np.all(s.te_ms[800:1200] == 3.45) and np.all(s.te_ms[1200:] == 4.63)
    np.testing.assert_allclose(s.tr_ms - s.te_ms, 1.11)
    assert s.ti_ms == 8.32 and s.repetitions == 2 and s.recovery_ms == 5000.0
    assert abs(s.spoke_angle_increment_deg - 111.246) < 1e-3


def test_json_round_trip(tmp_path):
    s = Sequence.mrf_wf(echo_spacing_ms=1.63)
    p = s.save(tmp_path / "seq.json")
    t = Sequence.load(p)
    assert t == s and t.digest() == s.digest()
    assert Sequence.mrf_wf(1.11).digest() != s.digest()


def _write(tmp_path, d):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("te_ms"), "missing field"),
        (lambda d: d.__setitem__("tr_ms", d["tr_ms"][:-1]), "tr_ms: has 1399 values"),
        (lambda d: d["tr_ms"].__setitem__(3, -1.0), "tr_ms[3] = -1 ms is outside the physical range (0, 10000] ms"),
        (lambda d: d["tr_ms"].__setitem__(3, 1e308), "tr_ms[3] = 1e+308 ms is outside"),
        (lambda d: d["flip_angle_deg"].__setitem__(2, 1e6), "flip_angle_deg[2] = 1e+06° is outside"),
        (lambda d: d["te_ms"].__setitem__(5, d["tr_ms"][5]), "te_ms[5] = 3.5 ms is not shorter than tr_ms[5]"),
        (lambda d: d.__setitem__("excitation_phase_deg", math.inf), "excitation_phase_deg: expected a finite number"),
        (lambda d: d.__setitem__("spoke_angle_increment_deg", math.nan), "spoke_angle_increment_deg: expected a finite"),
        (lambda d: d.__setitem__("ti_ms", 1e9), "ti_ms: expected a finite number in [0, 10000] ms"),
        (lambda d: d.__setitem__("recovery_ms", -5), "recovery_ms: expected a finite number"),
        (lambda d: d.__setitem__("repetitions", 10**6), "repetitions: must be 1-100"),
        (lambda d: [d.__setitem__(k, d[k] * 43) for k in ("flip_angle_deg", "te_ms", "tr_ms")],
         "60,200 spokes, more than the limit of 50,000"),
        (lambda d: d["flip_angle_deg"].__setitem__(7, "five"), "flip_angle_deg[7]: expected a number"),
        (lambda d: d.__setitem__("spokes_per_frame", 3), "does not divide the 1400 spokes"),
        (lambda d: d.__setitem__("ti_ms", "short"), "ti_ms: expected a number"),
        (lambda d: d.__setitem__("tr_msec", 1), "unknown field"),
    ],
)
def test_bad_sequence_files_name_the_field(tmp_path, mutate, message):
    d = Sequence.mrf_wf().to_dict()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(MrfreconError, match=re.escape(message)) as e:
        Sequence.load(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, '{"ti_ms": 8}'.encode("utf-16"), b"\xff\xfe\xfd"])
def test_binary_and_utf16_files_are_one_error(tmp_path, content):
    p = tmp_path / "seq.json"
    p.write_bytes(content)
    with pytest.raises(MrfreconError, match="not (a text file|UTF-8 text)") as e:
        Sequence.load(p)
    assert str(p) in str(e.value)


def test_not_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{nope")
    with pytest.raises(MrfreconError, match="not valid JSON"):
        Sequence.load(p)
