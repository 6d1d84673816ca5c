"""``mbrl/Cheetah-v0``: the homework's cheetah: gymnasium's half-cheetah model at frame_skip 1 (dt = 0.01).

Observation, reward, reset and episode length are the public reference homework's. The observation keeps the
root x velocity and the front-leg joint angles, so the reward (run forward, keep the front leg tucked) is a pure
function of ``next_obs`` and can be evaluated on model-predicted states. One deliberate difference: the
reference reads the torso position before MuJoCo's integration (it lags qpos by one step); ours is refreshed
after the step, so the whole observation describes one state.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import Any

import gymnasium
import mujoco
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from torch import Tensor

XML_PATH = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", "half_cheetah.xml")
TOTAL_MASS = re.compile(r'\s*settotalmass="([0-9.eE+-]+)"')
# Observation layout (21,): qpos (9) | qvel (9) | torso position (3), the reference's ``get_body_com("torso")``.
ROOT_X_VEL = 9  # qvel[0]
FTHIGH, FSHIN, FFOOT = 6, 7, 8  # qpos indices of the front-leg joints


def cheetah_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Root x velocity minus 10 per front-leg joint past its limit (thigh > 0.2, shin > 0, foot > 0).

    The three joints sit side by side in the observation: one compare against the three limits and a count,
    five tensor ops in all where the three compares took thirteen (the planner calls this at every step of
    every rollout chunk). Exactly the same values: the count is an integer, scaled and subtracted in
    ``next_obs``'s dtype."""
    past = next_obs[..., FTHIGH : FFOOT + 1] > _leg_limits(next_obs.device, next_obs.dtype)
    return torch.sub(next_obs[..., ROOT_X_VEL], past.sum(-1), alpha=10.0)


@cache
def _leg_limits(device: torch.device, dtype: torch.dtype) -> Tensor:
    """The front thigh's, shin's and foot's limits, made once per device and dtype."""
    return torch.tensor([0.2, 0.0, 0.0], device=device, dtype=dtype)


class CheetahEnv(MujocoEnv):
    """Half-cheetah, frame_skip 1 (dt 0.01), 6 torque actions in [-1, 1], no termination.

    Observation (21,) float32: qpos (9, rootx first), qvel (9), then the torso body's frame position
    (``data.xpos``, what gymnasium's ``get_body_com("torso")`` returns). Reset: qpos = init + U(-0.1, 0.1),
    qvel = init + 0.1 N(0, 1).
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 100}

    def __init__(self, reset_noise_scale: float = 0.1, **kwargs: Any):
        self._reset_noise_scale = reset_noise_scale
        obs_space = spaces.Box(-np.inf, np.inf, shape=(21,), dtype=np.float32)
        camera = {"distance": 4.0, "trackbodyid": 1}
        kwargs.setdefault("default_camera_config", camera)
        super().__init__(XML_PATH, frame_skip=1, observation_space=obs_space, **kwargs)
        self._torso = self.model.body("torso").id

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """Compile the model with MuJoCo's own ``mj_setTotalmass`` instead of the deprecated ``settotalmass``
        attribute, which makes MuJoCo >= 4 print a warning (and write MUJOCO_LOG.TXT) on every env made."""
        with open(self.fullpath) as f:
            xml = f.read()
        total = TOTAL_MASS.search(xml)
        model = mujoco.MjModel.from_xml_string(TOTAL_MASS.sub("", xml))
        if total:
            mujoco.mj_setTotalmass(model, float(total.group(1)))
            mujoco.mj_setConst(model, mujoco.MjData(model))
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)
        # mj_step leaves positional quantities at the pre-integration state; refresh them for the new qpos.
        mujoco.mj_kinematics(self.model, self.data)

    def _get_obs(self) -> np.ndarray:
        d = self.data
        return np.concatenate([d.qpos, d.qvel, d.xpos[self._torso]]).astype(np.float32)

    def step(self, action: np.ndarray):
        self.do_simulation(np.clip(action, -1.0, 1.0), self.frame_skip)
        obs = self._get_obs()
        # Same formula as ``cheetah_reward``, evaluated on the float32 observation.
        penalty = int(obs[FTHIGH] > 0.2) + int(obs[FSHIN] > 0.0) + int(obs[FFOOT] > 0.0)
        reward = float(obs[ROOT_X_VEL]) - 10.0 * penalty
        if self.render_mode == "human":
            self.render()
        return obs, reward, False, False, {"x_velocity": float(self.data.qvel[0])}

    def reset_model(self) -> np.ndarray:
        s = self._reset_noise_scale
        qpos = self.init_qpos + self.np_random.uniform(-s, s, size=self.model.nq)
        qvel = self.init_qvel + s * self.np_random.standard_normal(self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()
