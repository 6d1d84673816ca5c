"""mbrl-lightning: model-based RL (ensemble dynamics, MPC, MBPO) on PyTorch Lightning.

Submodules load on first use (``mbrl_lightning.envs`` registers the environments with gymnasium when imported),
so ``python -m mbrl_lightning theory`` or ``report`` does not pay for torch and Lightning.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"agents", "callbacks", "checks", "cli", "data", "distributed", "envs", "lightning_cli", "models",
               "planning", "report", "sweep", "theory"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
