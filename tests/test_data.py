"""Data pipeline: normalization, patch grid and dataset, whole-slice tiling, masked loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrfrecon import MrfreconError
from mrfrecon.data import (
    MapNorm,
    PatchDataset,
    PatchGrid,
    PatchIndex,
    SeriesNorm,
    crop_padded,
    grid_for,
    masked_mse,
    normalize_series,
    predict_slice,
    predict_volume,
    stack_maps,
)
from mrfrecon.models import build, to_channels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _series(rng, shape=(2, 4, 19, 23)) -> np.ndarray:
    re = 3.0 + 2.0 * rng.standard_normal(shape)
    im = -1.0 + 0.5 * rng.standard_normal(shape)
    return (re + 1j * im).astype(np.complex64)


def _foreground(shape=(2, 19, 23)) -> np.ndarray:
    fg = np.zeros(shape, dtype=bool)
    fg[:, 4:15, 3:9] = True
    fg[1, 2:5, 18:21] = True
    return fg


# --- normalization ---------------------------------------------------------------------------


def test_series_normalization_statistics_and_round_trip():
    rng = np.random.default_rng(0)
    s = _series(rng)
    n, stats = normalize_series(s)
    assert n.dtype == np.complex64 and n.shape == s.shape
    for part in (n.real, n.imag):  # separately, over the whole volume
        assert abs(part.astype(np.float64).mean()) < 1e-6
        assert part.astype(np.float64).std() == pytest.approx(1.0, abs=1e-5)
    ref = s.astype(np.complex128)
    assert stats.mean_real == pytest.approx(ref.real.mean(), rel=1e-9)
    assert stats.std_imag == pytest.approx(ref.imag.std(), rel=1e-9)
    np.testing.assert_allclose(stats.invert(n), ref, rtol=0, atol=1e-5)
    assert SeriesNorm.from_dict(stats.to_dict()) == stats


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "inf"), (1j * np.nan, "NaN")])
def test_non_finite_series_rejected(bad, kind):
    s = _series(np.random.default_rng(1))
    s[1, 2, 3, 4] = bad
    with pytest.raises(MrfreconError, match=rf"1 non-finite value.*{kind} at index \(1, 2, 3, 4\)"):
        normalize_series(s)


def test_series_must_be_complex_and_not_constant():
    with pytest.raises(MrfreconError, match="complex"):
        normalize_series(np.ones((1, 2, 3, 3)))
    with pytest.raises(MrfreconError, match="constant"):
        normalize_series(np.ones((1, 2, 3, 3), np.complex64))


def _maps(rng, fg, t1=(700, 1500)):
    shape = fg.shape
    m = {"t1h2o": rng.uniform(*t1, shape), "ff": rng.uniform(0, 0.9, shape), "b1": rng.uniform(0.5, 1.3, shape)}
    for v in m.values():
        v[~fg] = -7.0  # background values must not influence anything
    return m


def test_map_norm_uses_training_foreground_range_only():
    rng = np.random.default_rng(2)
    fg = _foreground()
    train = [_maps(rng, fg), _maps(rng, fg)]
    test = _maps(rng, fg, t1=(300, 3000))  # wider range: must not matter
    norm = MapNorm.fit(train, [fg, fg])
    t1 = np.concatenate([m["t1h2o"][fg] for m in train])
    assert norm.names == ("t1h2o", "ff", "b1")
    assert norm.minimum[0] == t1.min() and norm.maximum[0] == t1.max()
    assert norm.minimum[1] >= 0  # background −7 ignored
    # normalized training maps span [0, 1] in the foreground, background 0
    y = norm.normalize(train[0], fg)
    assert y.shape == (2, 3, 19, 23) and y.dtype == np.float32
    np.testing.assert_array_equal(y.transpose(1, 0, 2, 3)[:, ~fg], 0.0)
    assert y.transpose(1, 0, 2, 3)[:, fg].min() >= 0 and y.max() <= 1
    # test maps outside the training range normalize outside [0, 1]; denormalize clips to it
    yt = norm.normalize(test, fg)
    assert yt.min() < 0 and yt.max() > 1
    back = norm.denormalize(yt, fg)
    for i, n in enumerate(norm.names):
        v = back[n][fg]
        assert v.min() >= norm.minimum[i] - 1e-3 and v.max() <= norm.maximum[i] + 1e-3
        np.testing.assert_array_equal(back[n][~fg], 0.0)
        inside = (test[n][fg] >= norm.minimum[i]) & (test[n][fg] <= norm.maximum[i])
        np.testing.assert_allclose(v[inside], test[n][fg][inside], rtol=1e-5)  # round trip
    assert MapNorm.from_dict(norm.to_dict()) == norm


def test_map_norm_errors():
    fg = _foreground()
    m = _maps(np.random.default_rng(3), fg)
    m["ff"][fg.nonzero()[0][0], fg.nonzero()[1][0], fg.nonzero()[2][0]] = np.nan
    with pytest.raises(MrfreconError, match="ff map"):
        MapNorm.fit([m], [fg])
    with pytest.raises(MrfreconError, match="missing"):
        stack_maps({"ff": m["ff"]})
    with pytest.raises(MrfreconError, match="invalid range"):
        MapNorm(("ff",), (1.0,), (1.0,))


# --- patches ---------------------------------------------------------------------------------


def test_patch_grid_covers_foreground_exactly_once():
    fg = _foreground()
    grid = PatchGrid((8, 8), margin=3)
    index = PatchIndex.build([fg, fg[:1]], grid)
    for s, f in enumerate([fg, fg[:1]]):
        count = np.zeros(f.shape, dtype=int)
        for scan, z, y0, x0 in index:
            if scan == s:
                count[z, y0 : y0 + 8, x0 : x0 + 8] += 1
                assert f[z, y0 : y0 + 8, x0 : x0 + 8].any()  # only patches with foreground
        assert (count[f] == 1).all()  # every foreground pixel exactly once
        assert count.max() == 1  # non-overlapping
    # 19 × 23 image → 3 × 3 grid; slice 0 has foreground in 4 cells, slice 1 in 5
    assert len(index) == 4 + 5 + 4
    assert len(PatchIndex.build([fg], grid, keep_all=True)) == 2 * 9


def test_patch_contents_equal_zero_padded_slice():
    rng = np.random.default_rng(4)
    s = _series(rng)
    fg = _foreground()
    maps = rng.uniform(0, 1, (2, 3, 19, 23)).astype(np.float32)
    grid = PatchGrid((8, 8), margin=3)
    ds = PatchDataset([s], [maps], [fg], grid=grid)
    chans = to_channels(s)  # (2, 8, 19, 23)
    m = 3
    padded_in = np.pad(chans, ((0, 0), (0, 0), (m, m + 8), (m, m + 8)))  # border + last partial tiles
    padded_out = np.pad(maps, ((0, 0), (0, 0), (0, 8), (0, 8)))
    padded_fg = np.pad(fg, ((0, 0), (0, 8), (0, 8)))
    assert len(ds) == len(ds.index) > 0
    for i in range(len(ds)):
        x, y, mask = ds[i]
        _, z, y0, x0 = ds.index[i]
        assert x.shape == (8, 14, 14) and y.shape == (3, 8, 8) and mask.shape == (1, 8, 8)
        assert x.dtype == y.dtype == mask.dtype == torch.float32
        np.testing.assert_array_equal(x.numpy(), padded_in[z, :, y0 : y0 + 14, x0 : x0 + 14])
        np.testing.assert_array_equal(y.numpy(), padded_out[z, :, y0 : y0 + 8, x0 : x0 + 8])
        np.testing.assert_array_equal(mask.numpy()[0], padded_fg[z, y0 : y0 + 8, x0 : x0 + 8])
    # real-channel input gives the same samples
    ds_real = PatchDataset([chans], [maps], [fg], index=ds.index)
    np.testing.assert_array_equal(ds_real[3][0].numpy(), ds[3][0].numpy())


def test_crop_padded_matches_np_pad():
    a = np.arange(2 * 5 * 6).reshape(2, 5, 6)
    p = np.pad(a, ((0, 0), (4, 4), (4, 4)))
    for y0, x0, h, w in [(-4, -4, 7, 7), (2, 3, 7, 7), (-1, 4, 3, 6), (0, 0, 5, 6)]:
        np.testing.assert_array_equal(crop_padded(a, y0, x0, h, w), p[:, y0 + 4 : y0 + 4 + h, x0 + 4 : x0 + 4 + w])


def test_grids_per_model_kind_and_dataloader():
    fg = _foreground()
    tiny = {"frames": 4, "width": 0.05}
    g = grid_for(build("proposed", **tiny), fg.shape[-2:])
    assert g == PatchGrid((32, 32), 5) and g.input == (42, 42)
    assert grid_for(build("balsiger2018", **tiny), fg.shape[-2:]).input == (36, 36)
    assert grid_for(build("cohen2018", **tiny), fg.shape[-2:], patch=8) == PatchGrid((8, 8), 0)
    slice_grid = grid_for(build("fang2018", **tiny), fg.shape[-2:])
    assert slice_grid == PatchGrid((20, 24), 0)  # padded to a multiple of 4
    rng = np.random.default_rng(5)
    s, maps = _series(rng), rng.uniform(0, 1, (2, 3, 19, 23)).astype(np.float32)
    ds = PatchDataset([s, s], [maps, maps], [fg, fg], grid=slice_grid)
    assert len(ds) == 4  # one sample per slice with foreground
    x, y, m = ds[0]
    assert x.shape == (8, 20, 24) and y.shape == (3, 20, 24) and m.shape == (1, 20, 24)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True)
    xb, yb, mb = next(iter(loader))
    assert xb.shape == (3, 8, 20, 24) and yb.shape == (3, 3, 20, 24) and mb.shape == (3, 1, 20, 24)


def test_dataset_shape_errors():
    rng = np.random.default_rng(6)
    s = _series(rng)
    with pytest.raises(MrfreconError, match="do not match"):
        PatchDataset([s], [np.zeros((2, 3, 19, 22), np.float32)], [_foreground()], grid=PatchGrid((8, 8)))


# --- tiling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, tile", [("proposed", 16), ("proposed", 7), ("balsiger2018", 10), ("cohen2018", 9)])
def test_tiled_prediction_equals_padded_full_pass(name, tile):
    torch.manual_seed(0)
    net = build(name, frames=4, maps=3, width=0.1)
    # non-trivial batch-norm statistics so that eval mode matters
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    s = _series(np.random.default_rng(7), (1, 4, 37, 30))[0]  # sizes not divisible by the tile
    net.train()
    full = predict_slice(net, s)
    assert net.training  # mode restored
    assert all(p.is_contiguous() for p in net.parameters())  # the CPU pass's channels-last layout undone
    assert full.shape == (3, 37, 30) and full.dtype == np.float32
    m = net.margin
    with torch.no_grad():
        ref = net.eval()(torch.nn.functional.pad(torch.from_numpy(to_channels(s))[None], (m, m, m, m)))[0].numpy()
    np.testing.assert_allclose(full, ref, rtol=0, atol=1e-5)
    tiled = predict_slice(net, s, tile=tile, batch_size=3)
    np.testing.assert_allclose(tiled, full, rtol=0, atol=1e-5)
    # real-channel input and the volume helper agree
    np.testing.assert_array_equal(predict_slice(net, to_channels(s)), full)
    vol = predict_volume(net, s[None], tile=tile)
    np.testing.assert_allclose(vol[0], full, rtol=0, atol=1e-5)


def test_channels_last_network_stays_channels_last():
    torch.manual_seed(0)
    net = build("proposed", frames=4, maps=3, width=0.1).eval().to(memory_format=torch.channels_last)
    s = _series(np.random.default_rng(9), (1, 4, 20, 21))[0]
    out = predict_slice(net, s)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.ndim == 4)
    m = net.margin
    with torch.no_grad():
        ref = net.to(memory_format=torch.contiguous_format)(
            torch.nn.functional.pad(torch.from_numpy(to_channels(s))[None], (m, m, m, m)))[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


def test_slice_model_prediction():
    torch.manual_seed(0)
    net = build("fang2018", frames=4, maps=3, width=0.05)
    s = _series(np.random.default_rng(8), (1, 4, 19, 23))[0]
    out = predict_slice(net, s)
    assert out.shape == (3, 19, 23)
    assert net.cpu_channels_last and all(p.is_contiguous() for p in net.parameters())  # CL pass undone
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(to_channels(s))[None])[0].numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    with pytest.raises(MrfreconError, match="whole slice"):
        predict_slice(net, s, tile=8)
    with pytest.raises(MrfreconError, match="input channels"):
        predict_slice(net, s[:3])


# --- loss ------------------------------------------------------------------------------------


def test_masked_mse_hand_computed():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    target = torch.tensor([[[[0.0, 0.0], [1.0, 9.0]]]])
    mask = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    # masked differences 1, 2, 2, 0 → (1 + 4 + 4 + 0) / 4
    assert masked_mse(pred, target, mask).item() == pytest.approx(9 / 4)
    # mask (B, 1, h, w) broadcasts over M maps; the mean runs over all B·M·h·w elements
    rng = torch.Generator().manual_seed(0)
    p, t = torch.rand(2, 3, 4, 4, generator=rng), torch.rand(2, 3, 4, 4, generator=rng)
    m = (torch.rand(2, 1, 4, 4, generator=rng) > 0.5).float()
    expected = (((p - t) * m) ** 2).sum() / p.numel()
    assert masked_mse(p, t, m).item() == pytest.approx(expected.item(), rel=1e-6)
    assert masked_mse(p, t, torch.ones(2, 1, 4, 4)).item() == pytest.approx(torch.nn.functional.mse_loss(p, t).item())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_dense_block_inference_path_equals_concatenation(layout):
    """The eval-mode buffer path of the temporal dense block against the plain concatenation
    of conv → ReLU → BN layers (the training path, run with gradients enabled)."""
    from mrfrecon.models.layers import TemporalDenseBlock

    torch.manual_seed(3)
    block = TemporalDenseBlock(7, 5, layers=4)
    for mod in block.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.3, 0.3)
    block.eval()
    x = torch.randn(2, 7, 9, 6).contiguous(memory_format=layout)
    ref = block(x)  # gradients enabled: the concatenating forward
    with torch.no_grad():
        fast = block(x)
    assert fast.shape == ref.shape == (2, 7 + 4 * 5, 9, 6)
    torch.testing.assert_close(fast, ref.detach(), rtol=1e-5, atol=1e-5)


def test_patch_dataset_cuts_per_map_loss_masks_where_given():
    from mrfrecon.data import PatchDataset, PatchGrid

    rng = np.random.default_rng(0)
    series = (rng.standard_normal((1, 3, 20, 20)) + 1j * rng.standard_normal((1, 3, 20, 20))).astype(np.complex64)
    maps = rng.random((1, 2, 20, 20)).astype(np.float32)
    fg = np.zeros((1, 20, 20), bool)
    fg[:, 2:18, 3:17] = True
    per_map = np.stack([fg, fg & (rng.random((1, 20, 20)) < 0.5)], axis=1)
    grid = PatchGrid((8, 8), 2)
    plain = PatchDataset([series], [maps], [fg], grid=grid)
    masked = PatchDataset([series], [maps], [fg], grid=grid, map_masks=[per_map])
    assert len(plain) == len(masked) > 0
    for i in range(len(plain)):
        _, _, z, y0, x0 = (0, 0, *plain.index[i][1:])
        x1, t1, m1 = plain[i]
        x2, t2, m2 = masked[i]
        assert torch.equal(x1, x2) and torch.equal(t1, t2) and m1.shape == (1, 8, 8) and m2.shape == (2, 8, 8)
        win = np.zeros((2, 8, 8), bool)
        ys, xs = slice(y0, min(y0 + 8, 20)), slice(x0, min(x0 + 8, 20))
        win[:, : ys.stop - y0, : xs.stop - x0] = per_map[z][:, ys, xs]
        assert np.array_equal(m2.numpy() > 0, win)
        assert torch.equal(m2[0], m1[0])
    with pytest.raises(MrfreconError, match="map masks"):
        PatchDataset([series], [maps], [fg], grid=grid, map_masks=[per_map[:, :1]])


def test_augmented_items_are_the_eight_symmetries_of_the_plain_item():
    rng = np.random.default_rng(5)
    s = _series(rng)
    fg = _foreground()
    maps = rng.uniform(0, 1, (2, 3, 19, 23)).astype(np.float32)
    grid = PatchGrid((8, 8), margin=3)
    plain = PatchDataset([s], [maps], [fg], grid=grid)
    aug = PatchDataset([s], [maps], [fg], grid=grid, augment=True)
    # the 8 symmetries of the square, written out independently: k quarter turns (counter-clockwise
    # in (row, column) = np.rot90's sense), then a mirror of the columns for k >= 4
    def sym(a, k):
        n = a.shape[-1]
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        out = a
        for _ in range(k % 4):  # a quarter turn: out[i, j] = a[j, n − 1 − i]
            out = out[..., j, n - 1 - i]
        return out[..., ::-1] if k >= 4 else out
    for i in (0, len(plain) - 1):
        x0, y0, m0 = (t.numpy() for t in plain[i])
        seen = set()
        for k in range(8):
            x, y, m = (t.numpy() for t in aug[PatchDataset.encode(i, k)])
            np.testing.assert_array_equal(x, sym(x0, k))
            np.testing.assert_array_equal(y, sym(y0, k))
            np.testing.assert_array_equal(m, sym(m0, k))
            assert x.flags["C_CONTIGUOUS"]
            seen.add(x.tobytes())
        assert len(seen) == 8  # eight different patches (the random data have no symmetry)
    with pytest.raises(MrfreconError, match="square"):
        PatchDataset([s], [maps], [fg], grid=PatchGrid((8, 6), margin=3), augment=True)


@pytest.mark.parametrize("model,opts", [("proposed", {}), ("proposed", {"head_batchnorm": False}),
                                        ("balsiger2018", {"batchnorm": False}), ("cohen2018", {"activation": "relu"})])
def test_output_calibration_gives_the_target_mean_and_sd(model, opts):
    from mrfrecon.training.output_init import calibrate_output, output_layers

    torch.manual_seed(0)
    net = build(model, frames=4, maps=3, width=0.1, **opts)
    x = torch.randn(6, 8, 20 + 2 * net.margin, 20 + 2 * net.margin)
    mask = (torch.rand(6, 1, 20, 20) > 0.3).float()
    mean, sd = torch.tensor([0.3, 0.2, 0.6]), torch.tensor([0.1, 0.25, 0.05])
    assert calibrate_output(net, x, mask, mean, sd)
    net.train()
    with torch.no_grad():
        out = net(x)
    if output_layers(net)[1] is None:  # a linear head: exact over the calibration batch's foreground
        for c in range(3):
            v = out[:, c][mask[:, 0].bool()]
            assert float(v.mean()) == pytest.approx(float(mean[c]), abs=1e-5)
            assert float(v.std()) == pytest.approx(float(sd[c]), rel=1e-4)
    else:  # the head's batch norm: exact over the whole batch in training mode
        for c in range(3):
            assert float(out[:, c].mean()) == pytest.approx(float(mean[c]), abs=1e-5)
            assert float(out[:, c].std(unbiased=False)) == pytest.approx(float(sd[c]), rel=1e-3)
    # DRONE's sigmoid output is not affine in its last layer: left as it is
    assert not calibrate_output(build("cohen2018", frames=4, maps=3, width=0.1), x[..., :20, :20], mask, mean, sd)
