"""SD maps out: ``sd/<map>`` and ``flags/<map>`` beside ``maps/<map>`` in ``<stem>_maps.h5``, and NIfTI.

HDF5: ``sd/<map>`` float32 in the map's unit (ms, fraction, a.u., Hz), ``flags/<map>`` uint8
(bits: 1 undetermined — the data barely constrain the parameter and the SD is about that of a
uniform guess over the dictionary's range; 2 contradicted — the measured series contradicts a
network's maps; 4 not estimated), ``sd/noise`` (the noise SD per frame used, the series' unit);
for a network ensemble with a dictionary also ``consistency/residual_net``, ``consistency/residual_match``
(relative residuals of the data-consistency fit) and ``consistency/dc_statistic``.
Outside the foreground every SD is 0, as the maps are. No SD is ever NaN or infinite: where the
bound would be infinite it is the uniform guess's, flagged.

NIfTI (the BIDS naming choice): an SD map is named like its map with ``SD`` appended to the
``desc-`` label — ``desc-water_T1map`` → ``desc-waterSD_T1map``, ``desc-mrf_TB1map`` →
``desc-mrfSD_TB1map``, ``FFmap`` → ``desc-SD_FFmap`` — in the same folder and in the map's BIDS
unit (s, %, ...). BIDS 1.11 has no entity for a statistic of a derivative; ``desc-`` is the
entity for "a derivative that differs from another in a way no other entity captures" and keeps
every name valid (``SD`` is alphanumeric, so the label stays one token). The sidecar holds
``Units``, a ``Description``, the method, the noise estimate and the calibration scale. Written:
T1H2O, FF, B1 and T1fat; the Δf and PD SDs stay in the HDF5 file (a BIDS ``fieldmap`` needs a
``magnitude`` partner of the same name, which an SD map has no use for).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MrfreconError
from ..io.bids import output_path
from ..io.scan import MAP_UNITS

__all__ = ["NIFTI_SD_MAPS", "export_sd_maps", "load_sd", "planned_sd_outputs", "sd_datasets", "sd_name"]

#: maps whose SD is written as NIfTI
NIFTI_SD_MAPS = ("t1h2o", "ff", "b1", "t1fat")


def sd_datasets(sd: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """HDF5 datasets of an SD result: ``sd_<map>`` → ``sd/<map>``, ``flag_<map>`` → ``flags/<map>``,
    ``sigma`` → ``sd/noise``; each with its unit. Refuses a non-finite SD (never written)."""
    out: dict[str, tuple[np.ndarray, str]] = {}
    for k, v in sd.items():
        a = np.asarray(v)
        if k.startswith("sd_"):
            if not np.isfinite(a).all():
                raise MrfreconError(f"{k}: non-finite standard deviations are never written")  # a bug upstream
            out[f"sd/{k[3:]}"] = (a.astype(np.float32), MAP_UNITS.get(k[3:], ""))
        elif k.startswith("flag_"):
            out[f"flags/{k[5:]}"] = (a.astype(np.uint8), "bits: 1 undetermined, 2 contradicted, 4 not estimated")
        elif k == "sigma":
            out["sd/noise"] = (a.astype(np.float32), "series units, per frame")
        elif k in ("residual_net", "residual_match", "dc_statistic"):  # the data-consistency check of a network
            out[f"consistency/{k}"] = (a.astype(np.float32), "fraction" if k.startswith("residual") else "")
    return out


def sd_name(key: str, stem: str, *, bids: bool) -> Path:
    """The file (without extension) of map ``key``'s SD: its map's name with ``SD`` appended to the
    ``desc-`` label (``desc-SD`` added where the map has none)."""
    base = output_path(key, stem, bids=bids)
    head, _, suffix = base.name.rpartition("_")
    parts = head.split("_")
    if parts and parts[-1].startswith("desc-"):
        parts[-1] += "SD"
    else:
        parts.append("desc-SD")
    return base.with_name("_".join([*parts, suffix]))


def planned_sd_outputs(out_dir: str | os.PathLike[str], stem: str, maps: Sequence[str], *, bids: bool = False) -> list[Path]:
    """The files :func:`export_sd_maps` writes (to check them before any work)."""
    out = Path(out_dir)
    paths = []
    for k in maps:
        if k in NIFTI_SD_MAPS:
            base = out / sd_name(k, stem, bids=bids)
            paths += [Path(f"{base}.nii.gz"), Path(f"{base}.json")]
    return paths


def export_sd_maps(sd: Mapping[str, np.ndarray], out_dir: str | os.PathLike[str], stem: str, affine: np.ndarray, *,
                   method: str, sidecar: Mapping[str, Any] | None = None, bids: bool = False) -> list[Path]:
    """Write the SD maps ``sd_<map> (slices, y, x)`` (mrfrecon's units) as NIfTI with sidecars.

    Parameters
    ----------
    sd
        ``sd_<map>`` arrays (others are ignored); only :data:`NIFTI_SD_MAPS` are written.
    out_dir, stem, affine, bids
        As for :func:`mrfrecon.io.nifti.export_maps` (the maps' folder, input stem, RAS+ affine).
    method
        What the SD is (goes into the sidecar's ``Description`` and ``EstimationAlgorithm``).
    sidecar
        Extra fields (provenance, calibration, noise estimate).

    Returns
    -------
    list of Path
        The files written.
    """
    from ..io.nifti import BIDS_MAPS, _affine, sidecar_sources, write_nifti

    aff = _affine(affine)
    written: list[Path] = []
    base_side = sidecar_sources(sidecar, out_dir, bids=bids)  # Sources as URIs, as the maps' sidecars have them
    for k in NIFTI_SD_MAPS:
        if f"sd_{k}" not in sd:
            continue
        v = np.asarray(sd[f"sd_{k}"], np.float32)
        if not np.isfinite(v).all():
            raise MrfreconError(f"sd_{k}: non-finite standard deviations are never written")
        _, units, scale, desc = BIDS_MAPS[k]
        side = dict(base_side)
        doc = {"Units": units, "Description": f"Standard deviation (uncertainty) of: {desc}; {method}",
               "SkullStripped": False, "mrfrecon_map": f"sd_{k}", "mrfrecon_scale": scale, **side,
               "EstimationAlgorithm": method, "MapEstimationAlgorithm": side.get("EstimationAlgorithm")}
        written += write_nifti(Path(out_dir) / sd_name(k, stem, bids=bids), v * np.float32(scale), aff, doc)
    return written


def load_sd(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The ``sd/*`` and ``flags/*`` datasets of a ``*_maps.h5`` file as ``sd_<map>``, ``flag_<map>``
    and ``sigma`` (empty when it has none)."""
    from ..io.h5 import open_h5, read_dataset

    out: dict[str, np.ndarray] = {}
    with open_h5(Path(path), "maps") as f:
        for group, prefix in (("sd", "sd_"), ("flags", "flag_")):
            if group in f:
                for k in f[group]:
                    name = "sigma" if (group, k) == ("sd", "noise") else f"{prefix}{k}"
                    out[name] = read_dataset(f, f"{group}/{k}", ndim=3)
    return out
