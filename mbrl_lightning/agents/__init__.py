"""Agents: the MPC agent of Problems 2-5 (and SAC/MBPO of Problem 6)."""

from mbrl_lightning.agents.mbpo import MBPO
from mbrl_lightning.agents.mpc import MPCAgent
from mbrl_lightning.agents.sac import SAC, SACPolicy

__all__ = ["MBPO", "MPCAgent", "SAC", "SACPolicy"]
