"""Map-reconstruction networks and their registry.

::

    from mrfrecon.models import build, to_channels

    net = build("proposed", frames=175, maps=3)            # MIDL 2019 CNN, 5,659,337 parameters
    x = to_channels(series)                                 # complex (B, T, y, x) → real (B, 2T, y, x)
    maps = net(x)                                           # (B, 3, y − 10, x − 10)
    same = build(**net.spec)                                # rebuild from a checkpoint's spec

Every network takes a real tensor ``(batch, 2·frames, y, x)``: the complex series with all real
parts first, then all imaginary parts (:func:`to_channels`; frame ``t`` is in channels ``t`` and
``frames + t``), and returns ``(batch, maps, y − 2·margin, x − 2·margin)``. See
:class:`~mrfrecon.models.layers.MRFNet` for the attributes every network has (``spec``,
``kind``, ``margin``, ``input_size``, ``output_size``, ``size_multiple``).

=============  =====  ======  =====================================================  ==========
name           kind   margin  source                                                 parameters
=============  =====  ======  =====================================================  ==========
proposed       patch  5       Balsiger et al., MIDL 2019 (42 → 32 patches)           5,659,337
cohen2018      pixel  0       Cohen et al., MRM 2018 (DRONE)                         196,503
fang2018       slice  0       Fang et al., MLMI 2018 / IEEE TMI 2019                 2,016,291
balsiger2018   patch  2       Balsiger et al., MLMIR 2018 (36 → 32 patches)          247,747
=============  =====  ======  =====================================================  ==========

(parameters for frames=175, maps=3, width=1, default options.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import MrfreconError
from .balsiger2018 import Balsiger2018
from .channels import frame_channels, from_channels, to_channels
from .cohen2018 import Cohen2018
from .fang2018 import Fang2018
from .layers import MRFNet
from .macs import count_macs, flops_per_pixel, macs_per_pixel
from .proposed import ProposedCNN

__all__ = [
    "MODELS",
    "Balsiger2018",
    "Cohen2018",
    "Fang2018",
    "MRFNet",
    "ModelSpec",
    "ProposedCNN",
    "build",
    "count_macs",
    "count_parameters",
    "flops_per_pixel",
    "frame_channels",
    "from_channels",
    "macs_per_pixel",
    "to_channels",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build a network and what it is."""

    name: str
    factory: Callable[..., MRFNet]
    kind: str
    summary: str
    reference: str
    options: dict[str, Any] = field(default_factory=dict)  # option → default (besides frames, maps)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "proposed",
            ProposedCNN,
            "patch",
            "temporal dense blocks + 3×3 valid spatial blocks, five stages; 42×42 → 32×32",
            "Balsiger et al., MIDL 2019, PMLR 102:27-38",
            {"receptive_field": 11, "width": 1.0, "head_batchnorm": True, "batchnorm": True},
        ),
        ModelSpec(
            "cohen2018",
            Cohen2018,
            "pixel",
            "fingerprint-wise fully connected 2T → 300 → 300 → M (DRONE)",
            "Cohen, Zhu, Rosen, Magn Reson Med 80:885-894, 2018",
            {"activation": "tanh", "width": 1.0, "batchnorm": False},
        ),
        ModelSpec(
            "fang2018",
            Fang2018,
            "slice",
            "per-pixel fully connected feature extraction + two-pooling U-Net on whole slices",
            "Fang et al., MLMI 2018, LNCS 11046:398-405; IEEE Trans Med Imaging 38:2364-2374, 2019",
            {"width": 1.0, "fe_widths": [256, 128, 64, 32], "unet_widths": [64, 128, 256], "batchnorm": True},
        ),
        ModelSpec(
            "balsiger2018",
            Balsiger2018,
            "patch",
            "1×1 temporal layers + two 3×3 valid convolutions (5×5 receptive field); 36×36 → 32×32",
            "Balsiger et al., MLMIR 2018, LNCS 11074:39-46 (arXiv:1807.06356)",
            {"width": 1.0, "batchnorm": True},
        ),
    )
}


def build(name: str, frames: int = 175, maps: int = 3, **options: Any) -> MRFNet:
    """Build network ``name`` for ``frames`` temporal frames and ``maps`` output maps.

    ``options`` are the network's own (see ``MODELS[name].options`` for them and their
    defaults; every network has ``width``). The result's ``spec`` holds the name and all
    options, so ``build(**net.spec)`` rebuilds the same architecture. Unknown names and
    options raise :class:`~mrfrecon.MrfreconError` naming what is allowed.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise MrfreconError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise MrfreconError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; options are: {', '.join(spec.options)}"
        )
    try:
        return spec.factory(frames=frames, maps=maps, **options)
    except ValueError as e:
        raise MrfreconError(f"model {name!r}: {e}") from None


def count_parameters(net: nn.Module) -> int:
    """Number of learnable parameters (weights, biases, batch-norm scales and shifts)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
