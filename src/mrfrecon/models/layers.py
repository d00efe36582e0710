"""Building blocks shared by the networks, and their common base class.

All convolutions follow the authors' TensorFlow 1.10 code (``tf.layers.conv2d`` and
``tf.layers.batch_normalization`` defaults): Glorot/Xavier-uniform weights, zero biases, and
batch normalization with ε = 1e-3 and a running-average decay of 0.99 (PyTorch
``momentum=0.01``). A layer is ``conv → ReLU → BatchNorm`` (post-activation BN), as in that code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# TensorFlow's batch-norm defaults (the authors' framework): epsilon 1e-3, decay 0.99.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

KINDS = ("patch", "pixel", "slice")


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with TensorFlow's default ε and momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvReluBN(nn.Sequential):
    """``conv k×k (valid or same) → ReLU → BatchNorm``: (B, c_in, y, x) → (B, c_out, y', x').

    ``padding=0`` (valid) shrinks each side by ``(k − 1) / 2``; ``padding=(k − 1) // 2`` keeps
    the size. ``batchnorm=False`` leaves the normalization out (``conv → ReLU``; an ablation,
    not the authors' layer).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, padding: int = 0,
                 batchnorm: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=True),
            nn.ReLU(inplace=True),
        ]
        if batchnorm:
            layers.append(batch_norm(c_out))
        super().__init__(*layers)

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]

    @property
    def bn(self) -> nn.BatchNorm2d | None:
        """The layer's batch norm, None when built with ``batchnorm=False``."""
        return self[2] if len(self) > 2 else None


class TemporalDenseBlock(nn.Module):
    """Dense block of 1×1 convolutions (Huang et al., CVPR 2017) acting along the fingerprints.

    Layer ``i`` (``ConvReluBN`` 1×1, ``growth`` channels) sees the concatenation of the block
    input and the outputs of layers ``0 … i−1``; the block returns the input concatenated with
    all layer outputs. Shapes: (B, c_in, y, x) → (B, c_in + layers·growth, y, x).
    """

    def __init__(self, c_in: int, growth: int, layers: int = 4, batchnorm: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConvReluBN(c_in + i * growth, growth, 1, batchnorm=batchnorm)
                                    for i in range(layers))
        self.out_channels = c_in + layers * growth

    #: Use the concatenation-free eval path (benchmarks switch it off for their baseline).
    fast_inference: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_inference and not self.training and not torch.is_grad_enabled():
            return self._forward_inference(x)
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)

    @torch.no_grad()
    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode block without its concatenations: one channels-last buffer
        (B, y, x, c_out) that each layer reads a prefix of and writes its ``growth`` channels
        into, every 1×1 convolution a matrix product on the buffer's rows, batch norm applied
        in place as its eval-mode affine map. The result is the same tensor as :meth:`forward`'s
        (to float32 rounding), in the channels-last memory format.

        Why: the concatenations copy the growing input once per layer; in channels-last each is
        a strided copy, and they took 16–18 % of the paper-width proposed CNN's CPU inference
        (torch profiler, one thread, 128² slice; benchmarks/bench_layout.py) — as long as all its
        1×1 convolutions."""
        b, c, h, w = x.shape
        buf = x.new_empty((b, h, w, self.out_channels))
        buf[..., :c] = x.permute(0, 2, 3, 1)
        rows = buf.view(-1, self.out_channels)
        for layer in self.layers:
            conv, bn = layer.conv, layer.bn
            g = conv.out_channels
            out = torch.addmm(conv.bias, rows[:, :c], conv.weight.view(g, c).t()) if conv.bias is not None \
                else rows[:, :c] @ conv.weight.view(g, c).t()
            out.relu_()
            if bn is not None:
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                out.mul_(scale).add_(bn.bias - bn.running_mean * scale)
            rows[:, c : c + g] = out
            c += g
        return buf.permute(0, 3, 1, 2)


def init_weights(module: nn.Module) -> None:
    """Glorot/Xavier-uniform weights and zero biases for every (transposed) convolution and
    linear layer, unit scale and zero shift for batch norms (TensorFlow's initializers)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MRFNet(nn.Module):
    """Base class of the map-reconstruction networks.

    Input: a real tensor (batch, 2·frames, y, x), the complex series as produced by
    :func:`mrfrecon.models.to_channels` (all real parts, then all imaginary parts). Output:
    (batch, maps, y − 2·margin, x − 2·margin).

    Attributes set by every subclass:

    - ``spec``: ``{"name": ..., "frames": ..., "maps": ..., **options}``, JSON-serializable;
      ``mrfrecon.models.build(**net.spec)`` rebuilds the same architecture.
    - ``kind``: ``"patch"`` (trained on patches, fully convolutional), ``"pixel"`` (one
      fingerprint at a time) or ``"slice"`` (whole slices, spatial pooling).
    - ``margin``: pixels lost on each side by valid convolutions (0 for pixel and slice models).
    - ``input_size`` / ``output_size``: the training patch sizes of patch models (``None`` else).
    - ``size_multiple``: the input's height and width are padded internally to a multiple of
      this (1 unless the model pools).
    """

    name: str = ""
    kind: str = "patch"
    #: Whether CPU inference runs faster in the channels-last memory format (measured per network
    #: in benchmarks/BENCHMARKS.md; :func:`mrfrecon.data.predict_slice` reads it).
    cpu_channels_last: bool = False

    def __init__(self, frames: int, maps: int) -> None:
        super().__init__()
        if int(frames) < 1 or int(maps) < 1:
            raise ValueError(f"frames and maps must be >= 1, got frames={frames}, maps={maps}")
        self.frames = int(frames)
        self.maps = int(maps)
        self.in_channels = 2 * self.frames
        self.margin = 0
        self.input_size: int | None = None
        self.output_size: int | None = None
        self.size_multiple = 1
        self.spec: dict[str, Any] = {}

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height × width`` pixels."""
        return height - 2 * self.margin, width - 2 * self.margin

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected input (batch, {self.in_channels}, y, x) = 2 × {self.frames} frames "
                f"as real channels, got {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) <= 2 * self.margin:
            raise ValueError(
                f"{self.name}: input {tuple(x.shape[-2:])} too small for a margin of {self.margin} pixels per side"
            )

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, margin={self.margin}, spec={self.spec}"
