"""Fingerprint-wise fully connected network (DRONE) of Cohen et al., MRM 2018.

O. Cohen, B. Zhu, M. S. Rosen. "MR fingerprinting Deep RecOnstruction NEtwork (DRONE)."
Magnetic Resonance in Medicine 80(3):885–894, 2018. https://doi.org/10.1002/mrm.27198

One fingerprint at a time: 2T inputs (real and imaginary parts) → 300 → 300 → M. The original
paper uses tanh hidden layers and a sigmoid output (maps normalized to [0, 1]); the MIDL 2019
authors' group later re-implemented it in PyTorch with ReLU hidden layers and a linear output
(github.com/fabianbalsiger/mrf-reconstruction-mlmir2020, ``mrf/model/cohen.py``), reporting
that it trained slightly better. Both are offered (``activation``); the default is the original.
Learnable parameters for T = 175, M = 3: 350·300 + 300 + 300·300 + 300 + 300·3 + 3 = 196,503
with either activation.

Implemented as 1 × 1 convolutions — identical to the fully connected layers applied to every
pixel — so that it runs on (batch, 2T, y, x) tensors of any size (``kind="pixel"``, margin 0).
Weights are Xavier-uniform with zero biases, as in the MIDL 2019 authors' TensorFlow framework.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import MRFNet, batch_norm, init_weights, scaled

HIDDEN = 300
ACTIVATIONS = ("tanh", "relu")


class Cohen2018(MRFNet):
    """DRONE: (B, 2T, y, x) → (B, M, y, x), each pixel independently.

    Parameters
    ----------
    frames, maps
        T temporal frames (input channels 2T) and M output maps.
    activation
        ``"tanh"`` (original paper: tanh hidden layers, sigmoid output) or ``"relu"`` (the
        group's re-implementation: ReLU hidden layers, linear output).
    width
        Multiplier of the hidden layer width (300 at 1.0).
    batchnorm
        ``True`` adds batch normalization after each hidden activation (``conv → act → BN``, the
        MIDL 2019 networks' layer), an ablation: DRONE itself has none (default ``False``).
    """

    name = "cohen2018"
    kind = "pixel"

    def __init__(self, frames: int = 175, maps: int = 3, activation: str = "tanh", width: float = 1.0,
                 batchnorm: bool = False) -> None:
        super().__init__(frames, maps)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        h = scaled(HIDDEN, width)
        act = nn.Tanh if activation == "tanh" else nn.ReLU
        layers: list[nn.Module] = []
        for c_in in (self.in_channels, h):
            layers += [nn.Conv2d(c_in, h, 1), act()]
            if batchnorm:
                layers.append(batch_norm(h))
        layers.append(nn.Conv2d(h, self.maps, 1))
        if activation == "tanh":
            layers.append(nn.Sigmoid())  # maps are normalized to [0, 1]
        self.net = nn.Sequential(*layers)
        init_weights(self)
        self.activation = activation
        self.spec = {
            "name": self.name,
            "frames": self.frames,
            "maps": self.maps,
            "activation": activation,
            "width": float(width),
            "batchnorm": bool(batchnorm),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2T, y, x) real → (B, M, y, x)."""
        self._check_input(x)
        return self.net(x)
