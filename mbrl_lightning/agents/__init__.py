"""Agents: the MPC agent of Problems 2-5 (and SAC/MBPO of Problem 6)."""

from mbrl_lightning.agents.mpc import MPCAgent

__all__ = ["MPCAgent"]
