"""Ensemble layers, normalisers and the DynamicsEnsemble LightningModule."""

from mbrl_lightning.models.dynamics import DynamicsEnsemble
from mbrl_lightning.models.ensemble import EnsembleLinear, EnsembleMLP
from mbrl_lightning.models.normalizer import Normalizer

__all__ = ["DynamicsEnsemble", "EnsembleLinear", "EnsembleMLP", "Normalizer"]
