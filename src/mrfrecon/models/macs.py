"""Multiply–accumulate (MAC) counts of the networks, for FLOP rates in benchmarks.

Counted: the products of every ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` layer (one MAC
per weight per output position). Not counted: bias additions, activations, batch norm (foldable
into the convolution at inference), pooling and concatenation — all O(channels) per pixel and
negligible next to the convolutions. One MAC = 2 FLOP.

Shapes are propagated on PyTorch's ``meta`` device, so counting the full network on a whole
350 × 350 slice costs no arithmetic and no memory.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _layer_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_position = module.weight.numel()  # c_out · c_in/groups · kh · kw
        return per_position * output.shape[0] * output.shape[-2] * output.shape[-1]
    if isinstance(module, nn.ConvTranspose2d):
        x = inputs[0]  # every input position is multiplied by every weight once
        return module.weight.numel() * x.shape[0] * x.shape[-2] * x.shape[-1]
    if isinstance(module, nn.Linear):
        return module.weight.numel() * (output.numel() // output.shape[-1])
    return 0


def count_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Exact MAC count of one forward pass of ``net`` on an input of ``input_shape``
    (e.g. ``(1, 350, 360, 360)``: one 350 × 350 slice padded by the proposed CNN's margin of 5).
    ``net`` itself is not modified (a copy runs on the meta device)."""
    meta = copy.deepcopy(net).to("meta").eval()
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _layer_macs(module, inputs, output)

    for m in meta.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            m.register_forward_hook(hook)
    # with gradients on, every layer runs its modules (the no-grad inference path of the dense
    # block multiplies the weights directly, which the hooks would not see); meta tensors cost nothing
    with torch.enable_grad():
        meta(torch.empty(input_shape, device="meta"))
    return total


def macs_per_pixel(net: nn.Module) -> float:
    """MACs per output pixel for large images, without the border shrinkage of valid
    convolutions: the leading coefficient of count_macs as a function of the output size S.

    For the MRF networks (``frames``, ``margin`` and ``size_multiple`` attributes) the count is a
    quadratic polynomial in S when S is a multiple of ``size_multiple``, so three sizes give the
    coefficient exactly. For the proposed CNN this equals the number of convolution weights.
    """
    channels = getattr(net, "in_channels", None)
    if channels is None:
        raise ValueError("net has no in_channels attribute (not an MRF network)")
    margin = int(getattr(net, "margin", 0))
    step = 64 * int(getattr(net, "size_multiple", 1))
    s0 = step
    m = [count_macs(net, (1, channels, s + 2 * margin, s + 2 * margin)) for s in (s0, s0 + step, s0 + 2 * step)]
    return (m[2] - 2 * m[1] + m[0]) / (2 * step**2)


def flops_per_pixel(net: nn.Module) -> float:
    """FLOPs (2 × MACs) per output pixel for large images; see :func:`macs_per_pixel`."""
    return 2.0 * macs_per_pixel(net)
