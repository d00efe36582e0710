#!/usr/bin/env bash
# The fine-tuning measurement of docs/FINETUNING.md, as run (one core, beside another job).
# Usage (from the repository root): bash docs/finetuning/run.sh WORK_DIR SIMULATE_OPTION...
#   bash docs/finetuning/run.sh /work/finetune/snr5 --seed 31 --snr 5       (noisier frames)
#   bash docs/finetuning/run.sh /work/finetune/kwic --seed 31 --recon kwic   (KWIC frames, no CS-TV)
# Resumable: a finished run (convergence.json), a prediction or an evaluation already there is kept.
set -euo pipefail
W=$1; shift
M="$PWD/.venv/bin/mrfrecon --threads 1"
PY="$PWD/.venv/bin/python"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# 1. the shifted cohort: 16 subjects of the study preset with the given change (the study cohort the
#    shipped networks were trained on: 70 subjects, seed 0, SNR 10, KWIC + CS-TV)
[ -f "$W/cohort/cohort.json" ] ||
  $M simulate --preset study --subjects 16 --workers 1 --out "$W/cohort" "$@"
# 2. few scans: its first 3 training subjects; its 3 validation subjects; test: its 3 test subjects
#    and its 7 training subjects not trained on (10)
[ -f "$W/few3/cohort.json" ] ||
  $PY docs/finetuning/finetune.py cohort "$W/cohort" "$W/few3" --train 3

# 3. the same budget and scheme for every arm: study preset, 600 steps, evaluation every 100 steps
train() {  # train ARM SEED [extra options]
  local arm=$1 seed=$2; shift 2
  local out="$W/runs/$arm-seed$seed"
  [ -f "$out/convergence.json" ] ||
    $M train --model cohen2018 --cohort "$W/few3" --preset study --steps 600 --eval-every 100 \
      --seed "$seed" --out "$out" "$@"
}
for seed in 0 1 2; do
  train scratch "$seed"
  train finetune-lr1e-3 "$seed" --init shipped:study-cohen2018
  train finetune-lr3e-4 "$seed" --init shipped:study-cohen2018 --lr 3e-4
done

# 4. the test subjects: predict, evaluate against the reference and the ground truth
test_scans=$($PY -c "from mrfrecon.io.cohort import CohortIndex; print(' '.join(map(str, CohortIndex.load('$W/few3').paths('test'))))")
score() {  # score NAME CHECKPOINT
  local name=$1 ck=$2
  [ -f "$W/pred/$name/sub-015_maps.h5" ] || $M predict --checkpoint "$ck" --out "$W/pred/$name" --no-nifti $test_scans
  for against in reference ground-truth; do
    [ -f "$W/eval/$name-$against/per_scan.csv" ] ||
      $M evaluate --predictions "$W/pred/$name" --cohort "$W/few3" --split test --against "$against" \
        --out "$W/eval/$name-$against"
  done
}
score shipped-study-cohen2018 shipped:study-cohen2018  # no fine-tuning
for seed in 0 1 2; do
  for arm in scratch finetune-lr1e-3 finetune-lr3e-4; do
    score "$arm-seed$seed" "$W/runs/$arm-seed$seed/checkpoint_best.pt"
  done
done
[ -f "$W/eval/constant-reference/per_scan.csv" ] || $PY docs/finetuning/finetune.py baselines "$W/few3" "$W/eval"
# 5. validation scores of the best checkpoints and of the shipped one (the start of fine-tuning)
[ -f "$W/val.md" ] || $PY docs/finetuning/finetune.py val "$W/few3" "$W/runs" --md "$W/val.md"
$PY docs/finetuning/finetune.py curves "$W/few3" "$W/runs" "$W/curves.png" \
  --title "cohen2018 on 3 scans of $(basename "$W"): validation NRMSE (3 seeds per arm)"
$PY docs/finetuning/finetune.py table "$W/eval" --md "$W/table.md"
