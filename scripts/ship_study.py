"""Ship the best study checkpoint of each network from a finished ``experiment compare`` folder.

For every model under ``<compare>/runs/<target>/<model>/seed-<s>/`` the seed with the lowest
validation NRMSE is copied into ``mrfrecon/checkpoints/study-<model>.pt`` with
:func:`mrfrecon.shipped.ship`; its manifest entry records the command, the cohort, the git hash,
the kept step, the run's convergence verdict (``convergence.json``) and the validation NRMSE of
every seed.

    python scripts/ship_study.py --compare /work/study/compare2 --cohort-command "mrfrecon simulate ..." \
        --command "mrfrecon experiment compare ..." [--target reference]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from mrfrecon.checkpoint import load_checkpoint
from mrfrecon.shipped import ship


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", type=Path, required=True)
    ap.add_argument("--target", default="reference")
    ap.add_argument("--command", required=True, help="the compare command, as recorded")
    ap.add_argument("--cohort-command", required=True, help="the command that made the cohort")
    ap.add_argument("--report", default="docs/RESULTS.md")
    a = ap.parse_args()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for model_dir in sorted((a.compare / "runs" / a.target).iterdir()):
        seeds = {}
        for run in sorted(model_dir.glob("seed-*")):
            if (run / "checkpoint_best.pt").is_file():
                seeds[int(run.name.split("-")[1])] = (run, load_checkpoint(run / "checkpoint_best.pt"))
        if not seeds:
            continue
        best = min(seeds, key=lambda s: seeds[s][1].val_nrmse)
        run, ck = seeds[best]
        conv = json.loads((run / "convergence.json").read_text()) if (run / "convergence.json").is_file() else {}
        name = f"study-{model_dir.name}"
        extra = {
            "cohort": a.cohort_command, "git": git, "study_report": a.report, "step": int(ck.meta.get("step", 0)),
            "selected": f"seed {best} of {', '.join(map(str, sorted(seeds)))}: the lowest validation NRMSE",
            "seeds_val_nrmse": {str(s): round(float(c.val_nrmse), 5) for s, (_, c) in sorted(seeds.items())},
            "converged": conv.get("converged"), "convergence": conv.get("reason"),
            "schedule": conv.get("schedule"), "steps": conv.get("steps"),
        }
        dst = ship(run / "checkpoint_best.pt", name, command=f"{a.command}  (git {git})", extra=extra)
        print(f"{name}: seed {best} (val NRMSE {ck.val_nrmse:.4f}, step {extra['step']}, "
              f"converged {conv.get('converged')}) → {dst}")


if __name__ == "__main__":
    main()
