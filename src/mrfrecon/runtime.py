"""Run-time choices shared by all stages: the torch device and the random seed.

The device is never hard-coded: CUDA where there is one, else the CPU. ``MRFRECON_DEVICE``
overrides the choice (e.g. ``cpu`` on a machine with a busy GPU).
"""

from __future__ import annotations

import os

import torch


def default_device(device: str | torch.device | None = None, *, what: str = "device") -> torch.device:
    """Return ``device`` if given, else ``$MRFRECON_DEVICE``, else CUDA if available, else CPU.

    A device name torch does not know, or a CUDA device on a machine without one, is refused with
    :class:`~mrfrecon.errors.MrfreconError` naming ``what`` (``--device``, ``MRFRECON_DEVICE``)."""
    if device is None:
        env = os.environ.get("MRFRECON_DEVICE")
        if not env:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device, what = env, "MRFRECON_DEVICE"
    if isinstance(device, torch.device):
        return device
    from .errors import MrfreconError

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise MrfreconError(f"{what}: {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MrfreconError(f"{what}: {device!r} asked for, but this machine has no usable CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MrfreconError(f"{what}: {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise MrfreconError(f"{what}: {device!r}: mrfrecon runs on cpu or cuda")
    return dev
