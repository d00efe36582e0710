"""The earlier spatio-temporal patch CNN of Balsiger et al., MLMIR 2018 (5 × 5 receptive field).

F. Balsiger, A. Shridhar Konar, S. Chikop, V. Chandran, O. Scheidegger, S. Geethanath,
M. Reyes. "Magnetic Resonance Fingerprinting Reconstruction via Spatiotemporal Convolutional
Neural Networks." Machine Learning for Medical Image Reconstruction (MLMIR 2018), LNCS 11074,
pp. 39–46, Springer 2018. arXiv:1807.06356. The MIDL 2019 paper shows it as "our previous
architecture with a receptive field of 5 × 5".

What is known, and what we had to choose
-----------------------------------------
No code of this network is public, and the stored reference material available to us while
writing this module had neither the paper's text nor a figure of the network; the MIDL 2019
paper gives only its receptive field (5 × 5) and that it is a spatio-temporal CNN of the same
authors. So the architecture below is our reconstruction, built from the same ingredients as
the MIDL 2019 network, and every detail except the receptive field is a choice:

- Input: the fingerprints of a neighbourhood as 2T real channels (real then imaginary parts),
  temporal dimension as feature channels, exactly as in MIDL 2019 (choice: same convention).
- Temporal part: four ``conv 1×1 → ReLU → BN`` layers (per-fingerprint fully connected
  layers) of widths 256, 192, 128, 64, reducing the 2T-dimensional fingerprint (choice: plain
  chain, no dense connections — dense temporal blocks were introduced in MIDL 2019).
- Spatial part: two ``conv 3×3 valid → ReLU → BN`` layers of 64 channels → receptive field
  5 × 5, margin 2 (the one documented fact).
- Head: ``conv 1×1`` to M maps, linear, no batch norm (choice: the paper-style linear output).
- The published network reconstructs the centre fingerprint of a 5 × 5 input patch; being
  fully convolutional, ours computes the same function for every pixel of a larger patch at
  once: input 36 × 36 → output 32 × 32 (kind ``"patch"``), matching the training pipeline
  of the proposed CNN.
- Xavier-uniform weights, zero biases, TensorFlow batch-norm defaults (as the authors' code).

Learnable parameters for T = 175, M = 3, width 1: 247,747 (see the tests).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvReluBN, MRFNet, init_weights, scaled

TEMPORAL_WIDTHS = (256, 192, 128, 64)
SPATIAL_WIDTHS = (64, 64)
OUTPUT_PATCH = 32


class Balsiger2018(MRFNet):
    """Patch CNN with a 5 × 5 receptive field: (B, 2T, y, x) → (B, M, y − 4, x − 4).

    Parameters
    ----------
    frames, maps
        T temporal frames (input channels 2T) and M output maps.
    width
        Multiplier of every channel width; 1.0 is the network described in the module docstring.
    batchnorm
        Batch normalization after every ReLU (default, as the authors' MIDL 2019 layers);
        ``False`` drops it (``conv → ReLU``), an ablation of what batch statistics do to T1H2O
        (docs/study/first_scheme.md).
    """

    name = "balsiger2018"
    kind = "patch"

    def __init__(self, frames: int = 175, maps: int = 3, width: float = 1.0, batchnorm: bool = True) -> None:
        super().__init__(frames, maps)
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        layers: list[nn.Module] = []
        c = self.in_channels
        for n in TEMPORAL_WIDTHS:
            layers.append(ConvReluBN(c, scaled(n, width), 1, batchnorm=batchnorm))
            c = scaled(n, width)
        for n in SPATIAL_WIDTHS:
            layers.append(ConvReluBN(c, scaled(n, width), 3, batchnorm=batchnorm))
            c = scaled(n, width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, self.maps, 1)  # linear output
        init_weights(self)
        self.receptive_field = 1 + 2 * len(SPATIAL_WIDTHS)
        self.margin = len(SPATIAL_WIDTHS)
        self.output_size = OUTPUT_PATCH
        self.input_size = OUTPUT_PATCH + 2 * self.margin
        self.spec = {"name": self.name, "frames": self.frames, "maps": self.maps, "width": float(width),
                     "batchnorm": bool(batchnorm)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2T, y, x) real → (B, M, y − 4, x − 4)."""
        self._check_input(x)
        return self.head(self.features(x))
