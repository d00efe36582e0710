"""Radial golden-angle acquisition: k-space simulation, noise and view-sharing reconstruction.

The MRF-WF acquisition (Balsiger et al., MIDL 2019, sect. 2.1): 1400 radial golden-angle spokes,
frames of 8 spokes, a 350 × 350 mm field of view at 1 mm, frames reconstructed by view sharing
with a 55-spoke KWIC filter. From tissue maps to an image series::

    from mrfrecon import Sequence, simulate
    from mrfrecon.acquisition import (radial_trajectory, lowrank_series, scatter_coefficients,
                                      simulate_kspace, kwic_reconstruct)

    seq = Sequence.mrf_wf()
    signals = simulate(seq, t1h2o[mask], ff=ff[mask], b1=b1[mask], per_spoke=True)  # (n, 1400)
    basis, coeffs = lowrank_series(signals)                # (1400, K), (n, K); ~1 % error
    traj = radial_trajectory(seq, matrix=350)              # (1400, 700, 2) radians/pixel
    ksp = simulate_kspace(scatter_coefficients(coeffs, mask), basis, traj, snr=200, rng=0)
    series = kwic_reconstruct(ksp, traj, seq, window=55)   # (slices, 175, 350, 350) complex64

Modules: :mod:`.trajectory` (spoke geometry), :mod:`.nufft` (finufft with reused plans),
:mod:`.lowrank` (temporal subspace), :mod:`.kspace` (forward model, noise and the SNR
definition), :mod:`.coils` (sensitivities, combination), :mod:`.kwic` (view sharing),
:mod:`.cstv` (KWIC + compressed sensing with total variation in a temporal subspace, the
paper's reconstruction: ``cstv_reconstruct(ksp, traj, seq, start=series)``).
"""

from __future__ import annotations

from .coils import coil_sensitivities, combine_coils, estimate_sensitivities
from .kspace import add_noise, kspace_centre, noise_std_for_snr, simulate_kspace
from .kwic import KwicWeights, image_noise_std, kwic_reconstruct, kwic_weights
from .lowrank import expand_series, lowrank_series, scatter_coefficients
from .nufft import Nufft2D
from .trajectory import kspace_radius, radial_trajectory, spoke_angles

__all__ = [
    "KwicWeights",
    "Nufft2D",
    "add_noise",
    "coil_sensitivities",
    "combine_coils",
    "estimate_sensitivities",
    "expand_series",
    "image_noise_std",
    "kspace_centre",
    "kspace_radius",
    "kwic_reconstruct",
    "kwic_weights",
    "lowrank_series",
    "noise_std_for_snr",
    "radial_trajectory",
    "scatter_coefficients",
    "simulate_kspace",
    "spoke_angles",
]
