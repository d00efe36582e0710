"""Networks: parameter counts, shapes, receptive fields, fully-convolutional tiling, registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mrfrecon import MrfreconError
from mrfrecon.models import (
    MODELS,
    build,
    count_macs,
    count_parameters,
    flops_per_pixel,
    frame_channels,
    from_channels,
    to_channels,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Small networks for the shape and equivalence tests: 3 frames, channel widths / 20.
TINY = {"frames": 3, "width": 0.05}


def _proposed_parameters_by_hand(frames: int, maps: int, rf: int) -> int:
    """Learnable parameters of the MIDL 2019 CNN from its written description (ARCHITECTURE.md):
    conv weights + biases, BN scale + shift; independent of the implementation."""
    def conv(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k + c_out + 2 * c_out  # weights, bias, BN γ and β

    total, c = 0, 2 * frames
    for i, n in enumerate((192, 160, 128, 96, 64)):
        for j in range(4):
            total += conv(c + j * n, n, 1)
        total += conv(c + 4 * n, n, 3 if i < min(5, (rf - 1) // 2) else 1)
        c = n
    total += max(0, (rf - 11) // 2) * conv(64, 64, 3)
    return total + conv(c, maps, 1)  # linear head + BN (as in the authors' code)


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("proposed", {}, 5_659_337),
        ("cohen2018", {"activation": "relu"}, 196_503),
        ("cohen2018", {"activation": "tanh"}, 196_503),
        # our reconstructions (choices documented in the modules):
        ("fang2018", {}, 2_016_291),
        ("balsiger2018", {}, 247_747),
        # batch-norm ablations: BN γ and β (2 per channel) added to DRONE's two hidden layers of 300,
        # removed from balsiger2018's four 1×1 (256+192+128+64) and two 3×3 (64+64) layers
        ("cohen2018", {"batchnorm": True}, 196_503 + 2 * 2 * 300),
        ("balsiger2018", {"batchnorm": False}, 247_747 - 2 * (256 + 192 + 128 + 64 + 64 + 64)),
    ],
)
def test_parameter_counts(name, options, expected):
    assert count_parameters(build(name, frames=175, maps=3, **options)) == expected


def test_parameter_counts_by_hand():
    assert _proposed_parameters_by_hand(175, 3, 11) == 5_659_337
    # DRONE: 350·300 + 300 + 300·300 + 300 + 300·3 + 3
    assert 350 * 300 + 300 + 300 * 300 + 300 + 300 * 3 + 3 == 196_503
    # balsiger2018: 1×1 layers 350→256→192→128→64, two 3×3 64→64, head 64→3 (BN on all but the head)
    c = [350, 256, 192, 128, 64]
    fc = sum(a * b + 3 * b for a, b in zip(c, c[1:], strict=False))
    assert fc + 2 * (9 * 64 * 64 + 3 * 64) + 64 * 3 + 3 == 247_747
    for rf in range(1, 22, 2):
        net = build("proposed", receptive_field=rf, frames=20, maps=2)
        assert count_parameters(net) == _proposed_parameters_by_hand(20, 2, rf), rf


@pytest.mark.parametrize(
    "name, size_in, size_out",
    [
        ("proposed", (42, 42), (32, 32)),
        ("proposed", (74, 74), (64, 64)),  # a 64 × 64 slice padded by the margin of 5
        ("proposed", (50, 45), (40, 35)),
        ("balsiger2018", (36, 36), (32, 32)),
        ("balsiger2018", (68, 68), (64, 64)),
        ("cohen2018", (13, 9), (13, 9)),
        ("fang2018", (32, 32), (32, 32)),
        ("fang2018", (30, 26), (30, 26)),  # not a multiple of 4: padded internally, cropped back
    ],
)
def test_output_shapes(name, size_in, size_out):
    net = build(name, maps=3, **TINY).eval()
    y = net(torch.randn(2, 6, *size_in))
    assert y.shape == (2, 3, *size_out)
    assert net.output_shape(*size_in) == size_out


def test_patch_model_attributes():
    net = build("proposed")
    assert (net.kind, net.margin, net.input_size, net.output_size) == ("patch", 5, 42, 32)
    net = build("balsiger2018")
    assert (net.kind, net.margin, net.input_size, net.output_size) == ("patch", 2, 36, 32)
    assert (build("cohen2018").kind, build("cohen2018").margin) == ("pixel", 0)
    f = build("fang2018", **TINY)
    assert (f.kind, f.margin, f.size_multiple) == ("slice", 0, 4)


def _measured_receptive_field(net: nn.Module, size_in: int) -> np.ndarray:
    """Input pixels that influence output pixel (16, 16): where the gradient is nonzero.

    Weights are made non-negative and the input positive, so no ReLU is inactive and no two
    paths cancel: the gradient is nonzero exactly where the architecture connects."""
    net = net.double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
    x = torch.rand(1, net.in_channels, size_in, size_in, dtype=torch.float64) + 0.1
    x.requires_grad_(True)
    y = net(x)
    y[0, :, 16, 16].sum().backward()
    return (x.grad[0].abs().sum(0) > 0).numpy()


@pytest.mark.parametrize("rf", list(range(1, 22, 2)))
def test_receptive_field_option(rf):
    net = build("proposed", receptive_field=rf, **TINY)
    assert net.input_size == 32 + rf - 1 and net.output_size == 32 and net.margin == (rf - 1) // 2
    assert net(torch.randn(1, 6, net.input_size, net.input_size)).shape == (1, 3, 32, 32)
    influence = _measured_receptive_field(net, net.input_size)
    expected = np.zeros_like(influence)
    expected[16 : 16 + rf, 16 : 16 + rf] = True  # output (16,16) ↔ input window starting at (16,16)
    assert np.array_equal(influence, expected)


def test_receptive_field_compared_methods():
    influence = _measured_receptive_field(build("balsiger2018", **TINY), 36)
    assert influence.sum() == 25 and influence[16:21, 16:21].all()
    influence = _measured_receptive_field(build("cohen2018", activation="relu", **TINY), 32)
    assert influence.sum() == 1 and influence[16, 16]


def _randomize_batch_norms(net: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["proposed", "balsiger2018"])
def test_whole_slice_equals_tiled_patches(name):
    """Fully convolutional: a 64 × 64 slice padded by the margin gives the same maps as four
    non-overlapping 32 × 32 output tiles computed from their (32 + 2·margin)² input patches."""
    torch.manual_seed(0)
    net = build(name, **TINY).double().eval()
    _randomize_batch_norms(net)
    m, n_in = net.margin, net.input_size
    x = torch.randn(1, net.in_channels, 64 + 2 * m, 64 + 2 * m, dtype=torch.float64)
    with torch.no_grad():
        whole = net(x)
        tiled = torch.zeros_like(whole)
        for i in (0, 32):
            for j in (0, 32):
                tiled[..., i : i + 32, j : j + 32] = net(x[..., i : i + n_in, j : j + n_in])
    assert whole.shape == (1, 3, 64, 64)
    torch.testing.assert_close(whole, tiled, rtol=1e-10, atol=1e-10)


def test_cohen_is_fingerprint_wise():
    torch.manual_seed(0)
    for activation in ("tanh", "relu"):
        net = build("cohen2018", activation=activation, **TINY).eval()
        x = torch.randn(1, 6, 5, 4)
        with torch.no_grad():
            y = net(x)
            assert torch.allclose(y[..., 3, 2], net(x[..., 3:4, 2:3])[..., 0, 0], atol=1e-6)
        if activation == "tanh":  # sigmoid output in the original paper
            assert (y > 0).all() and (y < 1).all()


def test_width_scales_channels():
    def conv_widths(net):
        return [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]

    full, half = build("proposed"), build("proposed", width=0.5)
    # per stage: 4 dense layers + 1 spatial block of n channels; then the 3-map head
    assert conv_widths(full) == [n for n in (192, 160, 128, 96, 64) for _ in range(5)] + [3]
    assert conv_widths(half) == [n for n in (96, 80, 64, 48, 32) for _ in range(5)] + [3]
    assert conv_widths(build("cohen2018", width=0.5)) == [150, 150, 3]
    assert conv_widths(build("balsiger2018", width=0.5)) == [128, 96, 64, 32, 32, 32, 3]
    assert conv_widths(build("fang2018", width=0.5))[:4] == [128, 64, 32, 16]
    assert count_parameters(half) < count_parameters(full) / 3


@pytest.mark.parametrize(
    "name, options",
    [
        ("proposed", {"receptive_field": 15, "width": 0.1}),
        ("proposed", {"receptive_field": 5, "head_batchnorm": False, "width": 0.1}),
        ("proposed", {"receptive_field": 3, "batchnorm": False, "width": 0.1}),
        ("cohen2018", {"activation": "relu", "width": 0.5}),
        ("fang2018", {"width": 0.25, "unet_widths": [16, 32, 64, 128]}),
        ("balsiger2018", {"width": 0.25}),
        ("balsiger2018", {"width": 0.25, "batchnorm": False}),
        ("cohen2018", {"batchnorm": True, "width": 0.5}),
        ("fang2018", {"width": 0.25, "batchnorm": False}),
    ],
)
def test_spec_rebuilds_identical_architecture(name, options):
    net = build(name, frames=7, maps=2, **options)
    spec = json.loads(json.dumps(net.spec))  # as stored in a checkpoint
    assert spec["name"] == name and spec["frames"] == 7 and spec["maps"] == 2
    again = build(**spec)
    assert again.spec == net.spec and str(again) == str(net)
    again.load_state_dict(net.state_dict())  # strict: same names and shapes
    assert set(spec) - {"name", "frames", "maps"} == set(MODELS[name].options)


def test_batchnorm_ablation_layers():
    """The ablation options put BN after each hidden activation (DRONE) or take every BN out
    (balsiger2018), and nothing else changes."""
    drone = build("cohen2018", frames=3, maps=2, activation="relu", batchnorm=True)
    kinds = [type(m).__name__ for m in drone.net]
    assert kinds == ["Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "ReLU", "BatchNorm2d", "Conv2d"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build("cohen2018", frames=3).modules())
    plain = build("balsiger2018", frames=3, maps=2, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in build("balsiger2018", frames=3).modules()) == 6
    y = plain.eval()(torch.randn(1, 6, 36, 36))
    assert y.shape == (1, 2, 32, 32)


def test_registry_errors():
    with pytest.raises(MrfreconError, match="unknown model 'unet'.*proposed"):
        build("unet")
    with pytest.raises(MrfreconError, match="unknown option.*depth"):
        build("proposed", depth=3)
    with pytest.raises(MrfreconError, match="receptive_field"):
        build("proposed", receptive_field=4)
    with pytest.raises(MrfreconError, match="activation"):
        build("cohen2018", activation="gelu")
    with pytest.raises(ValueError, match=r"expected input \(batch, 350"):
        build("cohen2018")(torch.zeros(1, 175, 4, 4))


def test_to_channels_layout():
    T = 4
    re = torch.arange(T * 6, dtype=torch.float32).reshape(T, 2, 3)
    series = torch.complex(re, -re - 100)[None]  # (1, T, y, x)
    ch = to_channels(series)
    assert ch.shape == (1, 2 * T, 2, 3) and ch.dtype == torch.float32
    for t in range(T):
        r, i = frame_channels(t, T)
        assert (r, i) == (t, T + t)
        assert torch.equal(ch[0, r], re[t]) and torch.equal(ch[0, i], -re[t] - 100)
    assert torch.equal(from_channels(ch), series)
    arr = series.numpy()
    np.testing.assert_array_equal(to_channels(arr), ch.numpy())
    np.testing.assert_array_equal(from_channels(to_channels(arr)), arr)
    with pytest.raises(ValueError, match="complex"):
        to_channels(re)


def test_macs():
    # DRONE on a 5 × 7 image: one product per weight per pixel
    net = build("cohen2018", frames=175)
    assert count_macs(net, (2, 350, 5, 7)) == 2 * 35 * (350 * 300 + 300 * 300 + 300 * 3)
    # proposed: per output pixel, one MAC per convolution weight; ≈ 1.39 TFLOP per 350² slice
    net = build("proposed")
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, nn.Conv2d))
    assert flops_per_pixel(net) == 2 * weights
    assert abs(flops_per_pixel(net) * 350**2 / 1e12 - 1.39) < 0.01
    # the exact count on the padded 360² slice is a little higher (border of valid convs)
    exact = 2 * count_macs(net, (1, 350, 360, 360))
    assert 1.39e12 < exact < 1.45e12
    # the U-Net's pooled levels cost a quarter / sixteenth per output pixel
    f = build("fang2018", frames=175)
    assert count_macs(f, (1, 350, 64, 64)) == flops_per_pixel(f) / 2 * 64 * 64


def _trained_like_batch_norms(net, gen):
    """Running statistics and affine parameters as after training, some scales negative."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=gen)
            m.running_var.uniform_(0.3, 2.0, generator=gen)
            m.weight.data.uniform_(-1.5, 1.5, generator=gen)
            m.weight.data[0] = 0.0  # a dead channel: BN output is its shift alone
            m.bias.data.uniform_(-0.3, 0.3, generator=gen)


@pytest.mark.parametrize("rf,width,head_bn,bn", [(1, 0.05, True, True), (3, 0.05, False, True), (11, 0.05, True, True),
                                                 (15, 0.04, True, True), (5, 0.05, True, False)])
def test_folded_inference_equals_the_layer_by_layer_forward(rf, width, head_bn, bn):
    """Eval-mode CPU inference with the batch norms folded into the convolutions after them
    (mrfrecon.models.folded) against PyTorch's own conv → ReLU → BN layers, in float64."""
    from mrfrecon.models import build

    gen = torch.Generator().manual_seed(rf)
    net = build("proposed", frames=6, maps=3, receptive_field=rf, width=width, head_batchnorm=head_bn,
                batchnorm=bn).double()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == (25 + max(0, (rf - 11) // 2)) * bn + head_bn
    _trained_like_batch_norms(net, gen)
    net.eval()
    x = torch.randn(2, 12, 32 + rf - 1 + 3, 32 + rf - 1, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = net(x)
        net.fold_inference = False
        fast = net(x)  # the dense blocks' concatenation-free eval path
    with torch.enable_grad():
        ref = net(x).detach()  # PyTorch's layers one by one
    assert got.shape == ref.shape == (2, 3, 35, 32)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)


def test_folded_inference_follows_training_and_loaded_weights():
    """The folded weights are rebuilt when parameters or running statistics change (an optimizer
    step, a training-mode pass, load_state_dict), and the network works in inference mode and
    out of it in turn."""
    from mrfrecon.models import build

    gen = torch.Generator().manual_seed(0)
    net = build("proposed", frames=4, maps=3, width=0.05)
    x = torch.randn(1, 8, 44, 44, generator=gen)

    def both():
        net.eval()
        with torch.no_grad():
            got = net(x)
            net.fold_inference = False
            ref = net(x)
            del net.fold_inference
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
        return got

    first = both()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    net(x).square().mean().backward()  # also updates the running statistics
    opt.step()
    second = both()
    assert not torch.allclose(first, second)
    other = build("proposed", frames=4, maps=3, width=0.05)
    _trained_like_batch_norms(other, gen)
    net.load_state_dict(other.state_dict())
    third = both()
    with torch.inference_mode():
        in_mode = net.eval()(x)
    torch.testing.assert_close(in_mode, third)
    with torch.no_grad():
        torch.testing.assert_close(net(x), third)


def test_folded_inference_from_several_threads_keeps_one_buffer_per_live_thread():
    """Concurrent eval passes on one network from several threads give the single-thread result
    (each thread has its own scratch buffer) and buffers of ended threads are dropped."""
    from concurrent.futures import ThreadPoolExecutor

    from mrfrecon.models import build
    from mrfrecon.models.folded import _PLANS

    net = build("proposed", frames=4, maps=3, width=0.05).eval()
    xs = [torch.randn(1, 8, 40 + 2 * i, 44, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    with torch.no_grad():
        ref = [net(x) for x in xs]

    def run(x):
        with torch.no_grad():
            return net(x)

    with ThreadPoolExecutor(3) as ex:
        got = list(ex.map(run, xs))
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        net(torch.randn(1, 8, 80, 80))  # a larger buffer here: the ended threads' buffers go
    assert len(_PLANS[net].scratch) == 1
