"""Feature extraction + U-Net style encoder–decoder of Fang et al., 2018/2019 (whole slices).

Z. Fang, Y. Chen, M. Liu, Y. Zhan, W. Lin, D. Shen. "Deep Learning for Fast and
Spatially-Constrained Tissue Quantification from Highly-Undersampled Data in Magnetic Resonance
Fingerprinting (MRF)." Machine Learning in Medical Imaging (MLMI 2018, MICCAI workshop),
LNCS 11046, pp. 398–405, 2018; extended as Z. Fang, Y. Chen, M. Liu, L. Xiang, Q. Zhang,
Q. Wang, W. Lin, D. Shen. "Deep Learning for Fast and Spatially Constrained Tissue
Quantification From Highly Accelerated Data in Magnetic Resonance Fingerprinting." IEEE
Transactions on Medical Imaging 38(10):2364–2374, 2019. https://doi.org/10.1109/TMI.2019.2899328

What the sources say (facts)
----------------------------
- Two modules: a *feature extraction* module that reduces the high-dimensional signal
  evolution of each pixel to a low-dimensional feature vector with fully connected layers, and
  a *spatially-constrained quantification* module that maps the resulting feature maps to the
  tissue property maps, exploiting neighbouring pixels (abstract of the TMI paper).
- The MIDL 2019 paper (section 2.3) calls it "an encoder-decoder CNN with two spatial pooling
  operations" that "reconstructs entire MR map slices", implemented "as originally described
  with slight modifications for our MRF sequence" and trained with the same pre-processing and
  training scheme as the proposed CNN (so: end to end, MSE, Adam; not Fang's two-step training).

What we had to choose (the layer widths and details were not available to us in the stored
reference material while writing this; each is an option where it matters)
------------------------------------------------------------------------------------------------
- Feature extraction: four fully connected layers per pixel, implemented as
  ``conv 1×1 → ReLU → BN``, widths 256, 128, 64, 32 (``fe_widths``): a halving chain from the
  2T = 350 inputs to a 32-dimensional feature vector (the order of magnitude of the rank used by
  subspace/SVD-compressed MRF dictionaries).
- Encoder–decoder: a U-Net (Ronneberger et al., MICCAI 2015) with two 2 × 2 max-poolings,
  i.e. three resolution levels of 64, 128, 256 channels (``unet_widths``); each level has two
  ``conv 3×3 (same padding) → ReLU → BN`` layers; upsampling by a 2 × 2 transposed
  convolution with stride 2 that halves the channels; skip connections concatenate the encoder
  features of the same level; the head is a linear ``conv 1×1`` to the M maps.
- ``conv → ReLU → BN`` order, Xavier-uniform weights, zero biases and TensorFlow batch-norm
  defaults, as in the MIDL 2019 authors' re-implementation framework.
- Input size: any. Height and width are zero-padded at the bottom and right to the next
  multiple of 4 (the two poolings) inside ``forward`` and the output is cropped back, so the
  output has the input's size (kind ``"slice"``, margin 0, ``size_multiple`` 4). Feed it the
  whole 350 × 350 slice (padded to 352 internally).

Learnable parameters for T = 175, M = 3, width 1: 2,016,291 (see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvReluBN, MRFNet, init_weights, scaled

FE_WIDTHS = (256, 128, 64, 32)
UNET_WIDTHS = (64, 128, 256)  # three levels = two poolings


def _double_conv(c_in: int, c_out: int, batchnorm: bool = True) -> nn.Sequential:
    return nn.Sequential(ConvReluBN(c_in, c_out, 3, padding=1, batchnorm=batchnorm),
                         ConvReluBN(c_out, c_out, 3, padding=1, batchnorm=batchnorm))


class Fang2018(MRFNet):
    """Per-pixel feature extraction, then a two-pooling U-Net: (B, 2T, y, x) → (B, M, y, x).

    Parameters
    ----------
    frames, maps
        T temporal frames (input channels 2T) and M output maps.
    width
        Multiplier of every channel width (feature extraction and U-Net).
    fe_widths
        Output widths of the fully connected feature-extraction layers (before ``width``).
    unet_widths
        Channels of the U-Net levels, finest first; ``len − 1`` poolings (default two).
    batchnorm
        Batch normalization after every ReLU (default); ``False`` drops it, the batch-norm
        ablation of docs/study/first_scheme.md.
    """

    name = "fang2018"
    kind = "slice"
    cpu_channels_last = True  # 1.26× / 1.09× on one thread at widths 1 / 0.25 (benchmarks/bench_layout.py)

    def __init__(
        self,
        frames: int = 175,
        maps: int = 3,
        width: float = 1.0,
        fe_widths: Sequence[int] = FE_WIDTHS,
        unet_widths: Sequence[int] = UNET_WIDTHS,
        batchnorm: bool = True,
    ) -> None:
        super().__init__(frames, maps)
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        fe_widths = [int(n) for n in fe_widths]
        unet_widths = [int(n) for n in unet_widths]
        if not fe_widths or len(unet_widths) < 2:
            raise ValueError("fe_widths needs >= 1 layer and unet_widths >= 2 levels")

        fe: list[nn.Module] = []
        c = self.in_channels
        for n in fe_widths:
            fe.append(ConvReluBN(c, scaled(n, width), 1, batchnorm=batchnorm))
            c = scaled(n, width)
        self.feature_extraction = nn.Sequential(*fe)

        levels = [scaled(n, width) for n in unet_widths]
        self.encoder = nn.ModuleList()
        for n in levels:
            self.encoder.append(_double_conv(c, n, batchnorm))
            c = n
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for n in reversed(levels[:-1]):
            self.upsample.append(nn.ConvTranspose2d(c, n, 2, stride=2))
            self.decoder.append(_double_conv(2 * n, n, batchnorm))  # concatenated with the skip features
            c = n
        self.head = nn.Conv2d(c, self.maps, 1)  # linear output
        init_weights(self)

        self.size_multiple = 2 ** (len(levels) - 1)
        self.spec = {
            "name": self.name,
            "frames": self.frames,
            "maps": self.maps,
            "width": float(width),
            "fe_widths": fe_widths,
            "unet_widths": unet_widths,
            "batchnorm": bool(batchnorm),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2T, y, x) real → (B, M, y, x); pads to a multiple of 4 internally."""
        self._check_input(x)
        h, w = x.shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))  # zeros, like the image border elsewhere
        x = self.feature_extraction(x)
        skips = []
        for i, level in enumerate(self.encoder):
            if i:
                x = self.pool(x)
            x = level(x)
            skips.append(x)
        skips.pop()  # the coarsest level feeds the decoder directly
        for up, level in zip(self.upsample, self.decoder, strict=True):
            x = level(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[..., :h, :w]
