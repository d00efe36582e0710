"""The training loss of the MIDL 2019 networks."""

from __future__ import annotations

import torch

__all__ = ["masked_mse", "masked_mse_per_map"]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``pred · mask`` and ``target · mask`` (the authors' code,
    ARCHITECTURE.md "Loss"): background pixels contribute zeros to the sum, and the mean is
    over *all* elements (batch · M · h · w), not only the foreground ones.

    Shapes: ``pred``, ``target`` (B, M, h, w) in normalized map units; ``mask`` (B, 1, h, w)
    (broadcast over the maps) or (B, M, h, w), 1 in the foreground, 0 elsewhere.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    mask = mask.to(pred.dtype)
    diff = pred * mask - target * mask
    if diff.shape != pred.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to the prediction {tuple(pred.shape)}")
    return torch.mean(diff * diff)


def masked_mse_per_map(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_mse` of each map apart: (M,) means over (batch, h, w). Their mean is
    :func:`masked_mse` (every map has as many elements)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    diff = pred * mask - target * mask
    return (diff * diff).mean(dim=(0, 2, 3))
