"""Whole-slice inference.

The patch and pixel networks are fully convolutional with valid convolutions: a slice
zero-padded by ``margin`` pixels per side gives the (y, x) maps in one pass (ARCHITECTURE.md:
"a slice padded by 5 pixels on each side gives the same result as tiling non-overlapping
32 × 32 output patches with 42 × 42 inputs"). :func:`predict_slice` does either — one pass, or
non-overlapping ``tile × tile`` output tiles with their real neighbouring context, to bound the
memory of large slices — with identical results (in eval mode, batch norm is per-channel affine).
Slice networks (fang2018) always take the whole slice; they pad internally to ``size_multiple``.

On the CPU, networks that gain from it (``cpu_channels_last``: Fang et al.'s) run inference in
the channels-last memory format (NHWC), in which oneDNN's convolutions need no reorders between
the tensor and oneDNN's blocked layout around every layer (``benchmarks/bench_layout.py``: Fang 1.26× / 1.09×
at widths 1 / 0.25; Cohen and Balsiger 0.84–1.08×, the proposed CNN neutral once its dense
blocks skip their concatenations). The layout changes the order of sums only: maps agree with
the NCHW pass to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import MrfreconError
from ..runtime import with_thread_policy
from .patches import crop_padded

__all__ = ["predict_slice", "predict_volume"]


def _as_channels(series: np.ndarray | torch.Tensor, channels: int | None) -> torch.Tensor:
    """(T, y, x) complex or (2T, y, x) real → float32 tensor (2T, y, x) (to_channels layout)."""
    if isinstance(series, torch.Tensor):
        series = series.detach().cpu().numpy()
    a = np.asarray(series)
    if a.ndim != 3:
        raise MrfreconError(f"expected one slice (T, y, x) complex or (2T, y, x) real, got shape {a.shape}")
    if np.iscomplexobj(a):
        a = np.concatenate([a.real, a.imag], axis=0)
    if channels is not None and a.shape[0] != channels:
        raise MrfreconError(f"the network expects {channels} input channels (2 × frames), got {a.shape[0]}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _is_channels_last(net: nn.Module) -> bool:
    weights = [p for p in net.parameters() if p.ndim == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


@contextmanager
def _inference_layout(net: nn.Module, device: torch.device) -> Iterator[torch.memory_format]:
    """The memory format inputs should take: channels-last on the CPU for networks that run
    faster so (``net.cpu_channels_last``; their parameters are converted for the call and
    restored after, so training and the caller's module are unaffected), else contiguous."""
    if (torch.device(device).type != "cpu" or not getattr(net, "cpu_channels_last", False)
            or not any(p.ndim == 4 for p in net.parameters())):
        yield torch.contiguous_format
        return
    already = _is_channels_last(net)
    if not already:
        net.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        if not already:
            net.to(memory_format=torch.contiguous_format)


@with_thread_policy  # per slice: the free cores are sampled again for each
@torch.no_grad()
def predict_slice(
    net: nn.Module,
    series_norm: np.ndarray | torch.Tensor,
    tile: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Maps of one slice: (T, y, x) complex or (2T, y, x) real normalized series → float32
    (M, y, x) in normalized units (de-normalize with :meth:`~mrfrecon.data.MapNorm.denormalize`).

    ``tile=None``: one fully convolutional pass on the slice zero-padded by the network's
    ``margin``. ``tile=k`` (patch and pixel models): non-overlapping ``k × k`` output tiles, each
    from a ``(k + 2·margin)²`` input with the slice's real neighbours (zeros outside the image),
    ``batch_size`` tiles per pass; sizes not divisible by ``k`` are handled by padding the last
    tiles. The network runs in eval mode (its previous mode is restored); ``device`` defaults
    to the device of its parameters. Not for concurrent calls on one module (its mode and, on
    the CPU, its weights' memory format change for the call).
    """
    margin = int(getattr(net, "margin", 0))
    kind = getattr(net, "kind", "patch")
    x = _as_channels(series_norm, getattr(net, "in_channels", None))
    if device is None:
        p = next(net.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    height, width = x.shape[-2:]
    was_training = net.training
    net.eval()
    try:
        with _inference_layout(net, torch.device(device)) as layout:
            if tile is None or kind == "slice":
                if tile is not None and kind == "slice":
                    raise MrfreconError("slice models take the whole slice: use tile=None")
                padded = torch.nn.functional.pad(x, (margin, margin, margin, margin))
                out = net(padded[None].to(device).contiguous(memory_format=layout))[0]
                return out.float().cpu().contiguous().numpy()
            tile = int(tile)
            if tile < 1:
                raise MrfreconError(f"tile must be >= 1, got {tile}")
            a = x.numpy()
            origins = [(y0, x0) for y0 in range(0, height, tile) for x0 in range(0, width, tile)]
            result: np.ndarray | None = None
            for start in range(0, len(origins), batch_size):
                chunk = origins[start : start + batch_size]
                inputs = np.stack([crop_padded(a, y0 - margin, x0 - margin, tile + 2 * margin, tile + 2 * margin)
                                   for y0, x0 in chunk])
                batch = torch.from_numpy(inputs).to(device).contiguous(memory_format=layout)
                outputs = net(batch).float().cpu().contiguous().numpy()
                if result is None:
                    result = np.zeros((outputs.shape[1], height, width), dtype=np.float32)
                for (y0, x0), o in zip(chunk, outputs, strict=True):
                    h, w = min(tile, height - y0), min(tile, width - x0)  # crop the padded last tiles
                    result[:, y0 : y0 + h, x0 : x0 + w] = o[:, :h, :w]
            assert result is not None
            return result
    finally:
        net.train(was_training)


def predict_volume(
    net: nn.Module,
    series_norm: np.ndarray,
    tile: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """:func:`predict_slice` for every slice of (slices, T, y, x) complex or (slices, 2T, y, x)
    real → float32 (slices, M, y, x), normalized units."""
    a = np.asarray(series_norm) if not isinstance(series_norm, torch.Tensor) else series_norm
    if a.ndim != 4:
        raise MrfreconError(f"expected a volume (slices, T, y, x), got shape {tuple(a.shape)}")
    return np.stack([predict_slice(net, s, tile, device, batch_size) for s in a])
