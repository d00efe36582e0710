"""The ``mrfrecon`` command: one click group, a module per command group.

Units on the command line are those of a scanner console: ms, Hz, degrees, fractions.
Errors in the input are printed as one line (exit status 2); ``--debug`` shows the traceback.

Modules (each command module imports :mod:`.common` only, never another command module)::

    common       the ``cli`` group, one-line errors, progress, torch threads
    core         sequence, dictionary, match, simulate, figure, demo
    cohort       cohort create (a cohort from your own scans)
    nets         train, predict, evaluate
    check        check (validate any project file)
    experiments  experiment compare, receptive-field, occlusion
    uncertainty  uncertainty calibrate (the SD maps against ground truth)

(``core`` rather than ``main``: a submodule named ``main`` would shadow the :func:`main` entry
point, ``mrfrecon = "mrfrecon.cli:main"``, as an attribute of this package.)
"""

from __future__ import annotations

from . import check, cohort, core, experiments, nets, uncertainty  # noqa: F401  (each registers its commands on the group)
from .common import cli, progress

__all__ = ["cli", "main", "progress"]


def main() -> None:
    """Entry point of the ``mrfrecon`` console script (and of ``python -m mrfrecon``)."""
    cli(obj={})
