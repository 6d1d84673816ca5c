"""Model predictive control: replan every step for a batch of environments, execute the first action."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from mbrl_lightning.envs import Task
from mbrl_lightning.planning.optimizers import ActionOptimizer
from mbrl_lightning.planning.rollout import StepFn, evaluate_sequences


class MPCPolicy:
    """Plans with ``optimizer`` on the model's predictions of ``task``'s reward for all given envs at once.

    Keeps each env's last plan (shifted by one step) as the next warm start; ``reset`` forgets it when an
    episode starts. Satisfies ``mbrl_lightning.data.Policy``.
    """

    def __init__(self, step: StepFn, ensemble_size: int, task: Task, optimizer: ActionOptimizer, low: Tensor,
                 high: Tensor, max_envs: int, discount: float = 1.0, device: torch.device | str = "cpu",
                 seed: int = 0, chunk_size: int | None = -1, bf16: bool = False) -> None:
        self.step, self.ensemble_size, self.task, self.optimizer = step, ensemble_size, task, optimizer
        self.discount, self.device, self.chunk_size = discount, torch.device(device), chunk_size
        self.bf16 = bf16  # matmuls in bfloat16 under autocast; states and returns stay float32
        self.low, self.high = low.to(self.device), high.to(self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        h, a = optimizer.horizon, low.shape[0]
        self.plans = torch.zeros(max_envs, h, a, device=self.device)
        self.has_plan = torch.zeros(max_envs, dtype=torch.bool, device=self.device)
        self.plan_seconds, self.planned_actions = 0.0, 0

    def reset(self, env_idx: Tensor) -> None:
        self.has_plan[env_idx.to(self.device)] = False

    def evaluate(self, obs: Tensor, actions: Tensor) -> Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            returns = evaluate_sequences(self.step, self.task, obs, actions, self.ensemble_size, self.discount,
                                         self.chunk_size)
        return returns.float()

    @torch.inference_mode()
    def act(self, obs: Tensor, env_idx: Tensor) -> Tensor:
        start = time.perf_counter()
        obs, env_idx = obs.to(self.device), env_idx.to(self.device)
        init = None
        if bool(self.has_plan[env_idx].all()):
            prev = self.plans[env_idx]
            init = torch.cat([prev[:, 1:], ((self.low + self.high) / 2).expand(len(env_idx), 1, -1)], dim=1)
        plan = self.optimizer.optimize(lambda acts: self.evaluate(obs, acts), self.low, self.high,
                                       num_envs=obs.shape[0], init_mean=init, generator=self.generator)
        self.plans[env_idx] = plan
        self.has_plan[env_idx] = True
        action = plan[:, 0].cpu()
        self.plan_seconds += time.perf_counter() - start
        self.planned_actions += obs.shape[0]
        return action
