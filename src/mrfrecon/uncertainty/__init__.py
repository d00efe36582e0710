"""Uncertainty beside every map: matching's Cramér–Rao SD, network ensembles, data consistency, calibration.

Layering: this package uses matching, the signal model and checkpoints; inference uses it, not
the reverse. See docs/UNCERTAINTY.md for the measurements behind every default.
"""

from .fisher import (CONTRADICTED, NOT_ESTIMATED, SD_MAPS, UNDETERMINED, crb_sd, noise_from_background,
                     noise_from_residual, pool_noise, prior_sd, temporal_rank)

__all__ = ["CONTRADICTED", "NOT_ESTIMATED", "SD_MAPS", "UNDETERMINED", "crb_sd", "noise_from_background",
           "noise_from_residual", "pool_noise", "prior_sd", "temporal_rank"]
