"""Batched torch rewards/terminations reproducing gymnasium's HalfCheetah-v5, Hopper-v5 and Reacher-v5.

Formulas and weights follow gymnasium 1.x defaults. Cheetah and hopper rewards need the root x position, so
their tasks are registered with ``exclude_current_positions_from_observation=False`` (obs[0] is then x). A run
whose model learns the reward (MBPO on Hopper) passes ``env_kwargs: {exclude_current_positions_from_observation:
true}``, gymnasium's default observation; the Hopper termination reads either layout.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mbrl_lightning.envs.tasks import register_task

HALF_CHEETAH_DT = 0.01 * 5  # timestep * frame_skip
HOPPER_DT = 0.002 * 4
KEEP_X = {"exclude_current_positions_from_observation": False}


def half_cheetah_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """HalfCheetah-v5 with x kept: ``(x' - x) / dt - 0.1 * ||a||^2``; obs = qpos (9) | qvel (9)."""
    forward = (next_obs[..., 0] - obs[..., 0]) / HALF_CHEETAH_DT
    return forward - 0.1 * act.square().sum(-1)


HOPPER_OBS_DIM = 11  # gymnasium's default Hopper-v5 observation: qpos without x (5) | clip(qvel, -10, 10) (6)


def hopper_healthy(next_obs: Tensor) -> Tensor:
    """Hopper-v5 ``is_healthy`` on gymnasium's default observation (11: z, angle, thigh, leg, foot | qvel) or with
    x kept (12: x first); the layout follows from the size.

    gymnasium checks ``|qpos[2:], qvel| < 100`` on the *unclipped* qvel; the observation only has it clipped
    to +-10, so a state with |qvel| > 100 (not seen in practice) would be misjudged healthy.
    """
    z_col = next_obs.shape[-1] - HOPPER_OBS_DIM  # 0 without x, 1 with it
    z, angle = next_obs[..., z_col], next_obs[..., z_col + 1]
    state_ok = next_obs[..., z_col + 1:].abs().amax(-1) < 100.0  # amax propagates NaN -> unhealthy
    z_ok = (z > 0.7) & (z < float("inf"))
    angle_ok = (angle > -0.2) & (angle < 0.2)
    return state_ok & z_ok & angle_ok


def hopper_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Hopper-v5 with x kept: ``(x' - x) / dt + 1 * healthy(next) - 1e-3 * ||a||^2``."""
    if obs.shape[-1] != HOPPER_OBS_DIM + 1:
        raise ValueError(f"the Hopper-v5 reward needs the x position (12 observation numbers, got {obs.shape[-1]}): "
                         "keep exclude_current_positions_from_observation false, or let the model learn the reward "
                         "(the dynamics' learn_reward: true, as MBPO does)")
    forward = (next_obs[..., 0] - obs[..., 0]) / HOPPER_DT
    return forward + hopper_healthy(next_obs).to(next_obs.dtype) - 1e-3 * act.square().sum(-1)


def hopper_terminated(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Hopper-v5 (terminate_when_unhealthy=True) ends as soon as the post-step state is unhealthy."""
    return ~hopper_healthy(next_obs)


def reacher_v5_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Reacher-v5: ``-||fingertip - target|| - ||a||^2`` on the post-step state (next_obs[8:10]: xy gap).

    Fingertip and target share z = 0.01, so the xy gap in the observation is the full 3-D distance.
    """
    return -torch.linalg.vector_norm(next_obs[..., 8:10], dim=-1) - act.square().sum(-1)


def register_gym_tasks() -> None:
    """Register the tasks for gymnasium's own MuJoCo envs."""
    register_task("HalfCheetah-v5", half_cheetah_reward, **KEEP_X)
    register_task("Hopper-v5", hopper_reward, hopper_terminated, **KEEP_X)
    register_task("Reacher-v5", reacher_v5_reward)
