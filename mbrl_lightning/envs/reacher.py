"""``mbrl/Reacher7DOF-v0``: the homework's 7-DoF arm (``reacher7dof.xml``) that brings its fingertip to a 3-D target.

Kinematics, joint limits, gears, integrator and reset follow the public reference homework: the arm starts
straight (qpos = 0, fingertip near (0.82, -0.6, 0)) about 1 m from the targets, so it has to swing over.
Fingertip and target are part of the observation, so the reward is a pure function of ``next_obs``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from torch import Tensor

XML_PATH = os.path.join(os.path.dirname(__file__), "reacher7dof.xml")
# Observation layout (20,): qpos (7) | qvel / 10 (7) | fingertip xyz (3) | target xyz (3).
FINGERTIP = slice(14, 17)
TARGET = slice(17, 20)
# Targets are drawn uniformly from this box (world frame).
TARGET_LOW = np.array([-0.3, -0.2, -0.25])
TARGET_HIGH = np.array([0.3, 0.2, 0.25])


def reacher_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """``-10 * ||fingertip - target||`` on the post-step state."""
    return -10.0 * torch.linalg.vector_norm(next_obs[..., FINGERTIP] - next_obs[..., TARGET], dim=-1)


class Reacher7DOFEnv(MujocoEnv):
    """7-DoF torque-controlled arm without gravity; dt 0.02 (timestep 0.01, frame_skip 2); never terminates.

    Reset: qpos = 0, qvel = 0, target ~ U(TARGET_LOW, TARGET_HIGH), then one zero-action step; the observation
    after that step is the first one. ``fixed_target`` pins the target instead (the reference's ``reset`` in fact
    overwrites its drawn target with (0.1, 0.1, 0.1); pass that to reproduce it).
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 50}

    def __init__(self, fixed_target: Sequence[float] | None = None, **kwargs: Any):
        self._fixed_target = None if fixed_target is None else np.asarray(fixed_target, dtype=np.float64)
        if self._fixed_target is not None and self._fixed_target.shape != (3,):
            raise ValueError(f"fixed_target must be 3 numbers (x, y, z), got {fixed_target!r}")
        obs_space = spaces.Box(-np.inf, np.inf, shape=(20,), dtype=np.float32)
        camera = {"distance": 2.2, "azimuth": 135.0, "elevation": -30.0, "lookat": np.array([0.2, -0.3, 0.0])}
        kwargs.setdefault("default_camera_config", camera)
        super().__init__(XML_PATH, frame_skip=2, observation_space=obs_space, **kwargs)
        self._fingertip = self.model.site("fingertip").id

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)
        mujoco.mj_kinematics(self.model, self.data)  # site positions for the post-step qpos

    @property
    def target(self) -> np.ndarray:
        """Current target position (3,)."""
        return self.data.mocap_pos[0].copy()

    def _get_obs(self) -> np.ndarray:
        d = self.data
        parts = [d.qpos, d.qvel / 10.0, d.site_xpos[self._fingertip], d.mocap_pos[0]]
        return np.concatenate(parts).astype(np.float32)

    def step(self, action: np.ndarray):
        self.do_simulation(np.clip(action, -1.0, 1.0), self.frame_skip)
        obs = self._get_obs()
        # Same formula as ``reacher_reward``, evaluated on the float32 observation.
        dist = float(np.linalg.norm(obs[FINGERTIP].astype(np.float64) - obs[TARGET].astype(np.float64)))
        if self.render_mode == "human":
            self.render()
        return obs, -10.0 * dist, False, False, {"distance": dist}

    def reset_model(self) -> np.ndarray:
        target = self.np_random.uniform(TARGET_LOW, TARGET_HIGH)
        self.data.mocap_pos[0] = target if self._fixed_target is None else self._fixed_target
        self.set_state(np.zeros(self.model.nq), np.zeros(self.model.nv))
        self.do_simulation(np.zeros(self.model.nu), self.frame_skip)  # the reference's zero-action step
        return self._get_obs()
