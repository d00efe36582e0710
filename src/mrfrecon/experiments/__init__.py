"""The paper's three experiments (Balsiger et al., MIDL 2019, section 3), one function each.

=====================  ==========================================  =================================
function               what (paper)                                command
=====================  ==========================================  =================================
``run_compare``        four networks + matching, Table 1, Fig. 2   ``mrfrecon experiment compare``
``run_receptive_field``  proposed CNN, receptive field 1…21, Fig. 3  ``mrfrecon experiment receptive-field``
``run_occlusion``      temporal-frame importance, Fig. 4           ``mrfrecon experiment occlusion``
``run_overfit``        each network fits its own training scans    ``mrfrecon experiment overfit``
``run_budget``         converged? the budget-doubling test         ``mrfrecon experiment budget``
=====================  ==========================================  =================================

Each writes a self-contained result folder (tables as CSV and Markdown, figures as PNG, the
checkpoints, and ``report.md`` with the settings, seeds, package version and git hash); see
:mod:`mrfrecon.experiments.common`. Without a cohort, the preset's cohort is simulated into
``OUT/cohort`` first (or reused).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_budget", "run_compare", "run_occlusion", "run_overfit", "run_receptive_field"]


def __getattr__(name: str) -> Any:  # lazy: torch and matplotlib load only when an experiment runs
    if name == "run_compare":
        from .compare import run_compare

        return run_compare
    if name == "run_receptive_field":
        from .receptive_field import run_receptive_field

        return run_receptive_field
    if name == "run_occlusion":
        from .occlusion import run_occlusion

        return run_occlusion
    if name == "run_overfit":
        from .overfit import run_overfit

        return run_overfit
    if name == "run_budget":
        from .budget import run_budget

        return run_budget
    raise AttributeError(f"module 'mrfrecon.experiments' has no attribute {name!r}")
