"""Callbacks of the MBRL loop: data collection, evaluation, progress reports."""

from mbrl_lightning.callbacks.collect import CollectOnPolicy, CollectRandom, log_scalars
from mbrl_lightning.callbacks.evaluate import Evaluate
from mbrl_lightning.callbacks.report import ProgressReport

__all__ = ["CollectOnPolicy", "CollectRandom", "Evaluate", "ProgressReport", "log_scalars"]
