"""mrfrecon: quantitative maps (water T1, fat fraction, B1) from MR fingerprinting.

Balsiger et al., MIDL 2019, reimplemented: MRF-WF image series → T1H2O (ms), FF (0–1) and B1
(a.u.) maps by two-component dictionary matching or by convolutional networks, with simulated
cohorts that carry ground truth.

The public API (``from mrfrecon import ...``)::

    Sequence        the MRF-WF schedule: per-spoke flip angle (deg), TE and TR (ms); JSON I/O
    simulate        fingerprints of tissue (t1h2o ms, t1fat ms, b1, df Hz, ff, pd) → (..., frames) complex64
    Dictionary      water and fat atoms on a parameter grid with a temporal SVD basis; HDF5 I/O
    match           two-component dictionary matching of fingerprints (..., frames) → maps of shape (...)
    acquire         tissue maps (slices, y, x) → radial k-space → KWIC frames (slices, frames, y, x)
    Scan            one scan: series (slices, frames, y, x), foreground, maps, labels, RAS+ affine
    load_scan, save_scan   the scan file (HDF5)
    read_scan       any supported input → a Scan: mrfrecon scans, NIfTI, NumPy, MATLAB, DICOM
    export_maps     maps → NIfTI with a RAS+ affine, BIDS-style names and JSON sidecars
    predict_scan    maps of a Scan from a trained checkpoint
    evaluate        NRMSE, PSNR, SSIM and R² (named ROI set) of predictions against references
    MrfreconError   the error every bad input raises (the command line prints it as one line)

Example (runs as written; the README's)::

    from mrfrecon import Sequence, simulate, Dictionary, match
    seq = Sequence.mrf_wf(echo_spacing_ms=1.11)
    fp = simulate(seq, t1h2o=1200.0, t1fat=350.0, b1=0.8, df=30.0, ff=0.2)   # (175,) complex64
    maps = match(fp, Dictionary.build(seq))                                   # maps["t1h2o"] == 1200.0

The command line is ``mrfrecon`` (``mrfrecon --help``); modules: :mod:`mrfrecon.io` (file
formats and importers), :mod:`mrfrecon.cli` (commands), :mod:`mrfrecon.experiments`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import MrfreconError
from .physics import simulate
from .sequence import Sequence

__all__ = ["Dictionary", "MrfreconError", "Scan", "Sequence", "__version__", "acquire", "evaluate", "export_maps",
           "load_scan", "match", "predict_scan", "read_scan", "save_scan", "simulate"]

# lazy: importing the package stays cheap for the CLI's --help
_LAZY = {"Dictionary": "dictionary", "match": "matching", "acquire": "cohort", "Scan": "io.scan",
         "load_scan": "io.scan", "save_scan": "io.scan", "read_scan": "io.readers", "export_maps": "io.nifti",
         "predict_scan": "inference", "evaluate": "evaluation"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mrfrecon' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
