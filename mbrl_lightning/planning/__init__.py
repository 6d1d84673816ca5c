"""Planning with the learned model: batched sequence evaluation, action optimisers, the MPC policy."""

import mbrl_lightning.numerics  # noqa: F401  (flush denormals to zero before torch's thread pool starts)
from mbrl_lightning.planning.mpc import MPCPolicy
from mbrl_lightning.planning.optimizers import CEM, ICEM, MPPI, ActionOptimizer, RandomShooting
from mbrl_lightning.planning.rollout import evaluate_sequences

__all__ = ["CEM", "ICEM", "MPPI", "ActionOptimizer", "MPCPolicy", "RandomShooting", "evaluate_sequences"]
