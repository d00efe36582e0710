"""Training samples: a fixed grid of patches (or whole slices) cut on the fly from in-memory scans.

Paper, section 2.2, and the authors' code (ARCHITECTURE.md): non-overlapping 32 × 32 output
patches on a fixed grid per slice, each with an input patch of ``margin`` pixels of real
neighbouring context on every side (42 × 42 for the proposed CNN's margin of 5), zero-padded
where it leaves the image; only patches containing foreground are kept; no augmentation; the
DataLoader reshuffles them every epoch (``shuffle=True``).

The grid starts at the image's top-left corner. When the image size is not a multiple of the
patch size, the last row/column of patches extends past the image: those pixels are zero in the
input, target and mask, so they do not contribute to the masked loss.

Per model kind (:func:`grid_for`):

- ``patch`` (proposed, balsiger2018): ``output_size`` × ``output_size`` outputs, ``margin`` context.
- ``pixel`` (cohen2018): the same grid of ``patch`` × ``patch`` outputs with no context — each
  pixel is an independent sample to the network, the grid just batches them.
- ``slice`` (fang2018): one sample per slice, the whole slice zero-padded at the bottom and
  right to a multiple of ``size_multiple`` (the same padded size for all scans).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import MrfreconError

__all__ = ["PatchDataset", "PatchGrid", "PatchIndex", "crop_padded", "grid_for"]

DEFAULT_PATCH = 32  # the paper's output patch size (section 2.2)


@dataclass(frozen=True)
class PatchGrid:
    """Geometry of the samples: output patches of ``out = (height, width)`` pixels on a grid of
    that step, inputs with ``margin`` pixels of context per side."""

    out: tuple[int, int]
    margin: int = 0

    def __post_init__(self) -> None:
        if min(self.out) < 1 or self.margin < 0:
            raise MrfreconError(f"patch grid: invalid output size {self.out} or margin {self.margin}")

    @property
    def input(self) -> tuple[int, int]:
        """Input patch size (height, width) = output + 2·margin."""
        return self.out[0] + 2 * self.margin, self.out[1] + 2 * self.margin

    def origins(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-left corners (y0, x0) of the output patches covering a ``height × width`` image."""
        return np.arange(0, height, self.out[0]), np.arange(0, width, self.out[1])


def grid_for(net: object, image_shape: tuple[int, int], patch: int = DEFAULT_PATCH) -> PatchGrid:
    """The training grid of a network (``kind``, ``margin``, ``output_size``, ``size_multiple``
    attributes, see :class:`mrfrecon.models.MRFNet`) for slices of ``image_shape`` (y, x) —
    the largest over the scans for slice models.

    ``patch``: output patch size for pixel models (default 32, as the patch models).
    """
    kind = getattr(net, "kind", None)
    if kind == "patch":
        out = int(getattr(net, "output_size", None) or patch)
        return PatchGrid((out, out), int(net.margin))  # type: ignore[attr-defined]
    if kind == "pixel":
        return PatchGrid((patch, patch), 0)
    if kind == "slice":
        m = int(getattr(net, "size_multiple", 1))
        h, w = (-(-int(s) // m) * m for s in image_shape)  # round up to a multiple of m
        return PatchGrid((h, w), 0)
    raise MrfreconError(f"unknown model kind {kind!r}; expected patch, pixel or slice")


def _paste_window(out: np.ndarray, a: np.ndarray, y0: int, x0: int) -> None:
    """Copy the part of window ``a[..., y0:y0+h, x0:x0+w]`` (h, w = ``out``'s last two sizes)
    that lies inside ``a`` into the zero-initialized ``out``; the rest stays zero."""
    ny, nx = a.shape[-2:]
    height, width = out.shape[-2:]
    ya, yb = max(y0, 0), min(y0 + height, ny)
    xa, xb = max(x0, 0), min(x0 + width, nx)
    if ya < yb and xa < xb:
        out[..., ya - y0 : yb - y0, xa - x0 : xb - x0] = a[..., ya:yb, xa:xb]


def _symmetry(a: np.ndarray, k: int) -> np.ndarray:
    """Symmetry ``k`` of the square (see :class:`PatchDataset`) on the last two axes, contiguous."""
    a = np.rot90(a, k % 4, axes=(-2, -1))
    if k >= 4:
        a = a[..., ::-1]
    return np.ascontiguousarray(a)


def crop_padded(a: np.ndarray, y0: int, x0: int, height: int, width: int) -> np.ndarray:
    """``a[..., y0:y0+height, x0:x0+width]`` of an array (..., Y, X), with zeros wherever the
    window leaves the array (``y0``/``x0`` may be negative). Copies only the window."""
    out = np.zeros(a.shape[:-2] + (height, width), dtype=a.dtype)
    _paste_window(out, a, y0, x0)
    return out


@dataclass(frozen=True)
class PatchIndex:
    """The samples of a set of scans: rows ``(scan, slice, y0, x0)`` (int64 array (n, 4)),
    ``(y0, x0)`` the top-left corner of the *output* patch in slice pixels, and its
    :class:`PatchGrid`."""

    entries: np.ndarray
    grid: PatchGrid

    @classmethod
    def build(cls, foregrounds: Sequence[np.ndarray], grid: PatchGrid, keep_all: bool = False) -> PatchIndex:
        """Grid positions of every slice of every scan whose output patch contains foreground.

        ``foregrounds``: per scan, bool (slices, y, x). ``keep_all=True`` keeps every grid
        position (e.g. to predict whole slices patch by patch).
        """
        rows: list[tuple[int, int, int, int]] = []
        for s, fg in enumerate(foregrounds):
            fg = np.asarray(fg, dtype=bool)
            if fg.ndim != 3:
                raise MrfreconError(f"scan {s}: foreground must be (slices, y, x), got shape {fg.shape}")
            ys, xs = grid.origins(*fg.shape[-2:])
            for z in range(fg.shape[0]):
                for y0 in ys:
                    for x0 in xs:
                        if keep_all or fg[z, y0 : y0 + grid.out[0], x0 : x0 + grid.out[1]].any():
                            rows.append((s, z, int(y0), int(x0)))
        entries = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        return cls(entries, grid)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> tuple[int, int, int, int]:
        s, z, y0, x0 = (int(v) for v in self.entries[i])
        return s, z, y0, x0

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class PatchDataset(Dataset):
    """Training samples cut on the fly from in-memory scans (nothing is materialized up front).

    Parameters
    ----------
    series
        Per scan, the *normalized* series: complex (slices, T, y, x) (see
        :func:`~mrfrecon.data.normalize_series`) or already real channels (slices, 2T, y, x)
        in the :func:`~mrfrecon.models.to_channels` layout.
    maps
        Per scan, the normalized targets float (slices, M, y, x) (see
        :meth:`~mrfrecon.data.MapNorm.normalize`), background 0.
    foregrounds
        Per scan, bool (slices, y, x).
    index
        The samples (:class:`PatchIndex`); by default every foreground-containing patch of
        ``grid``.
    grid
        Used when ``index`` is not given.

    map_masks
        Optional, per scan, bool (slices, M, y, x): a loss mask per map (e.g. T1H2O only where
        the target FF < 0.65); the items' mask is then (M, out_h, out_w). Patches are still
        chosen by ``foregrounds``.

    augment
        Item ``8·i + k`` is sample ``i`` under the ``k``-th of the 8 symmetries of the square
        (``k % 4`` quarter turns, then a left–right flip when ``k ≥ 4``), applied alike to the
        input, target and mask (flips and quarter turns, as Fang et al.'s public code augments;
        a radial acquisition's streaks and the anatomy have no preferred in-plane direction).
        :meth:`encode` builds such an item number. Without it, items are ``0 … len − 1``.

    Each item is a tuple of float32 tensors: input (2T, in_h, in_w), target (M, out_h, out_w)
    and foreground mask (1, out_h, out_w) (or the per-map masks), where in = out + 2·margin.

    Cutting a 42 × 42 × 350-channel patch reads 175 × 42 short rows scattered over the frames
    (a few ms per sample on a busy CPU core); use the DataLoader's ``num_workers`` so the GPU
    is not kept waiting. The arrays are shared with forked workers, not copied.
    """

    def __init__(
        self,
        series: Sequence[np.ndarray],
        maps: Sequence[np.ndarray],
        foregrounds: Sequence[np.ndarray],
        index: PatchIndex | None = None,
        grid: PatchGrid | None = None,
        map_masks: Sequence[np.ndarray] | None = None,
        augment: bool = False,
    ) -> None:
        if not (len(series) == len(maps) == len(foregrounds)) or not series:
            raise MrfreconError(f"{len(series)} series, {len(maps)} map sets, {len(foregrounds)} foregrounds")
        if index is None:
            if grid is None:
                raise MrfreconError("PatchDataset needs an index or a grid")
            index = PatchIndex.build(foregrounds, grid)
        self.series = [np.asarray(s) for s in series]
        self.maps = [np.asarray(m, dtype=np.float32) for m in maps]
        self.foregrounds = [np.asarray(f, dtype=bool) for f in foregrounds]
        for k, (s, m, f) in enumerate(zip(self.series, self.maps, self.foregrounds, strict=True)):
            if s.ndim != 4 or m.ndim != 4 or f.ndim != 3:
                raise MrfreconError(
                    f"scan {k}: expected series (slices, T, y, x), maps (slices, M, y, x), foreground "
                    f"(slices, y, x); got {s.shape}, {m.shape}, {f.shape}"
                )
            if not (s.shape[:1] + s.shape[2:] == m.shape[:1] + m.shape[2:] == f.shape):
                raise MrfreconError(f"scan {k}: series {s.shape}, maps {m.shape}, foreground {f.shape} do not match")
        channels = {2 * s.shape[1] if np.iscomplexobj(s) else s.shape[1] for s in self.series}
        if len(channels) != 1:
            raise MrfreconError(f"scans differ in their number of frames: channels {sorted(channels)}")
        self.channels = channels.pop()
        self.map_masks = None if map_masks is None else [np.asarray(a, dtype=bool) for a in map_masks]
        if self.map_masks is not None:
            if len(self.map_masks) != len(self.maps):
                raise MrfreconError(f"{len(self.map_masks)} map masks for {len(self.maps)} scans")
            for k, (a, m) in enumerate(zip(self.map_masks, self.maps, strict=True)):
                if a.shape != m.shape:
                    raise MrfreconError(f"scan {k}: map masks {a.shape} and maps {m.shape} do not match")
        self.index = index
        self.grid = index.grid
        self.augment = bool(augment)
        if self.augment and self.grid.out[0] != self.grid.out[1]:
            raise MrfreconError(f"augmentation by quarter turns needs square patches, got {self.grid.out}")

    @staticmethod
    def encode(i: int, k: int) -> int:
        """The item number of sample ``i`` under symmetry ``k`` (0 … 7) of an augmenting dataset."""
        return 8 * int(i) + int(k)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = 0
        if self.augment:
            i, k = divmod(int(i), 8)
        s, z, y0, x0 = self.index[i]
        (oh, ow), m = self.grid.out, self.grid.margin
        src = self.series[s][z]
        # written straight into one float32 buffer: a patch is ~2.5 MB for T = 175, and
        # intermediate copies (complex crop, concatenate) tripled the time per sample
        x = np.zeros((self.channels, oh + 2 * m, ow + 2 * m), dtype=np.float32)
        if np.iscomplexobj(src):  # to_channels layout: all real parts, then all imaginary parts
            t = src.shape[0]
            _paste_window(x[:t], src.real, y0 - m, x0 - m)
            _paste_window(x[t:], src.imag, y0 - m, x0 - m)
        else:
            _paste_window(x, src, y0 - m, x0 - m)
        target = crop_padded(self.maps[s][z], y0, x0, oh, ow)
        masks = self.foregrounds[s][z][None] if self.map_masks is None else self.map_masks[s][z]
        mask = crop_padded(masks, y0, x0, oh, ow)
        if k:
            x, target, mask = (_symmetry(a, k) for a in (x, target, mask))
        return (
            torch.from_numpy(x),
            torch.from_numpy(target),
            torch.from_numpy(mask.astype(np.float32)),
        )
