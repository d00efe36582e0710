"""Presets (tiny, demo, paper) as validated TOML, shipped inside the package."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from .errors import MrfreconError

PRESETS = ("tiny", "demo", "study", "paper")


def load_preset(name: str) -> dict[str, Any]:
    """The preset ``name`` as a nested dict with sections ``cohort`` and ``training``."""
    if name not in PRESETS:
        raise MrfreconError(f"preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    text = resources.files("mrfrecon.configs").joinpath(f"{name}.toml").read_text()
    cfg = tomllib.loads(text)
    for section in ("cohort", "training"):
        if section not in cfg:
            raise MrfreconError(f"preset {name}: section [{section}] missing")
    return cfg
