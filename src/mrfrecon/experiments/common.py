"""What the three experiments share: the cohort, trained runs reused by their settings, test-set
predictions, tables (CSV and Markdown), and the ``report.md`` of a result folder.

A result folder is self-contained::

    OUT/
      cohort/                 the simulated cohort (unless --cohort was given)
      runs/<target>/<name>/   checkpoint_best.pt, checkpoint_last.pt, log.csv, run.json
      *.csv, *.md, *.png      tables and figures
      report.md               all of them with the settings, seeds, package version and git hash

Trained runs and their reuse by settings live in :mod:`mrfrecon.experiments.runs`.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import MrfreconError
from ..atomic import atomic_write_text
from ..io.cohort import CohortIndex

__all__ = [
    "MAPS", "MAP_LABELS", "MAP_UNITS", "METHOD_NAMES", "MODEL_ORDER", "Report", "Stopwatch",
    "auto_threads", "ensure_cohort", "no_bar", "fmt", "markdown_table", "peak_rss_mb", "predict_normalized",
    "write_csv",
]

#: The maps the networks predict and the paper evaluates, in output order.
MAPS = ("t1h2o", "ff", "b1")
MAP_LABELS = {"t1h2o": "T1H2O", "ff": "FF", "b1": "B1"}
MAP_UNITS = {"t1h2o": "ms", "ff": "", "b1": "a.u."}
#: The compared networks in the paper's column order (Table 1).
MODEL_ORDER = ("proposed", "cohen2018", "fang2018", "balsiger2018")
METHOD_NAMES = {"proposed": "Proposed", "cohen2018": "Cohen et al.", "fang2018": "Fang et al.",
                "balsiger2018": "Balsiger et al.", "matching": "Dictionary matching"}

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@contextmanager
def no_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress "bar" that shows nothing (the default where no ``progress`` is given)."""
    yield lambda done: None


def map_label(m: str, unit: bool = True) -> str:
    """``"T1H2O (ms)"``, ``"FF"``, ``"B1 (a.u.)"`` (with ``unit``)."""
    u = MAP_UNITS.get(m, "")
    return f"{MAP_LABELS.get(m, m)}{f' ({u})' if unit and u else ''}"


# ================================================================================ resources
def peak_rss_mb() -> float:
    """Peak resident memory in MiB of this process and of its finished child processes (the
    larger of the two; Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    per_mib = 1024.0**2 if sys.platform == "darwin" else 1024.0  # macOS reports bytes
    return max(own, kids) / per_mib


def auto_threads() -> int:
    """Torch threads for this machine now: :func:`mrfrecon.runtime.auto_threads` (the explicit
    setting, else the cores other processes leave free)."""
    from ..runtime import auto_threads as _auto

    return _auto()


@dataclass
class Stopwatch:
    """Wall-clock seconds of named stages (``with sw("training"): ...``)."""

    stages: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0


# ================================================================================ cohort
def ensure_cohort(
    cohort: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    preset: str,
    seed: int = 0,
    subjects: int | None = None,
    workers: int = 1,
    log: Log = _quiet,
    bar=None,
) -> CohortIndex:
    """The cohort ``cohort`` (a folder with ``cohort.json``), or — without one — the preset's
    cohort simulated into ``out/cohort`` (resumable: complete scans already there are kept),
    with a progress bar from ``bar(total, description)`` (a context manager yielding a callback).
    Raises :class:`MrfreconError` for a cohort without a test split."""
    if cohort is not None:
        index = CohortIndex.load(cohort)
    else:
        from ..cohort import simulate_cohort
        from ..presets import load_preset

        root = Path(out) / "cohort"
        log(f"cohort: simulating the {preset} preset's cohort into {root} (scans already there are reused)")
        n = subjects if subjects is not None else int(load_preset(preset)["cohort"]["subjects"])
        with (bar or no_bar)(n, f"simulating the {preset} cohort") as cb:
            index = simulate_cohort(root, preset=preset, subjects=subjects, seed=seed, workers=workers, reference=True,
                                    progress=cb, log=log)
    for split in ("train", "val", "test"):
        if not index.split[split]:
            raise MrfreconError(f"{index.root}: the {split} split is empty (need at least 3 subjects)")
    return index


# ================================================================================ predictions
def predict_normalized(ck: Any, net: Any, series_norm: np.ndarray, foreground: np.ndarray,
                       device: Any = None) -> dict[str, np.ndarray]:
    """Maps of one scan from its already normalized series (complex (slices, T, y, x)): name →
    float32 (slices, y, x) in physical units, clipped to the training range, 0 in the background
    — what :func:`mrfrecon.inference.predict_scan` returns, without normalizing again per model."""
    from ..data import predict_volume

    return ck.map_norm.denormalize(predict_volume(net, series_norm, device=device), foreground)


# ================================================================================ tables
def fmt(v: float, digits: int = 4) -> str:
    """A number for a table: ``digits`` significant digits, ``nan``/``inf`` spelled out."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan" if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.{digits}g}"


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Rows (dicts) as a CSV file with ``columns`` (atomic)."""
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(Path(path), buf.getvalue())


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    heads = list(headers or columns)
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(esc(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ================================================================================ report
def command_line() -> str:
    """The command line this process was started with (``mrfrecon ...`` when run as the CLI)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("mrfrecon", "__main__.py", "cli.py"):
        argv[0] = "mrfrecon"
    return " ".join(shlex.quote(a) for a in argv)


class Report:
    """The ``report.md`` of a result folder and the files it shows.

    ``table`` writes ``<stem>.csv`` and ``<stem>.md`` and shows the Markdown; ``figure`` shows a
    PNG already written; ``text`` adds prose. Every file is linked relative to the folder, so
    the folder can be moved or copied whole. :meth:`write` adds the settings, seeds, package
    version, git hash, the command line, timings and peak memory.
    """

    def __init__(self, out: str | os.PathLike[str], title: str) -> None:
        self.out = Path(out)
        self.title = title
        self.parts: list[str] = []
        self.files: list[Path] = []

    def rel(self, path: str | os.PathLike[str]) -> str:
        # relative also outside the folder (a comparison's runs reused by another experiment): the two
        # folders can then be moved together
        return Path(os.path.relpath(Path(path).resolve(), self.out.resolve())).as_posix()

    def text(self, md: str) -> None:
        self.parts.append(md.rstrip() + "\n")

    def table(self, stem: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, caption: str = "",
              headers: Sequence[str] | None = None, csv_rows: Sequence[Mapping[str, Any]] | None = None,
              csv_columns: Sequence[str] | None = None) -> tuple[Path, Path]:
        """Write ``stem.csv`` (``csv_rows``/``csv_columns`` if given, e.g. unrounded numbers) and
        ``stem.md`` and show the table in the report."""
        c = write_csv(self.out / f"{stem}.csv", csv_rows if csv_rows is not None else rows, csv_columns or columns)
        md = markdown_table(rows, columns, headers)
        m = atomic_write_text(self.out / f"{stem}.md", (f"{caption}\n\n" if caption else "") + md + "\n")
        self.parts.append((f"{caption}\n\n" if caption else "") + md + f"\n\nFiles: [{c.name}]({self.rel(c)}), "
                          f"[{m.name}]({self.rel(m)})\n")
        self.files += [c, m]
        return c, m

    def figure(self, path: str | os.PathLike[str], caption: str) -> None:
        self.parts.append(f"![{caption}]({self.rel(path)})\n\n*{caption}*\n")
        self.files.append(Path(path))

    def link(self, path: str | os.PathLike[str], what: str) -> None:
        self.parts.append(f"- {what}: [{Path(path).name}]({self.rel(path)})")
        self.files.append(Path(path))

    def write(self, *, settings: Mapping[str, Any], seeds: Mapping[str, Any], stopwatch: Stopwatch | None = None,
              extra: Sequence[str] = ()) -> Path:
        """Write ``report.md``: title, provenance, settings, seeds, the parts, and resources."""
        import torch

        from ..checkpoint import git_hash
        from ..runtime import default_device

        head = [f"# {self.title}", "",
                f"- command: `{command_line()}`",
                f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
                f"- mrfrecon {__version__}, git `{git_hash()}`{_dirty()}; Python {platform.python_version()}, "
                f"torch {torch.__version__}, device {default_device()}, {torch.get_num_threads()} torch thread(s), "
                f"{os.cpu_count()} CPU core(s)",
                *extra, "", "## Settings", "",
                markdown_table([{"setting": k, "value": _show(v)} for k, v in settings.items()], ["setting", "value"]), "",
                "## Seeds", "", markdown_table([{"seed": k, "value": _show(v)} for k, v in seeds.items()], ["seed", "value"]),
                ""]
        tail = []
        if stopwatch is not None:
            rows = [{"stage": k, "seconds": f"{v:.1f}"} for k, v in stopwatch.stages.items()]
            rows.append({"stage": "total", "seconds": f"{stopwatch.total:.1f}"})
            tail = ["## Time and memory", "", markdown_table(rows, ["stage", "seconds"]), "",
                    f"Peak resident memory: {peak_rss_mb():.0f} MiB (this process or its largest child).", ""]
        text = "\n".join(head) + "\n" + "\n".join(self.parts) + "\n" + "\n".join(tail)
        return atomic_write_text(self.out / "report.md", text)


def _dirty() -> str:
    """`` (+ uncommitted changes)`` when the package's source tree differs from its git HEAD."""
    import subprocess

    try:
        r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                           cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return " (+ uncommitted changes)" if r.returncode == 0 and r.stdout.strip() else ""


def _show(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v, 6)
    if isinstance(v, dict | list | tuple):
        return json.dumps(v)
    return str(v)
