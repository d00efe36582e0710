"""Signal model against independent references: closed forms and the blochsim simulator."""

import numpy as np
import pytest

from mrfrecon import MrfreconError, Sequence, simulate
from mrfrecon.physics import FAT_AMPLITUDES, FAT_FREQUENCIES_HZ


def _constant_train(fa=10.0, tr=5.0, te=2.0, spokes=800, inversion=False, ti=0.0):
    return Sequence(
        flip_angle_deg=np.full(spokes, fa), te_ms=np.full(spokes, te), tr_ms=np.full(spokes, tr),
        ti_ms=ti, spokes_per_frame=8, repetitions=1, inversion=inversion, name="constant",
    )


@pytest.mark.parametrize("t1, fa, b1", [(1000.0, 10.0, 1.0), (400.0, 30.0, 0.7), (1800.0, 5.0, 1.0)])
def test_spoiled_steady_state(t1, fa, b1):
    # Ernst: Mz_ss = (1 − E1) / (1 − cos(α)·E1), signal = Mz_ss·sin α·exp(−TE/T2)
    seq = _constant_train(fa=fa, spokes=4000)
    sig = simulate(seq, t1h2o=t1, b1=b1, t2h2o=40.0, per_spoke=True)
    a = np.deg2rad(fa * b1)
    e1 = np.exp(-5.0 / t1)
    ss = (1 - e1) / (1 - np.cos(a) * e1) * np.sin(a) * np.exp(-2.0 / 40.0)
    np.testing.assert_allclose(sig[-1].real, ss, rtol=1e-4)
    assert abs(sig[-1].imag) < 1e-6 * ss  # 90° excitation phase: real on resonance


def test_inversion_recovery_without_pulses():
    # a vanishing flip angle samples Mz(t) = 1 − 2·exp(−t/T1) after a perfect inversion
    seq = _constant_train(fa=0.01, tr=10.0, te=0.0, spokes=400, inversion=True, ti=20.0)
    t1 = 900.0
    sig = simulate(seq, t1h2o=t1, per_spoke=True).real / np.sin(np.deg2rad(0.01))
    t = 20.0 + 10.0 * np.arange(400)
    np.testing.assert_allclose(sig, 1 - 2 * np.exp(-t / t1), atol=2e-3)


def test_off_resonance_and_fat_phase_at_te():
    # a single pulse: the echo carries exp(i2πΔf·TE) for water and the fat spectrum for fat
    seq = Sequence(flip_angle_deg=[30.0], te_ms=[3.0], tr_ms=[10.0], ti_ms=0.0, spokes_per_frame=1, inversion=False)
    w = simulate(seq, t1h2o=1000.0, df=50.0, t2h2o=1e9)[0]
    np.testing.assert_allclose(w, 0.5 * np.exp(2j * np.pi * 50.0 * 3e-3), rtol=1e-5)
    f = simulate(seq, t1h2o=1000.0, ff=1.0, df=50.0, t2fat=1e9)[0]
    a, fr = np.array(FAT_AMPLITUDES), np.array(FAT_FREQUENCIES_HZ)
    expect = 0.5 * (a * np.exp(2j * np.pi * (fr + 50.0) * 3e-3)).sum() / a.sum()
    np.testing.assert_allclose(f, expect, rtol=1e-5)


def test_linear_in_components_and_broadcasting():
    seq = Sequence.mrf_wf()
    ff = np.array([0.0, 0.3, 1.0])[:, None]
    t1 = np.array([800.0, 1200.0])[None, :]
    x = simulate(seq, t1h2o=t1, t1fat=350.0, b1=0.8, df=-20.0, ff=ff, pd=2.0)
    assert x.shape == (3, 2, 175) and x.dtype == np.complex64
    np.testing.assert_allclose(x[1], 0.7 * x[0] + 0.3 * x[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(x[2, 0], x[2, 1], rtol=1e-5)  # FF = 1: water T1 irrelevant
    b1 = np.linspace(1.0, 0.5, 4)
    np.testing.assert_allclose(simulate(seq, t1h2o=900.0, b1=b1[::-1]), simulate(seq, t1h2o=900.0, b1=b1)[::-1])


@pytest.mark.parametrize(
    "kw, message",
    [({"t1h2o": -5.0}, "t1h2o"), ({"t1h2o": 1000.0, "ff": 1.2}, "ff"), ({"t1h2o": 1000.0, "b1": 0.0}, "b1"),
     ({"t1h2o": np.nan}, "NaN")],
)
def test_bad_parameters(kw, message):
    with pytest.raises(MrfreconError, match=message):
        simulate(Sequence.mrf_wf(), **kw)


# ---------------------------------------------------------------------------- blochsim reference
blochsim = pytest.importorskip("blochsim")


def _blochsim_train(seq: Sequence):
    """The sequence in blochsim (Cencini et al., MIT licence): perfect inversion, TI, then one
    excitation per spoke read at TE and ideally spoiled (SPOIL_AFTER), recovery after the train."""
    import torch
    from blochsim import Simulator
    from blochsim._model import SpinPhysics
    from blochsim.sequence import Delay, EventAction, Excitation, Inversion, Readout, module

    class Train(Simulator):
        model = SpinPhysics(properties={"T1": "t1_ms", "T2": "t2_ms", "M0": "m0", "B1": "b1", "B0": "b0_hz"})
        states = 1

        def layout(self, *, flip, TE, TR, TI, recovery):
            a = torch.deg2rad(torch.as_tensor(flip, dtype=torch.float64))
            parts = [Inversion(duration_s=TI * 1e-3)]
            for k in range(a.numel()):
                readout = (float(TE[k]) * 1e-3, Readout(0.0, action=EventAction.SPOIL_AFTER))
                parts.append(module(Excitation(a[k], 0.0), readout, duration_s=float(TR[k]) * 1e-3))
            parts.append(Delay(recovery * 1e-3))
            return parts

    return Train(flip=seq.flip_angle_deg, TE=seq.te_ms, TR=seq.tr_ms, TI=seq.ti_ms, recovery=seq.recovery_ms)


def _corr(a, b):
    return abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_water_and_fat_fingerprints_match_blochsim():
    import torch

    seq = Sequence.mrf_wf()
    sim = _blochsim_train(seq)
    cases = [(1000.0, 0.8, 0.0), (1500.0, 0.55, 40.0), (700.0, 1.0, -90.0)]
    for t1, b1, df in cases:
        # blochsim's B0 rotates as exp(−i2π·B0·t): our Δf is −B0
        ref = np.asarray(sim.simulate(T1=t1, T2=40.0, B1=b1, B0=-df, repetitions=seq.repetitions)).ravel()
        ours = simulate(seq, t1h2o=t1, b1=b1, df=df, per_spoke=True)
        assert ref.shape == ours.shape
        assert _corr(ours, ref) >= 0.9999
        np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=2e-5 * np.abs(ref).max() + 1e-6)
    # fat: each peak as its own isochromat, summed with the peak amplitudes
    t1f, b1, df = 350.0, 0.7, 20.0
    amp = np.array(FAT_AMPLITUDES) / np.sum(FAT_AMPLITUDES)
    b0 = torch.tensor([-(f + df) for f in FAT_FREQUENCIES_HZ], dtype=torch.float64)[:, None]
    peaks = np.asarray(sim.simulate(T1=t1f, T2=80.0, B1=b1, B0=b0, repetitions=seq.repetitions))
    ref = (amp[:, None] * peaks.reshape(len(amp), -1)).sum(0)
    ours = simulate(seq, t1h2o=1000.0, t1fat=t1f, b1=b1, df=df, ff=1.0, per_spoke=True)
    assert _corr(ours, ref) >= 0.9999


def test_projected_equals_projection_of_spoke_signals():
    from mrfrecon.physics import simulate_projected

    seq = Sequence.mrf_wf()
    rng = np.random.default_rng(0)
    n = 50
    p = [rng.uniform(600, 2000, n), rng.uniform(250, 450, n), rng.uniform(0.4, 1, n), rng.uniform(-100, 100, n),
         rng.uniform(0, 1, n), rng.uniform(0.5, 1, n)]
    proj = (rng.standard_normal((1400, 5)) + 1j * rng.standard_normal((1400, 5))).astype(np.complex64)
    direct = simulate(seq, *p, per_spoke=True).astype(np.complex128) @ proj
    np.testing.assert_allclose(simulate_projected(seq, proj, *p), direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())


@pytest.mark.parametrize("schedule", ["irregular", "blocks", "large-angles"])
def test_recursion_against_plain_python_loop(schedule):
    # two repetitions with recovery; "irregular": many distinct flip angles and TRs (runs of one
    # pulse), "blocks": runs of 8 equal pulses down to 0.5° (the closed form per run), "large-angles":
    # flips past 90° (the pulse-by-pulse path)
    rng = np.random.default_rng(1)
    fa, tr = rng.uniform(1, 40, 64), rng.uniform(4, 9, 64)
    if schedule == "blocks":
        fa, tr = np.repeat(rng.uniform(0.5, 40, 8), 8), np.repeat(rng.uniform(4, 9, 8), 8)
    elif schedule == "large-angles":
        fa = rng.uniform(60, 170, 64)
    seq = Sequence(flip_angle_deg=fa, te_ms=np.full(64, 2.0), tr_ms=tr, ti_ms=15.0, spokes_per_frame=4,
                   repetitions=2, recovery_ms=300.0)
    t1, b1 = 700.0, 0.9
    mz, out = 1.0, []
    for rep in range(2):
        mz = 1 + (-mz - 1) * np.exp(-15.0 / t1)
        for k in range(64):
            a = np.deg2rad(fa[k]) * b1
            if rep == 1:
                out.append(mz * np.sin(a) * np.exp(-2.0 / 40.0))
            mz = 1 + (mz * np.cos(a) - 1) * np.exp(-tr[k] / t1)
        mz = 1 + (mz - 1) * np.exp(-300.0 / t1)
    np.testing.assert_allclose(simulate(seq, t1h2o=t1, b1=b1, per_spoke=True).real, out, rtol=1e-4, atol=1e-7)


def test_closed_form_runs_equal_the_pulse_by_pulse_recursion_on_mrf_wf():
    # the MRF-WF schedule (runs of hundreds of equal pulses) over a patient-like T1/B1 spread:
    # the two paths of the recursion on the same inputs, in float64
    import torch

    from mrfrecon.physics import signal

    seq = Sequence.mrf_wf()
    rng = np.random.default_rng(2)
    t1 = torch.tensor(rng.uniform(250, 3000, 500), dtype=torch.float64)
    b1 = torch.tensor(rng.uniform(0.3, 1.6, 500), dtype=torch.float64)
    pairs, which = np.unique(np.stack([seq.flip_angle_deg, seq.tr_ms], 1), axis=0, return_inverse=True)
    angle = torch.tensor(np.deg2rad(pairs[:, 0]), dtype=torch.float64)[:, None] * b1[None, :]
    tr = torch.tensor(pairs[:, 1], dtype=torch.float64)
    e_ti, e_rec = torch.exp(-seq.ti_ms / t1), torch.exp(-seq.recovery_ms / t1)
    args = (seq, which.reshape(-1), angle, tr, t1, e_ti, e_rec)
    fast, slow = signal._runs_closed_form(*args), signal._spoke_by_spoke(*args)
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=0, atol=1e-10)
