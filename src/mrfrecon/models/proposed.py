"""The proposed CNN of Balsiger et al., MIDL 2019.

F. Balsiger, O. Scheidegger, P. G. Carlier, B. Marty, M. Reyes. "On the Spatial and Temporal
Influence for the Reconstruction of Magnetic Resonance Fingerprinting." Proceedings of the 2nd
International Conference on Medical Imaging with Deep Learning (MIDL), PMLR 102:27–38, 2019.
Architecture facts from the paper (sections 2.2–3.2) and the authors' public TensorFlow code
(github.com/fabianbalsiger/mrf-reconstruction-midl2019, ``mrf/model/midl.py``); where the two
differ we follow the code, which produced the paper's numbers.

Five stages, each a temporal dense block (four ``conv 1×1 → ReLU → BN`` layers with growth
rate n) and a spatial block (``conv 3×3 valid → ReLU → BN`` with n channels), n = 192, 160,
128, 96, 64; then a linear ``conv 1×1`` to the M maps followed by batch normalization (the
code applies its BN to the head as well). 5,659,337 learnable parameters for T = 175, M = 3.
A 42 × 42 input patch gives a 32 × 32 output (receptive field 11 × 11, margin 5).
"""

from __future__ import annotations

import torch
from torch import nn

from .folded import folded_forward, plan_for
from .layers import ConvReluBN, MRFNet, TemporalDenseBlock, batch_norm, init_weights, scaled

# Growth rates of the five stages. The paper's text says 92 for the fourth; the authors' code
# (and hence the paper's results and its 5,659,337 parameters) uses 96.
GROWTH_RATES = (192, 160, 128, 96, 64)
LAYERS_PER_DENSE_BLOCK = 4
# Output patch of the paper (limited by GPU memory); the input is 32 + rf − 1.
OUTPUT_PATCH = 32
RECEPTIVE_FIELDS = tuple(range(1, 22, 2))  # 1, 3, …, 21 (paper section 3.2)


class ProposedCNN(MRFNet):
    """Spatio-temporal patch CNN (MIDL 2019): (B, 2T, y, x) → (B, M, y − rf + 1, x − rf + 1).

    Parameters
    ----------
    frames, maps
        T temporal frames (input channels 2T) and M output maps.
    receptive_field
        Spatial receptive field rf ∈ {1, 3, …, 21}, default 11 (the paper's network). Below 11,
        only the *first* (rf − 1)/2 spatial blocks keep their 3 × 3 kernels and the later ones
        use 1 × 1 kernels (the paper says some blocks become 1 × 1 without saying which; the
        authors' code takes a list of kernel sizes). Above 11, (rf − 11)/2 extra
        ``conv 3×3 (64 channels) → ReLU → BN`` layers are inserted before the head.
    width
        Multiplier of every channel width (growth rates, spatial blocks, extra layers), for the
        reduced-width demo preset; 1.0 is the paper's network.
    head_batchnorm
        Batch normalization after the linear 1 × 1 head, as in the authors' code (the paper's
        text describes a plain linear output).
    batchnorm
        Batch normalization after every hidden ReLU (default, the authors' layers); ``False``
        makes every layer ``conv → ReLU`` — an ablation (docs/study/first_scheme.md), not the paper's network.
    """

    name = "proposed"
    kind = "patch"
    # channels-last inference: neutral (0.98–1.03×) once the dense blocks skip their concatenations
    # (benchmarks/bench_layout.py, BENCHMARKS.md), so left off

    def __init__(
        self,
        frames: int = 175,
        maps: int = 3,
        receptive_field: int = 11,
        width: float = 1.0,
        head_batchnorm: bool = True,
        batchnorm: bool = True,
    ) -> None:
        super().__init__(frames, maps)
        if receptive_field not in RECEPTIVE_FIELDS:
            raise ValueError(f"receptive_field must be one of {RECEPTIVE_FIELDS}, got {receptive_field!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        rf = int(receptive_field)
        n_3x3 = min(len(GROWTH_RATES), (rf - 1) // 2)
        n_extra = max(0, (rf - 11) // 2)

        stages: list[nn.Module] = []
        c = self.in_channels
        for i, n in enumerate(GROWTH_RATES):
            block = TemporalDenseBlock(c, scaled(n, width), LAYERS_PER_DENSE_BLOCK, batchnorm=batchnorm)
            k = 3 if i < n_3x3 else 1
            stages += [block, ConvReluBN(block.out_channels, scaled(n, width), k, batchnorm=batchnorm)]
            c = scaled(n, width)
        for _ in range(n_extra):
            stages.append(ConvReluBN(c, scaled(GROWTH_RATES[-1], width), 3, batchnorm=batchnorm))
            c = scaled(GROWTH_RATES[-1], width)
        self.features = nn.Sequential(*stages)
        head: list[nn.Module] = [nn.Conv2d(c, self.maps, 1)]  # linear activation
        if head_batchnorm:
            head.append(batch_norm(self.maps))
        self.head = nn.Sequential(*head)
        init_weights(self)

        self.receptive_field = rf
        self.margin = (rf - 1) // 2
        self.output_size = OUTPUT_PATCH
        self.input_size = OUTPUT_PATCH + rf - 1
        self.spec = {
            "name": self.name,
            "frames": self.frames,
            "maps": self.maps,
            "receptive_field": rf,
            "width": float(width),
            "head_batchnorm": bool(head_batchnorm),
            "batchnorm": bool(batchnorm),
        }

    #: CPU inference (eval mode, no gradients) through :mod:`mrfrecon.models.folded`: batch
    #: norms folded into the convolutions after them. Benchmarks switch it off for a baseline.
    fold_inference: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2T, y, x) real → (B, M, y − 2·margin, x − 2·margin)."""
        self._check_input(x)
        if self.fold_inference and not self.training and not torch.is_grad_enabled() and x.device.type == "cpu":
            return folded_forward(plan_for(self, x.device, x.dtype), x)
        return self.head(self.features(x))
