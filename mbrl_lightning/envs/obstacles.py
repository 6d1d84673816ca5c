"""``mbrl/Obstacles-v0``: the homework's 2-D point mass that steers around five rectangles to a fixed goal.

Pure numpy and identical in its rules to the public reference homework's obstacles env: random starts in the
upper-left region, goal (0.7, -0.8), moves of ``clip(a, -1, 1) / 10`` that are rejected when they leave the open
square (-0.99, 0.99)^2 or end strictly inside an obstacle. The planner learns the walls only through the model.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

BOUNDARY = 0.99  # positions live in the open square (-BOUNDARY, BOUNDARY)^2
GOAL = np.array([0.7, -0.8])
GOAL_RADIUS = 0.1
STEP_SCALE = 0.1  # a move is clip(action, -1, 1) / 10
# Start region: x in [-0.99, 0.59], y in [0.26, 0.99], redrawn until the point is valid.
START_LOW = np.array([-BOUNDARY, -BOUNDARY + 1.25])
START_HIGH = np.array([BOUNDARY - 0.4, BOUNDARY])
# The reference's five axis-aligned obstacles as (x_min, x_max, y_min, y_max).
OBSTACLES = np.array(
    [
        [-0.4, 0.0, 0.5, 0.8],
        [-0.9, -0.7, -0.3, 0.3],
        [0.6, 0.72, -0.5, -0.1],
        [-0.1, 0.05, -0.2, 0.2],
        [0.1, 0.4, -0.85, -0.7],
    ]
)


def in_obstacle(pos: np.ndarray) -> bool:
    """True if ``pos`` (2,) lies strictly inside any obstacle (a point on an edge is outside)."""
    x, y = pos
    o = OBSTACLES
    return bool(np.any((x > o[:, 0]) & (x < o[:, 1]) & (y > o[:, 2]) & (y < o[:, 3])))


def is_valid(pos: np.ndarray) -> bool:
    """A position the agent may occupy: inside the open square and not strictly inside an obstacle."""
    return bool(np.all(np.abs(pos) < BOUNDARY)) and not in_obstacle(pos)


def obstacles_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Negative Euclidean distance from the new position to the goal."""
    return -torch.linalg.vector_norm(next_obs[..., :2] - next_obs[..., 2:4], dim=-1)


def obstacles_terminated(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Episode ends once the new position is within ``GOAL_RADIUS`` of the goal."""
    return torch.linalg.vector_norm(next_obs[..., :2] - next_obs[..., 2:4], dim=-1) < GOAL_RADIUS


class ObstaclesEnv(gym.Env):
    """Point mass; observation (x, y, goal_x, goal_y), action Box(-0.99, 0.99, (2,)) moved by ``clip(a, -1, 1) / 10``.

    Reset draws the start uniformly from ``[START_LOW, START_HIGH]`` with the env's seeded generator until it is a
    valid point. Reward is ``-||new_pos - goal||``; the episode terminates when that distance is below 0.1.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, image_size: int = 128):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"Unsupported render_mode {render_mode!r}")
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.action_space = spaces.Box(-BOUNDARY, BOUNDARY, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.goal = GOAL.copy()
        self.pos = np.array([-0.5, 0.75])

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        while True:
            pos = self.np_random.uniform(START_LOW, START_HIGH)
            if is_valid(pos):
                break
        self.pos = pos
        return self._obs(), {}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        proposal = self.pos + STEP_SCALE * action
        blocked = not is_valid(proposal)
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
        img[(np.abs(x) >= BOUNDARY) | (np.abs(y) >= BOUNDARY)] = (0, 0, 0)  # the walls of the square
        for x0, x1, y0, y1 in OBSTACLES:
            img[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = (110, 110, 110)
        img[(x - self.goal[0]) ** 2 + (y - self.goal[1]) ** 2 <= GOAL_RADIUS**2] = (40, 180, 60)
        img[(x - self.pos[0]) ** 2 + (y - self.pos[1]) ** 2 <= 0.04**2] = (30, 60, 220)
        return img
