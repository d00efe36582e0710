"""Fine-tuning on a few scans of a shifted cohort (issue 21, item 3; docs/FINETUNING.md).

Subcommands, run from the repository root with the project's venv (docs/finetuning/run.sh calls them):

``.venv/bin/python docs/finetuning/finetune.py cohort SRC OUT --train 3``
    A cohort index in OUT whose training split is the first 3 training subjects of the cohort in
    SRC, whose validation split is SRC's, and whose test split is SRC's test subjects followed by
    SRC's training subjects not used for training (more test subjects, none seen in training).
    The scans stay in SRC (symbolic links, as ``mrfrecon.experiments.overfit.overfit_cohort``).

``.venv/bin/python docs/finetuning/finetune.py baselines COHORT OUT``
    The constant baseline (training split's mean per map, the paper's masks) and dictionary
    matching (the reference itself; only meaningful against the ground truth) scored with
    ``mrfrecon.evaluation.evaluate`` on the test split, written as ``mrfrecon evaluate`` writes
    them (``OUT/<baseline>-<against>/per_scan.csv``, ``summary.md``).

``.venv/bin/python docs/finetuning/finetune.py val COHORT RUNS_DIR [--md OUT.md]``
    NRMSE per map on the validation split (what training selects the best checkpoint by) of every
    ``RUNS_DIR/*/checkpoint_best.pt`` and of ``shipped:study-cohen2018``, the weights fine-tuning
    starts from (``mrfrecon train`` does not evaluate a run's initial weights).

``.venv/bin/python docs/finetuning/finetune.py curves COHORT RUNS_DIR OUT.png [--title T]``
    The validation NRMSE per map against the optimizer step of every run (log.csv), one colour
    per arm, with the shipped network's validation NRMSE (step 0 of fine-tuning) as a dashed line.

``.venv/bin/python docs/finetuning/finetune.py cost BASE_DIR SHIFTED_DIR... [--name N]``
    What a shift costs one network on the same subjects: for the evaluation folders
    ``<dir>/eval/<N>-<against>/`` (default N: the shipped network), its NRMSE per map on the
    unshifted cohort (BASE_DIR) and on each shifted one (same seed, hence the same anatomy),
    paired Wilcoxon over the subjects.

``.venv/bin/python docs/finetuning/finetune.py table EVAL_DIR [--md OUT.md]``
    Reads ``EVAL_DIR/<arm>-seed<k>-<against>/per_scan.csv`` (from ``mrfrecon evaluate``) and the
    baselines' folders; prints NRMSE per map as mean ± SD over seeds (each seed's value the mean
    over the test subjects) and paired two-sided Wilcoxon tests over the test subjects (each
    subject's NRMSE averaged over the seeds first) between the arms.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

MAPS = ("t1h2o", "ff", "b1")
LABEL = {"t1h2o": "T1H2O", "ff": "FF", "b1": "B1"}
NAMES = {"scratch": "from scratch", "finetune-lr1e-3": "fine-tuned, lr 1e-3", "finetune-lr3e-4": "fine-tuned, lr 3e-4",
         "shipped-study-cohen2018": "shipped, not fine-tuned", "constant": "constant (training mean)",
         "matching": "dictionary matching (the reference)"}
SHIPPED = "shipped:study-cohen2018"


def make_cohort(src: str, out: str, train: int) -> None:
    from mrfrecon.io.cohort import CohortIndex

    index = CohortIndex.load(src)
    pool = list(index.split["train"])
    if len(pool) < train:
        sys.exit(f"{src}: only {len(pool)} training subjects, --train {train}")
    split = {"train": pool[:train], "val": list(index.split["val"]), "test": list(index.split["test"]) + pool[train:]}
    root = Path(out)
    index.linked_subset(root, split, {"few_scans_of": str(index.root.resolve())})
    print(f"{root}: train {split['train']}, val {split['val']}, test {split['test']}")


def baselines(cohort: str, out: str) -> None:
    from mrfrecon.evaluation import evaluate, write_report
    from mrfrecon.experiments.baselines import baseline_maps, constant_values
    from mrfrecon.io import load_scan
    from mrfrecon.io.cohort import CohortIndex

    index = CohortIndex.load(cohort)
    paths = index.paths("test")
    for against in ("reference", "ground-truth"):
        const = constant_values(index.paths("train"), against)
        for name in ("constant", "matching"):
            preds = {p.stem: baseline_maps(name, load_scan(p, series=False), const) for p in paths}
            res = evaluate(preds, paths, against=against)
            write_report(res, Path(out) / f"{name}-{against}", title=f"{name}, against the {against}")
            print(f"{name} against the {against}: " + ", ".join(f"{m} {res.summary[m]['nrmse'].mean:.4f}" for m in MAPS))


def val(cohort: str, runs: str, md: str | None) -> None:
    import torch

    from mrfrecon.experiments.overfit import overfit_scores
    from mrfrecon.io.cohort import CohortIndex
    from mrfrecon.shipped import resolve_checkpoint

    torch.set_num_threads(1)
    index = CohortIndex.load(cohort)
    cks = {SHIPPED + " (not fine-tuned)": resolve_checkpoint(SHIPPED)}  # overfit_scores takes a path only
    cks.update({d.name: d / "checkpoint_best.pt" for d in sorted(Path(runs).iterdir()) if (d / "checkpoint_best.pt").is_file()})
    lines = [f"Validation NRMSE against the reference ({len(index.split['val'])} scans: {', '.join(index.split['val'])})", "",
             "| checkpoint | T1H2O | FF | B1 | mean |", "|---|---|---|---|---|"]
    for name, ck in cks.items():
        s = overfit_scores(ck, index, "reference", split="val")
        lines.append(f"| {name} | " + " | ".join(f"{s[m]:.4f}" for m in MAPS) + f" | {np.mean(list(s.values())):.4f} |")
    text = "\n".join(lines)
    print(text)
    if md:
        Path(md).write_text(text + "\n")


def curves(cohort: str, runs: str, out: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from mrfrecon.experiments.overfit import overfit_scores
    from mrfrecon.io.cohort import CohortIndex
    from mrfrecon.shipped import resolve_checkpoint

    torch.set_num_threads(1)
    shipped = overfit_scores(resolve_checkpoint(SHIPPED), CohortIndex.load(cohort), "reference", split="val")
    colours = {"scratch": "tab:red", "finetune-lr1e-3": "tab:blue", "finetune-lr3e-4": "tab:green"}
    fig, axes = plt.subplots(1, len(MAPS), figsize=(4.2 * len(MAPS), 3.5), constrained_layout=True)
    for d in sorted(Path(runs).iterdir()):
        arm = re.sub(r"-seed\d+$", "", d.name)
        if not (d / "log.csv").is_file() or arm not in colours:
            continue
        with open(d / "log.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        start = arm != "scratch"  # a fine-tuned run starts at the shipped network: its step 0
        step = [0] * start + [int(r["step"]) for r in rows]
        for ax, m in zip(axes, MAPS, strict=True):
            first = d.name.endswith("seed0")
            ax.plot(step, [shipped[m]] * start + [float(r[f"val_nrmse_{m}"]) for r in rows], "-o", ms=3, lw=1,
                    color=colours[arm], label=NAMES[arm] if first else None)
    for ax, m in zip(axes, MAPS, strict=True):
        ax.axhline(shipped[m], color="k", ls="--", lw=1, label="shipped, not fine-tuned")
        ax.set(title=f"{LABEL[m]}: validation NRMSE", xlabel="optimizer step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def cost(base: str, shifted: list[str], name: str) -> None:
    from scipy.stats import wilcoxon

    print(f"| {name}: against | shift | " + " | ".join(LABEL[m] for m in MAPS) + " |")
    print("|---|---|" + "---|" * len(MAPS))
    for against in ("reference", "ground-truth"):
        b = _read(Path(base) / "eval" / f"{name}-{against}" / "per_scan.csv")
        for d in shifted:
            x = _read(Path(d) / "eval" / f"{name}-{against}" / "per_scan.csv")
            scans = sorted(b)
            cells = []
            for m in MAPS:
                u, v = np.array([b[s][m] for s in scans]), np.array([x[s][m] for s in scans])
                cells.append(f"{u.mean():.4f} → {v.mean():.4f} (worse on {int((v > u).sum())}/{len(u)}, "
                             f"p {wilcoxon(v, u).pvalue:.2g})")
            print(f"| {against} | {Path(base).name} → {Path(d).name} | " + " | ".join(cells) + " |")


def _read(path: Path) -> dict[str, dict[str, float]]:
    """scan → map → NRMSE from a per_scan.csv of ``mrfrecon evaluate`` (scan, map, nrmse, psnr, ssim)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["scan"]][row["map"]] = float(row["nrmse"])
    return dict(out)


COMPARISONS = (("finetune-lr1e-3", "scratch"), ("finetune-lr3e-4", "scratch"),
               ("finetune-lr1e-3", "shipped-study-cohen2018"), ("finetune-lr3e-4", "shipped-study-cohen2018"),
               ("finetune-lr3e-4", "finetune-lr1e-3"), ("scratch", "shipped-study-cohen2018"),
               ("shipped-study-cohen2018", "matching"), ("finetune-lr3e-4", "matching"), ("scratch", "matching"))
ORDER = ("shipped-study-cohen2018", "finetune-lr1e-3", "finetune-lr3e-4", "scratch", "constant", "matching")


def table(root: str, md: str | None) -> None:
    from scipy.stats import wilcoxon

    runs: dict[str, dict[str, dict[int, dict[str, dict[str, float]]]]] = defaultdict(lambda: defaultdict(dict))
    for d in sorted(Path(root).iterdir()):
        if not (d / "per_scan.csv").is_file():
            continue
        against = "ground-truth" if d.name.endswith("-ground-truth") else "reference"
        stem = d.name[: -len(against) - 1]
        m = re.fullmatch(r"(.+)-seed(\d+)", stem)
        name, seed = (m.group(1), int(m.group(2))) if m else (stem, 0)
        runs[name][against][seed] = _read(d / "per_scan.csv")
    names = sorted(runs, key=lambda a: ORDER.index(a) if a in ORDER else len(ORDER))
    lines = []
    for against in ("reference", "ground-truth"):
        lines += [f"### NRMSE against the {against}", "",
                  "| method | " + " | ".join(LABEL[m] for m in MAPS) + " |", "|---|" + "---|" * len(MAPS)]
        per_subject: dict[str, dict[str, dict[str, float]]] = {}
        for name in names:
            seeds = runs[name].get(against)
            if not seeds or (name == "matching" and against == "reference"):  # the reference against itself
                continue
            cells = []
            for m in MAPS:
                vals = [np.mean([v[m] for v in seeds[s].values()]) for s in sorted(seeds)]
                sd = f" ± {np.std(vals, ddof=1):.4f}" if len(vals) > 1 else ""
                cells.append(f"{np.mean(vals):.4f}{sd}")
            scans = sorted(next(iter(seeds.values())))
            per_subject[name] = {sc: {m: float(np.mean([seeds[s][sc][m] for s in seeds])) for m in MAPS} for sc in scans}
            n_seeds = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
            lines.append(f"| {NAMES.get(name, name)}{n_seeds} | " + " | ".join(cells) + " |")
        n = len(next(iter(per_subject.values())))
        lines += ["", f"Paired differences over the {n} test subjects (first − second; each subject's NRMSE averaged "
                  "over the seeds first): mean difference, two-sided Wilcoxon signed-rank p (uncorrected), and on "
                  "how many subjects the first is better.", "",
                  "| first − second | " + " | ".join(LABEL[m] for m in MAPS) + " |", "|---|" + "---|" * len(MAPS)]
        for a, b in COMPARISONS:
            if a not in per_subject or b not in per_subject:
                continue
            scans = sorted(per_subject[a])
            cells = []
            for m in MAPS:
                x = np.array([per_subject[a][s][m] for s in scans])
                y = np.array([per_subject[b][s][m] for s in scans])
                p = wilcoxon(x, y).pvalue
                cells.append(f"{np.mean(x - y):+.4f}, p {p:.2g} ({int((x < y).sum())}/{len(x)})")
            lines.append(f"| {NAMES.get(a, a)} − {NAMES.get(b, b)} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if md:
        Path(md).write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    c = sp.add_parser("cohort")
    c.add_argument("src")
    c.add_argument("out")
    c.add_argument("--train", type=int, default=3)
    v = sp.add_parser("val")
    v.add_argument("cohort")
    v.add_argument("runs")
    v.add_argument("--md")
    c2 = sp.add_parser("curves")
    c2.add_argument("cohort")
    c2.add_argument("runs")
    c2.add_argument("out")
    c2.add_argument("--title", default="")
    c3 = sp.add_parser("cost")
    c3.add_argument("base")
    c3.add_argument("shifted", nargs="+")
    c3.add_argument("--name", default="shipped-study-cohen2018")
    b = sp.add_parser("baselines")
    b.add_argument("cohort")
    b.add_argument("out")
    t = sp.add_parser("table")
    t.add_argument("eval_dir")
    t.add_argument("--md")
    a = ap.parse_args()
    if a.cmd == "cohort":
        make_cohort(a.src, a.out, a.train)
    elif a.cmd == "val":
        val(a.cohort, a.runs, a.md)
    elif a.cmd == "curves":
        curves(a.cohort, a.runs, a.out, a.title)
    elif a.cmd == "cost":
        cost(a.base, a.shifted, a.name)
    elif a.cmd == "baselines":
        baselines(a.cohort, a.out)
    else:
        table(a.eval_dir, a.md)


if __name__ == "__main__":
    main()
