"""``mbrl/Obstacles-v0``: a 2-D point mass that must steer around rectangular obstacles to a goal.

Pure numpy, so it is cheap and fully deterministic; the greedy straight line from start to goal is blocked,
which makes it a small test of whether a planner looks far enough ahead.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

START = np.array([-0.5, 0.75])
GOAL = np.array([0.7, -0.8])
GOAL_RADIUS = 0.1
STEP_SCALE = 0.1  # a move is action / 10, so at most 0.1 per coordinate per step
# Axis-aligned obstacles as (x_min, y_min, x_max, y_max). Two blocks sit on the start-goal diagonal, so heading
# straight for the goal gets stuck on the first; each is small enough that a detour shows up within a 10-step
# planning horizon (about 1 unit), which is what the brief's MPC can see. A third block sits off the path.
# Every obstacle is >= 0.2 thick, so a single step (<= 0.1 per axis) can never jump through one.
OBSTACLES = np.array(
    [
        [-0.15, -0.20, 0.25, 0.20],  # on the diagonal, near its middle
        [0.30, -0.65, 0.55, -0.40],  # on the diagonal, before the goal
        [-0.75, -0.60, -0.45, -0.30],  # off the path
    ]
)


def in_obstacle(pos: np.ndarray) -> bool:
    """True if ``pos`` (2,) lies inside (or on the boundary of) any obstacle."""
    lo, hi = OBSTACLES[:, :2], OBSTACLES[:, 2:]
    return bool(np.any(np.all((pos >= lo) & (pos <= hi), axis=1)))


def obstacles_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Negative Euclidean distance from the new position to the goal."""
    return -torch.linalg.vector_norm(next_obs[..., :2] - next_obs[..., 2:4], dim=-1)


def obstacles_terminated(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Episode ends once the new position is within ``GOAL_RADIUS`` of the goal."""
    return torch.linalg.vector_norm(next_obs[..., :2] - next_obs[..., 2:4], dim=-1) < GOAL_RADIUS


class ObstaclesEnv(gym.Env):
    """Point mass in [-1, 1]^2; observation (x, y, goal_x, goal_y), action in [-1, 1]^2 moved by ``a / 10``.

    A move that would end inside an obstacle or outside the square is rejected (the agent stays put).
    Reward is ``-||new_pos - goal||``; the episode terminates when that distance is below 0.1.
    ``start_noise`` > 0 jitters the start uniformly by up to that much per axis (0: the fixed start above).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, start_noise: float = 0.0, image_size: int = 128):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.start_noise = float(start_noise)
        self.image_size = int(image_size)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.goal = GOAL.copy()
        self.pos = START.copy()

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = START.copy()
        if self.start_noise > 0:
            self.pos += self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        return self._obs(), {}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        proposal = self.pos + STEP_SCALE * action
        blocked = bool(np.any(np.abs(proposal) > 1.0)) or in_obstacle(proposal)
        if not blocked:
            self.pos = proposal
        obs = self._obs()
        # Distance from the float32 observation, so the batched torch reward reproduces it exactly.
        dist = float(np.linalg.norm(obs[:2].astype(np.float64) - obs[2:].astype(np.float64)))
        return obs, -dist, dist < GOAL_RADIUS, False, {"blocked": blocked, "distance": dist}

    def render(self) -> np.ndarray | None:
        """Top-down RGB image: white square with black walls, grey obstacles, green goal disc, blue agent."""
        if self.render_mode != "rgb_array":
            return None
        n = self.image_size
        centers = (np.arange(n) + 0.5) / n * 2.0 - 1.0
        x, y = np.meshgrid(centers, centers[::-1])  # row 0 is the top of the square (y = +1)
        img = np.full((n, n, 3), 255, dtype=np.uint8)
        img[[0, -1], :] = img[:, [0, -1]] = (0, 0, 0)  # the walls of the square
        for x0, y0, x1, y1 in OBSTACLES:
            img[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = (110, 110, 110)
        img[(x - self.goal[0]) ** 2 + (y - self.goal[1]) ** 2 <= GOAL_RADIUS**2] = (40, 180, 60)
        img[(x - self.pos[0]) ** 2 + (y - self.pos[1]) ** 2 <= 0.04**2] = (30, 60, 220)
        return img
