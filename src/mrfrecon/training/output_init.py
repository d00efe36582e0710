"""Start a network's output at the scale of its targets (the ``head_init`` training option).

Why (measured, docs/RESULTS.md "Why the proposed CNN did not learn"): the targets are maps
min–max normalized to [0, 1] (paper, section 2.2.1), whose foreground standard deviation is
0.2–0.4 (T1H2O inside the scored mask: 0.07). The proposed CNN's output, at Glorot
initialization, is a batch norm with unit scale (the authors' head) or a 1 × 1 convolution of
unit-variance batch-normalized features: its standard deviation is ≈ 1, three to fifteen
times the target's. Every hidden layer ends in a batch norm, so nothing upstream can shrink the
output: only the head's few parameters can, and Adam moves each by at most ≈ the learning rate
per step (Kingma & Ba 2015, section 2.1) — from a scale of 1 to 0.2 takes ≥ 800 steps at 1e-3,
during which the scale error dominates the loss and its gradients. DRONE's sigmoid output
(Cohen et al. 2018) starts inside [0, 1] and does not have the problem.

``"target"`` sets the output's per-map mean and standard deviation over the training foreground
to the targets' before the first step: the head's batch norm gets β = mean, γ = SD; a linear
head (a 1 × 1 convolution without a norm after it) is corrected affinely, W ← W·s_t/s_o,
b ← (b − m_o)·s_t/s_o + m_t, with (m_o, s_o) the output's statistics over the foreground of one
batch of training samples. The architecture is unchanged; only the starting point differs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MrfreconError

__all__ = ["HEAD_INITS", "calibrate_output", "output_layers"]

#: ``paper``: Glorot weights, unit-scale batch norms (the authors' initialization); ``target``:
#: the output starts at the targets' mean and standard deviation (:func:`calibrate_output`).
HEAD_INITS = ("paper", "target")


def output_layers(net: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None] | None:
    """The network's last convolution and the batch norm right after it (or None), when the
    output is affine in them; None when an output nonlinearity follows (DRONE's sigmoid)."""
    head = getattr(net, "head", None)
    seq = head if isinstance(head, nn.Sequential) else (nn.Sequential(head) if head is not None else getattr(net, "net", None))
    if not isinstance(seq, nn.Sequential) or len(seq) == 0:
        return None
    mods = list(seq)
    if isinstance(mods[-1], nn.BatchNorm2d) and len(mods) >= 2 and isinstance(mods[-2], nn.Conv2d):
        return mods[-2], mods[-1]
    if isinstance(mods[-1], nn.Conv2d):
        return mods[-1], None
    return None


@torch.no_grad()
def calibrate_output(net: nn.Module, x: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor,
                     sd: torch.Tensor) -> bool:
    """Set the output's per-map mean and SD (over the foreground ``mask`` of the batch ``x``) to
    ``mean`` and ``sd`` (each (M,), normalized map units). Returns False (nothing changed) when
    the network's output is not affine in its last layer.

    ``x``: (B, 2T, h_in, w_in) training inputs; ``mask``: (B, 1 or M, h, w) of the output size.
    """
    layers = output_layers(net)
    if layers is None:
        return False
    conv, bn = layers
    mean, sd = mean.to(conv.weight), sd.to(conv.weight)
    if bn is not None:  # in training the head's BN output has exactly mean β and SD γ over the batch
        bn.weight.copy_(sd)
        bn.bias.copy_(mean)
        return True
    was = net.training
    net.train()
    out = net(x)
    net.train(was)
    m = mask.expand_as(out).bool()
    stats = []
    for c in range(out.shape[1]):
        v = out[:, c][m[:, c]]
        if v.numel() < 2:
            raise MrfreconError("head_init target: the calibration batch has no foreground")
        stats.append((v.mean(), v.std()))
    m_o = torch.stack([s[0] for s in stats])
    s_o = torch.stack([s[1] for s in stats]).clamp_min(1e-8)
    g = sd / s_o
    conv.weight.mul_(g.view(-1, *([1] * (conv.weight.ndim - 1))))
    if conv.bias is None:
        raise MrfreconError("head_init target: the output convolution has no bias")
    conv.bias.copy_((conv.bias - m_o) * g + mean)
    return True
