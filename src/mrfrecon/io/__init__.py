"""File formats of mrfrecon: scans, cohorts, maps out.

Modules (imports run one way: each imports only :mod:`mrfrecon.atomic`, :mod:`mrfrecon.errors`,
:mod:`mrfrecon.sequence` and the modules listed before it)::

    h5       open_h5, read_dataset: read HDF5 with errors that name the file and dataset
    scan     Scan, save_scan, load_scan: the scan file (series, masks, maps, labels, sequence)
    cohort   CohortIndex, split_counts: a folder of scans and its cohort.json with the split
    geometry RAS+ affines and axis codes (the simulated scans' orientation)
    bids     BIDS derivatives: names from the input's entities, anat/ and fmap/ places,
             dataset_description.json, Sources as BIDS URIs (match and predict alike)
    nifti    export_maps: maps out as NIfTI with BIDS names and JSON sidecars
    series   NIfTI / NumPy / MATLAB image series in (complex, magnitude + phase, real + imaginary)
    dicom    DICOM magnitude + phase images in
    ismrmrd  ISMRMRD radial raw data in (coil sensitivities, KWIC frames)
    foreground  a foreground mask estimated from a series
    readers  read_scan: any of these → a validated Scan (behind import, predict, match)

The atomic writes (:func:`atomic_path`, :func:`atomic_write_text`, :func:`atomic_h5`) live in the
ground-floor module :mod:`mrfrecon.atomic`, so that :mod:`mrfrecon.sequence` can use them without
importing this package (whose scan format imports the sequence); they are re-exported here.
"""

from __future__ import annotations

from ..atomic import atomic_h5, atomic_path, atomic_write_text
from .cohort import COHORT_FORMAT, INDEX_NAME, SPLITS, CohortIndex, split_counts
from .h5 import open_h5, read_dataset
from .nifti import export_maps
from .readers import KINDS, read_scan
from .scan import MAP_NAMES, MAP_UNITS, SCAN_FORMAT, T1H2O_FF_LIMIT, Scan, load_scan, save_scan

__all__ = ["COHORT_FORMAT", "INDEX_NAME", "MAP_NAMES", "MAP_UNITS", "SCAN_FORMAT", "SPLITS", "T1H2O_FF_LIMIT",
           "CohortIndex", "Scan", "atomic_h5", "atomic_path", "atomic_write_text", "KINDS", "export_maps", "read_scan", "load_scan",
           "open_h5", "read_dataset", "save_scan", "split_counts"]
