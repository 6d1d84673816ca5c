"""mbrl-lightning: model-based RL (ensemble dynamics, MPC, MBPO) on PyTorch Lightning."""

from mbrl_lightning import envs  # noqa: F401  (registers the environments with gymnasium)

__version__ = "0.1.0"
