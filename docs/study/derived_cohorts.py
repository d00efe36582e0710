"""Issue 20, data size at a fixed budget: training cohorts that differ from the study cohort only in
their training subjects (the validation and test subjects, and so the scores, stay the same).

- ``half``: every other of the study cohort's 40 training subjects (20; regions 11 thighs / 9 legs);
- ``grown``: the 40 and every subject of a grown copy of the cohort that the study cohort lacks.
  Grow a copy with ``mrfrecon simulate --preset study --subjects 120 --out study/cohort-120`` after
  linking the 70 scans into it (a cohort can grow: each scan keeps its per-subject seed,
  ``mrfrecon.cohort.subject_seed``, so only sub-070 … sub-119 are simulated).

The derived folder holds symbolic links to the scans and a ``cohort.json``; ``mrfrecon`` reads it as
any cohort. Run::

    .venv/bin/python docs/study/derived_cohorts.py half study/cohort study/cohort-half20
    .venv/bin/python docs/study/derived_cohorts.py grown study/cohort study/cohort-train90 study/cohort-120
"""

import json
import os
import sys
from pathlib import Path


def main(kind: str, src: str, dst: str, grown: str | None = None) -> None:
    s_dir, d_dir = Path(src), Path(dst)
    d = json.loads((s_dir / "cohort.json").read_text())
    if kind == "half":
        g_dir, doc = s_dir, d
        train = d["split"]["train"][::2]
        what = f"every other of its {len(d['split']['train'])} training subjects"
    elif kind == "grown" and grown:
        g_dir = Path(grown)
        doc = json.loads((g_dir / "cohort.json").read_text())
        def settings(a: dict) -> dict:  # the simulation settings; how many subjects a folder holds is not one
            return {k: v for k, v in a.get("cohort", {}).items() if k != "subjects"}

        if settings(doc["attrs"]) != settings(d["attrs"]) or doc["attrs"].get("seed") != d["attrs"].get("seed"):
            sys.exit(f"{g_dir}/cohort.json: attrs: expected the settings and seed of {s_dir}")
        new = sorted(s for s in doc["subjects"] if s not in d["subjects"])
        train = d["split"]["train"] + new
        what = f"its {len(d['split']['train'])} training subjects and {len(new)} new ones from {g_dir}"
    else:
        sys.exit("usage: derived_cohorts.py half SRC DST | grown SRC DST GROWN")
    split = {"train": train, "val": d["split"]["val"], "test": d["split"]["test"]}
    subjects = {s: doc["subjects"][s] for names in split.values() for s in names}
    d_dir.mkdir(parents=True, exist_ok=True)
    for e in subjects.values():
        if not (d_dir / e["file"]).exists():
            os.symlink((g_dir / e["file"]).resolve(), d_dir / e["file"])
    for f in ("dictionary.h5", "cohort-settings.json"):
        if not (d_dir / f).exists():
            os.symlink((s_dir / f).resolve(), d_dir / f)
    out = {**doc, "split": split, "subjects": subjects}
    out["attrs"] = {**doc["attrs"], "derived": f"{s_dir}'s validation and test subjects; training: {what}"}
    tmp = d_dir / "cohort.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, d_dir / "cohort.json")
    print(f"{d_dir}: train/val/test {len(train)}/{len(split['val'])}/{len(split['test'])}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
