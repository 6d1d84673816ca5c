"""Ensemble layers, normalisers and the DynamicsEnsemble LightningModule."""

import mbrl_lightning.numerics  # noqa: F401  (flush denormals to zero before torch's thread pool starts)
from mbrl_lightning.models.dynamics import DynamicsEnsemble
from mbrl_lightning.models.ensemble import EnsembleLinear, EnsembleMLP
from mbrl_lightning.models.normalizer import Normalizer

__all__ = ["DynamicsEnsemble", "EnsembleLinear", "EnsembleMLP", "Normalizer"]
