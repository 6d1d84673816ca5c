"""Replay buffer, the DataModule that samples ensemble batches from it, and real-environment collection."""

from mbrl_lightning.data.buffer import FIELDS, ReplayBuffer
from mbrl_lightning.data.collect import Policy, RandomPolicy, Rollouts, collect
from mbrl_lightning.data.datamodule import ReplayDataModule

__all__ = ["FIELDS", "Policy", "RandomPolicy", "ReplayBuffer", "ReplayDataModule", "Rollouts", "collect"]
