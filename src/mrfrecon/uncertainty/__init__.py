"""Uncertainty beside every map: matching's Cramér–Rao SD, network ensembles, data consistency, calibration.

::

    from mrfrecon.uncertainty import match_with_uncertainty, scan_match_uncertainty, network_uncertainty
    maps = match_with_uncertainty(fp, dictionary)     # match's maps + sd_<map>, flag_<map>, sigma

Modules: :mod:`.fisher` (the bound, the noise level), :mod:`.matched` (matching with SDs),
:mod:`.ensemble` (ensembles, the data-consistency check), :mod:`.calibration` (coverage,
Spearman, reliability, scales), :mod:`.output` (``sd/<map>`` datasets and NIfTI SD maps).
Layering: this package uses matching and the signal model; inference uses it, not the reverse.
See docs/UNCERTAINTY.md for the measurements behind every default.
"""

from __future__ import annotations

from typing import Any

from .fisher import (CONTRADICTED, NOT_ESTIMATED, SD_MAPS, UNDETERMINED, crb_sd, noise_from_background,
                     noise_from_residual, pool_noise, prior_sd, temporal_rank)

__all__ = ["CONTRADICTED", "NOT_ESTIMATED", "SD_MAPS", "UNDETERMINED", "Calibration", "crb_sd", "match_uncertainty",
           "match_with_uncertainty", "network_uncertainty", "noise_from_background", "noise_from_residual",
           "pool_noise", "prior_sd", "scan_match_uncertainty", "temporal_rank"]

_LAZY = {"match_uncertainty": "matched", "match_with_uncertainty": "matched", "scan_match_uncertainty": "matched",
         "network_uncertainty": "ensemble", "Calibration": "calibration"}


def __getattr__(name: str) -> Any:  # lazy: the matching code loads only when it is used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mrfrecon.uncertainty' has no attribute {name!r}")
