"""The ``mrfrecon uncertainty`` commands: calibrate the SD maps against ground truth.

Registered on the main group (:data:`mrfrecon.cli.common.cli`) when this module is imported::

    mrfrecon uncertainty calibrate --cohort C --dictionary D --out cal/ [--checkpoint A --checkpoint B ...]

See docs/UNCERTAINTY.md for what is measured and the numbers on the study preset.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MrfreconError
from .common import check_out, cli


@cli.group()
def uncertainty() -> None:
    """Calibrate the SD maps of matching and of network ensembles."""


@uncertainty.command("calibrate")
@click.option("--cohort", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Simulated cohort (cohort.json) whose scans carry ground-truth maps.")
@click.option("--dictionary", "dict_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Dictionary for matching (the cohort's dictionary.h5).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for calibration.json, report.md, metrics.json and reliability_*.png.")
@click.option("--checkpoint", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Ensemble members (repeat; at least 2): also calibrate the ensemble's SD.")
@click.option("--fit", "fit_split", default="val", show_default=True,
              help="Split (or comma-separated subjects) the scales are fitted on.")
@click.option("--test", "test_split", default="test", show_default=True,
              help="Split (or comma-separated subjects) the calibration is reported on.")
@click.option("--noise", default="residual", show_default=True, metavar="residual|background|SD",
              help="Noise level of matching's SD.")
def calibrate_cmd(cohort: Path, dict_path: Path, out: Path, checkpoint: tuple[Path, ...], fit_split: str, test_split: str,
                  noise: str) -> None:
    """Measure coverage of ±1.96 SD, Spearman's ρ(SD, |error|) and reliability against ground truth,
    fit one scale per map and method on the fit scans and report before/after on the test scans."""
    from ..experiments.uncertainty import run_calibration
    from ..io.cohort import CohortIndex
    from ..shipped import resolve_checkpoint
    from ..uncertainty.matched import parse_sigma

    check_out(out, kind="dir")
    sigma = parse_sigma(noise)
    index = CohortIndex.load(cohort)

    def scans(spec: str) -> list[Path]:
        if spec in ("train", "val", "test"):
            paths = index.paths(spec)
        else:
            names = [s.strip() for s in spec.split(",") if s.strip()]
            unknown = [s for s in names if s not in index.subjects]
            if unknown:
                raise MrfreconError(f"{cohort}: no subject {unknown[0]!r} (subjects: {', '.join(sorted(index.subjects))})")
            paths = [index.path(s) for s in names]
        if not paths:
            raise MrfreconError(f"{cohort}: {spec!r} names no scans")
        return list(paths)

    cks = [resolve_checkpoint(c) for c in checkpoint]
    cal = run_calibration(scans(fit_split), scans(test_split), dict_path, out, checkpoints=cks, sigma=sigma, log=click.echo)
    click.echo((out / "report.md").read_text().rstrip())
    click.echo(f"wrote {out / 'calibration.json'} (scales: " +
               "; ".join(f"{m}: " + ", ".join(f"{k} {v:.3g}" for k, v in t.items()) for m, t in cal.scales.items()) + ")")
