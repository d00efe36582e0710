"""Training of the map-reconstruction networks, as in Balsiger et al., MIDL 2019 (section 2.2.3).

::

    from mrfrecon.training import train

    best = train("proposed", Path("cohort"), Path("runs/proposed"), preset="demo")
    # runs/proposed/{checkpoint_best.pt, checkpoint_last.pt, log.csv}

What the paper and the authors' code did (ARCHITECTURE.md, "Training and evaluation as coded"),
and what this module does:

- Adam, learning rate 1e-3, β = (0.9, 0.999), no schedule, no weight decay; masked MSE loss;
  batches of 50 patches (paper preset), 100 epochs; the patches are reshuffled every epoch
  (a seeded generator, stored in the checkpoint so that ``resume`` continues exactly).
- Inputs: each subject's series normalized to zero mean, unit variance (real and imaginary
  parts separately). Targets: each map scaled to [0, 1] with the range over the foreground of
  the *training* split only (the authors used all subjects, a leak); the range is stored with
  the model. Targets are the dictionary-matching ``reference`` maps (what the paper trained on)
  or, in simulation, the ``ground-truth`` maps.
- Validation NRMSE after every epoch (``validate_every`` of the preset), per scan over its 3-D
  volume with the paper's masks (T1H2O: foreground ∧ FF < 0.65, others: foreground), on
  de-normalized, clipped predictions with background 0; the score is the mean over maps and
  scans. The model with the *lowest* score is kept (``checkpoint_best.pt``). The authors'
  released code kept the *highest* (a sign bug, fixed in their later code); we do what the
  paper says.

Devices: CUDA where present (or ``device=``), with mixed precision (bf16 autocast where the GPU
supports it, else fp16 with a gradient scaler) on CUDA only — on CPUs, bf16 convolutions are far
slower than fp32. On CPU, training is deterministic for a seed (deterministic algorithms, fixed
data order); a resumed run gives bit-identical weights to an uninterrupted one.

Several GPUs: launch with ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the
environment): one process per GPU, DistributedDataParallel, a DistributedSampler (seeded,
reshuffled every epoch); ``batch_size`` is the *global* batch (each process takes
⌈batch_size / N⌉). Batch normalization: on CUDA the layers become SyncBatchNorm, so the
statistics are those of the global batch as on one GPU; on CPU (gloo, for tests) they stay
plain per-process BatchNorm (SyncBatchNorm needs CUDA) — the batch statistics are then those of
each process's share of the batch. Only rank 0 validates and writes files.
"""

from .data import ScanData, TrainData, load_training_data
from .environment import autocast_for
from .loop import BEST, LAST, LOG, TrainingDiverged, train, validation_nrmse

__all__ = ["BEST", "LAST", "LOG", "ScanData", "TrainData", "TrainingDiverged", "autocast_for", "load_training_data", "train",
           "validation_nrmse"]
