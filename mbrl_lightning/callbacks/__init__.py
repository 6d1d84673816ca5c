"""Callbacks of the MBRL loop: data collection, evaluation, progress reports."""

from mbrl_lightning.callbacks.collect import (
    CollectInterleaved,
    CollectOnPolicy,
    CollectRandom,
    acting_policy,
    is_last_iteration,
    log_scalars,
)
from mbrl_lightning.callbacks.evaluate import Evaluate
from mbrl_lightning.callbacks.preemption import CheckpointOnSignal, StoppedBySignal
from mbrl_lightning.callbacks.report import ProgressReport

__all__ = ["CheckpointOnSignal", "CollectInterleaved", "CollectOnPolicy", "CollectRandom", "Evaluate", "ProgressReport",
           "StoppedBySignal", "acting_policy", "is_last_iteration", "log_scalars"]
