"""Model predictive control: replan every step for a batch of environments, execute the first action."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from mbrl_lightning.checks import check_positive
from mbrl_lightning.envs import Task
from mbrl_lightning.planning.optimizers import ActionOptimizer
from mbrl_lightning.planning.rollout import StepFn, evaluate_sequences


class MPCPolicy:
    """Plans with ``optimizer`` on the model's predictions of ``task``'s reward for all given envs at once.

    Keeps each env's last plan (shifted by one step) as its next warm start; ``reset`` forgets it when that env's
    episode starts (the other envs keep theirs). Satisfies ``mbrl_lightning.data.Policy``.
    """

    def __init__(self, step: StepFn, ensemble_size: int, task: Task | None, optimizer: ActionOptimizer, low: Tensor,
                 high: Tensor, max_envs: int, discount: float = 1.0, device: torch.device | str = "cpu",
                 seed: int = 0, chunk_size: int | None = -1, bf16: bool = False, particles: int = 1,
                 resample_members: bool = False) -> None:
        check_positive(ensemble_size=ensemble_size, max_envs=max_envs, particles=particles)
        self.particles, self.resample_members = particles, resample_members  # PETS (evaluate_sequences)
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
                                         self.chunk_size, self.particles, self.resample_members, self.generator)
        return returns.float()

    def _plan(self, obs: Tensor, env_idx: Tensor, warm: bool) -> Tensor:
        """Plans (P, H, A) for these envs; ``warm``: start from each one's last plan shifted by one step."""
        init = None
        if warm:
            prev = self.plans[env_idx]
            init = torch.cat([prev[:, 1:], ((self.low + self.high) / 2).expand(len(env_idx), 1, -1)], dim=1)
        return self.optimizer.optimize(lambda acts: self.evaluate(obs, acts), self.low, self.high,
                                       num_envs=obs.shape[0], init_mean=init, generator=self.generator)

    @torch.inference_mode()
    def act(self, obs: Tensor, env_idx: Tensor) -> Tensor:
        start = time.perf_counter()
        obs, env_idx = obs.to(self.device), env_idx.to(self.device)
        warm = self.has_plan[env_idx]
        if bool(warm.all()) or not bool(warm.any()):
            plan = self._plan(obs, env_idx, warm=bool(warm.all()))
        else:  # some envs just reset: plan those cold and the others from their own warm starts
            plan = torch.empty(obs.shape[0], *self.plans.shape[1:], device=self.device)
            plan[warm] = self._plan(obs[warm], env_idx[warm], warm=True)
            plan[~warm] = self._plan(obs[~warm], env_idx[~warm], warm=False)
        self.plans[env_idx] = plan
        self.has_plan[env_idx] = True
        action = plan[:, 0].cpu()
        self.plan_seconds += time.perf_counter() - start
        self.planned_actions += obs.shape[0]
        return action
