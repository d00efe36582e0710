"""BIDS derivatives: where each map goes, what it is called, and the dataset files around it.

One place for the layout that ``match`` and ``predict`` (and :func:`mrfrecon.io.nifti.export_maps`)
share. Rules from the BIDS specification 1.11.1 (the version of the schema that the BIDS
validator 3.0.2 applies; the derivative file rules are those of ``src/schema/rules/files/deriv``):

* **Names** (Derivatives → Introduction, "File naming conventions"): ``<source_entities>
  [_desc-<label>]_<suffix>``, where the source entities are the input's name without its suffix
  and without entities "no longer relevant" — here ``part-`` (magnitude and phase were combined)
  and whatever the target suffix's rule does not list (a ``fieldmap`` carries no ``task``,
  ``ce`` or ``rec``). A derivative MUST NOT bear a name that a raw file could have, hence a
  ``desc-`` on every map whose suffix is also a raw suffix (``T1map``, ``TB1map``, ``PDmap``,
  ``fieldmap``, ``magnitude``).
* **Places**: ``sub-<label>/[ses-<label>/]anat/`` for the anatomical parametric maps
  (``T1map``, ``PDmap``), masks and segmentations; ``fmap/`` for ``TB1map`` and for the B0
  ``fieldmap`` (in Hz), which the validator accepts only beside a ``magnitude`` image of the same
  entities (rule ``FIELDMAP_WITHOUT_MAGNITUDE_FILE``): the PD map, the amplitude of the same fit.
* **Fat fraction**: BIDS 1.11 has no fat-fraction suffix. The fraction maps it has mean other
  quantities (``MWFmap`` myelin water fraction, ``MTVmap`` macromolecular tissue volume), and a
  ``label-fat_probseg`` would file a quantitative MR biomarker as a tissue segmentation, in 0–1
  rather than the percent of the other fraction maps. The derivatives specification RECOMMENDS
  names "consistent with BIDS conventions" for files not yet standardized, so FF is
  ``<source_entities>_FFmap`` in ``anat/`` (the qMRI ``<quantity>map`` pattern, percent as
  ``MWFmap``), and ``.bidsignore`` names ``*_FFmap.*`` so that validators skip exactly this file.
* **Dataset files** (Modality agnostic files → "Derived dataset and pipeline description"):
  ``dataset_description.json`` with ``Name``, ``BIDSVersion``, ``DatasetType: "derivative"``,
  ``GeneratedBy`` and ``SourceDatasets``; ``DatasetLinks`` names the source datasets, so that
  each sidecar's ``Sources`` are BIDS URIs ``bids:<dataset>:<path>`` (Common principles →
  "BIDS URI"; the qMRI appendix's ``BasedOn`` is DEPRECATED in favour of ``Sources``). Links are
  paths relative to the derivative dataset (the specification resolves a link without a scheme
  against the dataset root), so no absolute local path is written.
* **Not BIDS**: the HDF5 maps (``*_maps.h5``) are mrfrecon's own format; they live in ``--out``,
  and ``.bidsignore`` lists them for the case that ``--out`` is the derivative folder itself.

Inputs without BIDS entities (``scan.h5``, ``series.npy``) keep the flat layout: the same names,
prefixed by the input's stem, in one folder, without a dataset description.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_write_text
from ..errors import MrfreconError

__all__ = ["BIDS_VERSION", "BIDSIGNORE", "DESCRIPTION", "ENTITY_ORDER", "OUTPUTS", "PIPELINE", "BidsName",
           "DerivativeDataset", "OutputKind", "derivatives_root", "file_uris", "find_dataset_root",
           "output_path", "parse_bids_name", "plan_derivatives"]

#: the BIDS version these rules and the written ``dataset_description.json`` follow
BIDS_VERSION = "1.11.1"
#: the pipeline name: ``GeneratedBy[].Name`` and the default folder ``<dataset>/derivatives/mrfrecon``
PIPELINE = "mrfrecon"
DESCRIPTION = "dataset_description.json"
#: what validators must skip in an mrfrecon derivative dataset (see the module docstring)
BIDSIGNORE = ("*_maps.h5", "*_FFmap.*")

#: entity order of BIDS file names (schema ``rules/entities.yaml``)
ENTITY_ORDER = ("sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc",
                "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space",
                "split", "recording", "chunk", "atlas", "seg", "scale", "res", "den", "label", "desc")
_INDEX = frozenset({"run", "echo", "flip", "inv", "split", "chunk"})  # values are numbers, the rest labels
_LABEL_RE = re.compile(r"[0-9a-zA-Z]+")
_INDEX_RE = re.compile(r"[0-9]+")

# source entities each target keeps (schema rules/files/deriv/imaging.yaml, BIDS 1.11.1): the
# anatomical parametric maps, masks and segmentations take task/ce/rec; TB1map not task; the B0
# fieldmap and its magnitude none of the three. Entities outside these sets (echo, flip, inv, dir,
# part, …) describe raw images that the maps no longer have.
_ANAT = frozenset({"sub", "ses", "task", "acq", "ce", "rec", "run", "chunk"})
_TB1 = _ANAT - {"task"}
_B0 = _ANAT - {"task", "ce", "rec"}


@dataclass(frozen=True)
class OutputKind:
    """One kind of output file: BIDS datatype folder, ``desc-`` label, suffix, carried entities."""

    datatype: str
    desc: str | None
    suffix: str
    carries: frozenset[str]

    def part(self) -> str:
        """The name after the source entities: ``[desc-<label>_]<suffix>``."""
        return f"desc-{self.desc}_{self.suffix}" if self.desc else self.suffix


#: mrfrecon map (and extra file) → where and under what name it goes
OUTPUTS: dict[str, OutputKind] = {
    "t1h2o": OutputKind("anat", "water", "T1map", _ANAT),
    "t1fat": OutputKind("anat", "fat", "T1map", _ANAT),
    "ff": OutputKind("anat", None, "FFmap", _ANAT),  # not a BIDS suffix: listed in .bidsignore
    "pd": OutputKind("anat", "mrf", "PDmap", _ANAT),
    "b1": OutputKind("fmap", "mrf", "TB1map", _TB1),
    "df": OutputKind("fmap", "mrf", "fieldmap", _B0),
    "magnitude": OutputKind("fmap", "mrf", "magnitude", _B0),  # the fieldmap's required partner (PD)
    "mask": OutputKind("anat", "foreground", "mask", _ANAT),
    "dseg": OutputKind("anat", None, "dseg", _ANAT),
}


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: entities in file order and the suffix (``None`` when absent)."""

    entities: dict[str, str]
    suffix: str | None


def _parse(name: str) -> tuple[BidsName | None, str]:
    """(parsed name, '') or (None, why it is not a BIDS name)."""
    stem = re.sub(r"(\.[A-Za-z0-9]+)+$", "", Path(name).name)  # the extension (.nii.gz, .h5, …)
    tokens = stem.split("_")
    if not tokens[0].startswith("sub-"):
        return None, "does not start with sub-<label>"
    suffix = None
    if "-" not in tokens[-1]:
        suffix = tokens.pop()
        if not _LABEL_RE.fullmatch(suffix):
            return None, f"suffix {suffix!r} is not alphanumeric"
    entities: dict[str, str] = {}
    for tok in tokens:
        key, sep, value = tok.partition("-")
        if not sep or key not in ENTITY_ORDER:
            return None, f"{tok!r} is not a BIDS entity (key-value with a known key)"
        if key in entities:
            return None, f"entity {key} appears twice"
        if not (_INDEX_RE if key in _INDEX else _LABEL_RE).fullmatch(value):
            return None, f"{tok!r}: {key} takes {'a number' if key in _INDEX else 'letters and digits'}"
        entities[key] = value
    return BidsName(entities, suffix), ""


def parse_bids_name(name: str | os.PathLike[str]) -> BidsName | None:
    """The entities and suffix of a BIDS-named file or stem, or ``None`` for other names.

    ``sub-01_ses-2_part-mag_MRF.nii.gz`` → ``{sub: 01, ses: 2, part: mag}``, suffix ``MRF``;
    ``sub-000`` (a simulated scan) → ``{sub: 000}``, no suffix. Keys must be BIDS entities
    (specification appendix "Entities"), labels alphanumeric, indices (run, echo, chunk, …) digits.
    """
    return _parse(os.fspath(name))[0]


def _carried(entities: Mapping[str, str], kind: OutputKind) -> str:
    return "_".join(f"{k}-{entities[k]}" for k in ENTITY_ORDER if k in entities and k in kind.carries)


def output_path(key: str, stem: str, *, bids: bool) -> Path:
    """The file (without extension) that output ``key`` (a key of :data:`OUTPUTS`) of the input
    named ``stem`` gets, relative to the output folder.

    With ``bids``, ``stem`` must carry BIDS entities and the path is ``sub-<label>/[ses-<label>/]
    <datatype>/<entities>_[desc-<label>_]<suffix>``; otherwise the same name in one folder: built
    from the entities when ``stem`` has them, else ``<stem>_[desc-<label>_]<suffix>``.
    """
    kind = OUTPUTS[key]
    parsed, why = _parse(stem)
    if parsed is None:
        if bids:
            raise MrfreconError(f"{stem}: not a BIDS name ({why}); a BIDS derivative dataset needs inputs named "
                                f"sub-<label>[_ses-<label>][_acq-<label>][_run-<index>]…_<suffix>")
        return Path(f"{stem}_{kind.part()}")
    name = f"{_carried(parsed.entities, kind)}_{kind.part()}"
    if not bids:
        return Path(name)
    folder = Path(f"sub-{parsed.entities['sub']}")
    if "ses" in parsed.entities:
        folder /= f"ses-{parsed.entities['ses']}"
    return folder / kind.datatype / name


def find_dataset_root(path: str | os.PathLike[str]) -> Path | None:
    """The nearest folder at or above ``path`` that holds a ``dataset_description.json`` (the
    root of the BIDS dataset it lies in; Common principles → "BIDS URI"), or ``None``."""
    p = Path(os.path.abspath(path))
    for folder in (p, *p.parents):
        if (folder / DESCRIPTION).is_file():
            return folder
    return None


def _read_description(root: Path) -> dict[str, Any]:
    f = root / DESCRIPTION
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MrfreconError(f"{f}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict):
        raise MrfreconError(f"{f}: expected a JSON object, found {type(doc).__name__}")
    return doc


def _is_ours(doc: Mapping[str, Any]) -> bool:
    gen = doc.get("GeneratedBy")
    return doc.get("DatasetType") == "derivative" and isinstance(gen, list) and any(
        isinstance(g, dict) and g.get("Name") == PIPELINE for g in gen)


def derivatives_root(out_dir: str | os.PathLike[str], explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The derivative dataset to write: ``explicit`` when given; else, when ``out_dir`` lies inside
    a BIDS dataset, that dataset's ``derivatives/mrfrecon`` (or the dataset itself when it is
    already an mrfrecon derivative); else ``None`` (the flat layout)."""
    if explicit is not None:
        return Path(explicit)
    root = find_dataset_root(out_dir)
    if root is None:
        return None
    return root if _is_ours(_read_description(root)) else root / "derivatives" / PIPELINE


def plan_derivatives(out_dir: str | os.PathLike[str], stems: Mapping[str, str],
                     explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Where a command's NIfTI maps go: the derivative dataset root, or ``None`` for the flat
    layout in ``out_dir``.

    ``stems``: input (as the user named it) → its stem. With ``explicit`` (``--bids-derivatives``)
    every input must have a BIDS name (else :class:`MrfreconError` naming it). Without, the BIDS
    layout is used when ``out_dir`` lies inside a BIDS dataset and every input has a BIDS name; a
    non-BIDS input there keeps the flat layout. A folder that holds a raw BIDS dataset is refused
    as a derivative root.
    """
    root = derivatives_root(out_dir, explicit)
    if root is None:
        return None
    for shown, stem in stems.items():
        parsed, why = _parse(stem)
        if parsed is None:
            if explicit is None:
                return None
            raise MrfreconError(f"{shown}: not a BIDS name ({why}); --bids-derivatives needs inputs named "
                                f"sub-<label>[_ses-<label>][_acq-<label>][_run-<index>]…_<suffix>")
    DerivativeDataset(root)  # refuses a raw dataset or an unreadable description before any work
    return root


def _link_target(root: Path, value: str) -> Path | None:
    """The local folder a ``DatasetLinks`` value names (relative to ``root``, or a file: URI)."""
    if value.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(os.path.abspath(unquote(urlparse(value).path)))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value):  # doi:, https:, …: not a local folder
        return None
    return Path(os.path.abspath(root / value))


class DerivativeDataset:
    """An mrfrecon BIDS derivative dataset being written: its root, the ``DatasetLinks`` that
    the sidecars' ``Sources`` URIs use, and the dataset-level files.

    Opening reads an existing ``dataset_description.json`` (kept and extended: links, sources,
    generating runs) and refuses a folder that holds a raw BIDS dataset.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._doc: dict[str, Any] = {}
        if (self.root / DESCRIPTION).is_file():
            self._doc = _read_description(self.root)
            kind = self._doc.get("DatasetType", "raw")
            if kind != "derivative":
                raise MrfreconError(f"{self.root}: holds a {kind} BIDS dataset ({DESCRIPTION}); maps go into a "
                                    f"derivative dataset, e.g. {self.root / 'derivatives' / PIPELINE}")
        links = self._doc.get("DatasetLinks", {})
        self.links: dict[str, str] = dict(links) if isinstance(links, dict) else {}

    def _link_for(self, base: Path, is_bids: bool) -> str:
        for name, value in self.links.items():
            if isinstance(value, str) and _link_target(self.root, value) == base:
                return name
        stem = "raw" if is_bids else "inputs"
        name = next(n for n in (stem, *(f"{stem}{i}" for i in range(2, 10_000))) if n not in self.links)
        self.links[name] = os.path.relpath(base, os.path.abspath(self.root))
        return name

    def uri(self, path: str | os.PathLike[str]) -> str:
        """The BIDS URI of a source file: ``bids::<path>`` inside this dataset, else
        ``bids:<name>:<path within its dataset>``, where ``<name>`` is a ``DatasetLinks`` entry
        for the BIDS dataset holding the file (``raw``), or for its folder when it lies in none
        (``inputs``)."""
        # absolute, not resolved: a DataLad/git-annex file is a symlink whose target lies elsewhere
        p = Path(os.path.abspath(path))
        root = Path(os.path.abspath(self.root))
        if p.is_relative_to(root):
            return f"bids::{p.relative_to(root).as_posix()}"
        ds = find_dataset_root(p.parent)
        base = ds if ds is not None else p.parent
        return f"bids:{self._link_for(base, ds is not None)}:{p.relative_to(base).as_posix()}"

    def save(self, generated_by: Mapping[str, Any] | None = None) -> list[Path]:
        """Write (merge into) ``dataset_description.json`` and ``.bidsignore``, and a README when
        there is none; ``generated_by``: this run's ``GeneratedBy`` entry (``Name`` mrfrecon and
        ``Version`` when not given; without it, an entry is added only to a dataset that has no
        mrfrecon entry yet). Returns the files written."""
        run = {"Name": PIPELINE, "Version": __version__, **(generated_by or {})}
        doc = dict(self._doc)
        doc.setdefault("Name", "mrfrecon: water T1, fat fraction and B1 maps from MR fingerprinting")
        doc.setdefault("BIDSVersion", BIDS_VERSION)
        doc["DatasetType"] = "derivative"
        gen = [g for g in doc.get("GeneratedBy", []) if isinstance(g, dict)] if isinstance(doc.get("GeneratedBy"), list) else []
        if run not in gen and (generated_by is not None or not _is_ours({**doc, "GeneratedBy": gen})):
            gen.append(run)
        doc["GeneratedBy"] = gen
        srcs = [s for s in doc.get("SourceDatasets", []) if isinstance(s, dict)] if isinstance(doc.get("SourceDatasets"), list) else []
        for name, value in self.links.items():
            entry: dict[str, str] = {"URL": f"bids:{name}:"}
            target = _link_target(self.root, value) if isinstance(value, str) else None
            if target is not None and (target / DESCRIPTION).is_file():
                try:
                    raw = _read_description(target)
                except MrfreconError:
                    raw = {}
                if isinstance(raw.get("DatasetDOI"), str):
                    entry["DOI"] = raw["DatasetDOI"]
            if not any(s.get("URL") == entry["URL"] for s in srcs):
                srcs.append(entry)
        doc["SourceDatasets"] = srcs
        if self.links:
            doc["DatasetLinks"] = dict(self.links)
        self._doc = doc
        written = [atomic_write_text(self.root / DESCRIPTION, json.dumps(doc, indent=2) + "\n")]
        ignore = self.root / ".bidsignore"
        lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.is_file() else []
        missing = [p for p in BIDSIGNORE if p not in lines]
        if missing or not ignore.is_file():
            written.append(atomic_write_text(ignore, "\n".join([*lines, *missing]) + "\n"))
        if not any((self.root / f"README{ext}").exists() for ext in ("", ".md", ".rst", ".txt")):
            written.append(atomic_write_text(self.root / "README.md", _readme()))
        return written

    def source_uris(self, sources: Iterable[str | os.PathLike[str]]) -> list[str]:
        """:meth:`uri` of each source; entries that already are URIs are kept."""
        return [s if _is_uri(s) else self.uri(s) for s in map(os.fspath, sources)]


def _is_uri(s: str) -> bool:
    # a scheme of two or more letters (one letter would be a Windows drive)
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:", s) is not None


def file_uris(sources: Sequence[str | os.PathLike[str]]) -> list[str]:
    """``file:`` URIs of local sources (the flat layout has no dataset for BIDS URIs to resolve
    against); entries that already are URIs are kept."""
    return [s if _is_uri(s) else Path(os.path.abspath(s)).as_uri() for s in map(os.fspath, sources)]


def _readme() -> str:
    rows = "\n".join(f"| `{k}` | `{v.datatype}/` | `<source entities>_{v.part()}` |" for k, v in OUTPUTS.items())
    return f"""# mrfrecon derivatives

Quantitative maps from MR fingerprinting (MRF-WF) written by mrfrecon {__version__}: water T1
(T1H2O), fat T1, fat fraction (FF), B1+, B0 off-resonance and proton density, with a JSON sidecar
each (`Units`, `Description`, `Sources` as BIDS URIs, the estimation method and its file's
SHA-256).

| map | folder | name |
|---|---|---|
{rows}

BIDS {BIDS_VERSION} has no fat-fraction suffix: FF is written as `*_FFmap` (percent, as the
`MWFmap` fraction map) and listed in `.bidsignore`, as are the HDF5 maps (`*_maps.h5`, mrfrecon's
own format). The `fieldmap` (Hz) has the PD map as its `magnitude` image.
"""
