"""CPU inference of the proposed CNN with every batch normalization folded into the convolutions
that read its output.

A layer of the network is ``conv → ReLU → BN`` (post-activation, as the authors' TensorFlow
code; :class:`~mrfrecon.models.layers.ConvReluBN`), so BN cannot be folded into the convolution
before it, across the ReLU. It can be folded into the ones *after* it: every consumer of a BN
output is linear — the later 1 × 1 convolutions of the same dense block, the spatial convolution
after the block (which sees the whole block output), or the 1 × 1 head — and every convolution
is *valid* (no zero padding), so a per-channel affine map of its input is exactly a change of
its weights and bias. The channels are therefore carried as ``u`` with the true feature
``f = a·u + t`` per channel, and each layer computes only ``u' = relu(W'·u + b')``:

- consumer: ``W·f + b = (W·a)·u + (b + Σ_taps W·t)``;
- its own BN ``y = s·relu(z) + β'`` with ``s = γ / √(σ² + ε)``, ``β' = β − μ·s``: since
  ``s·relu(z) = sign(s)·relu(|s|·z)``, the layer computes ``relu(|s|·z)`` and hands
  ``a = sign(s)``, ``t = β'`` on to its consumers;
- the head's BN (no ReLU) folds into the head itself: its output is the true map.

This removes every layer's two batch-norm passes (scale, shift) and, in the dense blocks, the
copy of each layer's output into the block buffer (the product is written there directly); on
the CPU these made the dense blocks run at 34–52 % of the matmul peak while their matrix
products alone run at 95–102 % (``benchmarks/bench_folded.py``). The folding changes
the order of floating-point operations only; the weights are folded in float64. The folded
weights are cached per module and rebuilt when any parameter or buffer changes (tensor
version counters), so a network keeps training and predicting in turn. A network keeps its
plan and, per thread that ran it, one scratch buffer the size of its largest dense-block output
(e.g. 153 MB at width 0.25 for a 256² slice; it is needed during every pass anyway).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ConvReluBN, TemporalDenseBlock

__all__ = ["FoldedPlan", "fold", "folded_forward", "plan_for"]

#: Plans by module (weak: a plan goes with its network).
_PLANS: weakref.WeakKeyDictionary[nn.Module, FoldedPlan] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _Dense:
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (weight (c_in_i, g) for rows @ w, bias (g,))
    out_channels: int


@dataclass(frozen=True)
class _Conv:
    weight: torch.Tensor  # (G, C, k, k)
    bias: torch.Tensor  # (G,)
    relu: bool


@dataclass(frozen=True)
class FoldedPlan:
    """The folded layers of one network, in order, for one device and dtype."""

    ops: tuple[_Dense | _Conv, ...]
    key: tuple
    #: Per thread, one flat buffer that every dense block of a pass writes into in turn, kept
    #: between passes: with a fresh 81 MiB buffer on every pass (paper width, 128² slice) the
    #: first block takes 1.25× as long — its page faults (``benchmarks/bench_folded.py``). Per
    #: thread, so that calls from several threads on one network do not share it.
    scratch: dict[int, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def buffer(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialized tensor of ``shape`` on this thread's scratch storage."""
        n = 1
        for d in shape:
            n *= d
        me = threading.get_ident()
        flat = self.scratch.get(me)
        if flat is None or flat.numel() < n or flat.dtype != like.dtype or flat.device != like.device:
            alive = {t.ident for t in threading.enumerate()}
            for ident in [i for i in list(self.scratch) if i not in alive]:  # threads that have ended
                self.scratch.pop(ident, None)
            flat = like.new_empty(n)
            self.scratch[me] = flat
        return flat[:n].view(shape)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, β') of an eval-mode batch norm, float64: ``y = s·x + β'``."""
    s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return s, bn.bias.double() - bn.running_mean.double() * s


def _consume(conv: nn.Conv2d, a: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias (float64) of ``conv`` acting on ``u`` where its input is ``a·u + t``."""
    if conv.groups != 1 or any(p != 0 for p in conv.padding) or conv.padding_mode != "zeros":
        raise ValueError("folding needs valid (unpadded), ungrouped convolutions")
    w = conv.weight.double()
    b = conv.bias.double() if conv.bias is not None else w.new_zeros(w.shape[0])
    return w * a[None, :, None, None], b + w.sum(dim=(2, 3)) @ t


def _layer(layer: ConvReluBN, a: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ``conv → ReLU → BN`` layer as ``relu(W·u + b)``: (W, b, a_out, t_out), float64; a
    ``conv → ReLU`` layer (``batchnorm=False``) passes on a_out = 1, t_out = 0."""
    w, b = _consume(layer.conv, a, t)
    if layer.bn is None:
        ones = w.new_ones(w.shape[0])
        return w, b, ones, torch.zeros_like(ones)
    s, beta = _bn_affine(layer.bn)
    m = s.abs()
    return w * m[:, None, None, None], b * m, torch.sign(s), beta


def state_key(net: nn.Module, device: torch.device, dtype: torch.dtype) -> tuple:
    """Identity of every parameter and buffer's current values (storage and version counter)."""
    tensors = list(net.parameters()) + list(net.buffers())
    # inference mode too: tensors made in it cannot be written outside it (the scratch buffer)
    return (device, dtype, torch.is_inference_mode_enabled()) + tuple((p.data_ptr(), p._version) for p in tensors)


def fold(features: nn.Sequential, head: nn.Sequential, in_channels: int, device: torch.device,
         dtype: torch.dtype, key: tuple = ()) -> FoldedPlan:
    """The folded plan of the proposed CNN's ``features`` (dense blocks and ``ConvReluBN``
    layers) and ``head`` (1 × 1 convolution, optionally batch norm) for inputs of
    ``in_channels`` channels."""
    a = torch.ones(in_channels, dtype=torch.float64, device=device)
    t = torch.zeros(in_channels, dtype=torch.float64, device=device)
    ops: list[_Dense | _Conv] = []

    def cast(x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=dtype).contiguous()

    with torch.no_grad():
        for stage in features:
            if isinstance(stage, TemporalDenseBlock):
                layers = []
                for layer in stage.layers:
                    c = layer.conv.in_channels
                    w, b, a_new, t_new = _layer(layer, a[:c], t[:c])
                    layers.append((cast(w.flatten(1).t()), cast(b)))  # rows (n, c) @ (c, g)
                    a, t = torch.cat([a, a_new]), torch.cat([t, t_new])
                ops.append(_Dense(tuple(layers), stage.out_channels))
            elif isinstance(stage, ConvReluBN):
                w, b, a, t = _layer(stage, a, t)
                ops.append(_Conv(cast(w), cast(b), relu=True))
            else:
                raise ValueError(f"cannot fold a {type(stage).__name__}")
        conv = head[0]
        w, b = _consume(conv, a, t)
        if len(head) > 1:
            s, beta = _bn_affine(head[1])
            w, b = w * s[:, None, None, None], b * s + beta
        ops.append(_Conv(cast(w), cast(b), relu=False))
    return FoldedPlan(tuple(ops), key)


def _dense(op: _Dense, x: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """One dense block on ``u``: the channels-last buffer ``buf`` (B, y, x, c_out), whose rows
    each 1 × 1 layer reads a prefix of and writes its channels into (no concatenation), returned
    as an NCHW-shaped view."""
    c = x.shape[1]
    buf[..., :c] = x.permute(0, 2, 3, 1)
    rows = buf.view(-1, op.out_channels)
    for weight, bias in op.layers:
        g = weight.shape[1]
        dst = rows[:, c : c + g]
        torch.addmm(bias, rows[:, :c], weight, out=dst)
        dst.relu_()
        c += g
    return buf.permute(0, 3, 1, 2)


def plan_for(net: nn.Module, device: torch.device, dtype: torch.dtype) -> FoldedPlan:
    """The cached plan of ``net`` (a :class:`~mrfrecon.models.proposed.ProposedCNN`), folded
    again if a parameter or buffer changed since (training) or for another device or dtype."""
    key = state_key(net, device, dtype)
    plan = _PLANS.get(net)
    if plan is None or plan.key != key:
        plan = fold(net.features, net.head, net.in_channels, device, dtype, key)
        _PLANS[net] = plan
    return plan


def folded_forward(plan: FoldedPlan, x: torch.Tensor) -> torch.Tensor:
    """(B, C, y, x) → (B, M, y − 2·margin, x − 2·margin) through the folded layers. A dense
    block's output (a view of the scratch buffer) is read only by the convolution after it,
    before the next block writes the buffer again."""
    for op in plan.ops:
        if isinstance(op, _Dense):
            b, _, h, w = x.shape
            x = _dense(op, x, plan.buffer((b, h, w, op.out_channels), x))
        else:
            x = F.conv2d(x, op.weight, op.bias)
            if op.relu:
                x.relu_()
    return x
