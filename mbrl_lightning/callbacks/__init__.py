"""Callbacks of the MBRL loop: data collection, evaluation, progress reports."""

from mbrl_lightning.callbacks.collect import CollectOnPolicy, CollectRandom, log_scalars
from mbrl_lightning.callbacks.evaluate import Evaluate
from mbrl_lightning.callbacks.report import ProgressReport
from mbrl_lightning.callbacks.sac import CollectAgent, EvaluateAgent

__all__ = ["CollectAgent", "CollectOnPolicy", "CollectRandom", "Evaluate", "EvaluateAgent", "ProgressReport",
           "log_scalars"]
