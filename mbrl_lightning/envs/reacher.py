"""``mbrl/Reacher7DOF-v0``: a 7-DoF arm (``reacher7dof.xml``) that must bring its fingertip to a 3-D target.

Fingertip and target positions are part of the observation, so the reward is a pure function of ``next_obs``.
"""

from __future__ import annotations

import os
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
NEUTRAL_QPOS = np.array([0.0, 1.1, 0.0, -2.0, 0.0, 0.5, 0.0])  # fingertip near (0.47, 0, -0.07)
# Targets are drawn uniformly from this box (metres, shoulder at the origin); every point of it is reachable.
TARGET_LOW = np.array([0.30, -0.30, -0.25])
TARGET_HIGH = np.array([0.60, 0.30, 0.15])


def reacher_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """``-10 * ||fingertip - target||`` on the post-step state."""
    return -10.0 * torch.linalg.vector_norm(next_obs[..., FINGERTIP] - next_obs[..., TARGET], dim=-1)


class Reacher7DOFEnv(MujocoEnv):
    """7-DoF torque-controlled arm without gravity; dt 0.02 (timestep 0.01, frame_skip 2); no termination.

    Reset: qpos = neutral pose + U(-0.1, 0.1) (clipped to the joint limits), qvel = 0, target ~ U(box).
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 50}

    def __init__(self, reset_noise_scale: float = 0.1, **kwargs: Any):
        self._reset_noise_scale = reset_noise_scale
        obs_space = spaces.Box(-np.inf, np.inf, shape=(20,), dtype=np.float32)
        camera = {"distance": 1.6, "azimuth": 120.0, "elevation": -25.0, "lookat": np.array([0.3, 0.0, -0.1])}
        kwargs.setdefault("default_camera_config", camera)
        super().__init__(XML_PATH, frame_skip=2, observation_space=obs_space, **kwargs)
        self._fingertip = self.model.site("fingertip").id
        self._joint_low, self._joint_high = self.model.jnt_range.T.copy()

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
        s = self._reset_noise_scale
        qpos = NEUTRAL_QPOS + self.np_random.uniform(-s, s, size=self.model.nq)
        qpos = np.clip(qpos, self._joint_low, self._joint_high)
        self.data.mocap_pos[0] = self.np_random.uniform(TARGET_LOW, TARGET_HIGH)
        self.set_state(qpos, np.zeros(self.model.nv))  # set_state runs mj_forward: fingertip is up to date
        return self._get_obs()
