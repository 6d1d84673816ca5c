"""Optimisers over H-step action sequences for P environments at once (random shooting, CEM).

Each calls ``evaluate(actions (P, K, H, A)) -> returns (P, K)`` and returns one plan per environment,
(P, H, A); MPC executes its first action. New optimisers (MPPI, iCEM) subclass ``ActionOptimizer``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

Evaluate = Callable[[Tensor], Tensor]


class ActionOptimizer(ABC):
    """Searches K candidate sequences of horizon H; subclasses say how candidates are proposed."""

    def __init__(self, horizon: int = 10, num_sequences: int = 1000) -> None:
        if horizon <= 0 or num_sequences <= 0:
            raise ValueError(f"horizon and num_sequences must be positive, got {horizon}, {num_sequences}")
        self.horizon, self.num_sequences = horizon, num_sequences

    @property
    def evaluations_per_plan(self) -> int:
        """Candidate sequences scored per planned action (for cost accounting)."""
        return self.num_sequences

    def uniform(self, low: Tensor, high: Tensor, num_envs: int, generator: torch.Generator | None) -> Tensor:
        shape = (num_envs, self.num_sequences, self.horizon, low.shape[0])
        u = torch.rand(shape, device=low.device, generator=generator)
        return low + u * (high - low)

    @abstractmethod
    def optimize(self, evaluate: Evaluate, low: Tensor, high: Tensor, num_envs: int,
                 init_mean: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Plans of shape (P, H, A); ``init_mean`` (P, H, A) is the warm start, where the method uses one."""


class RandomShooting(ActionOptimizer):
    """K uniform random sequences; the best-scoring one is the plan (eq. 8 of the brief)."""

    def optimize(self, evaluate: Evaluate, low: Tensor, high: Tensor, num_envs: int,
                 init_mean: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        candidates = self.uniform(low, high, num_envs, generator)
        best = evaluate(candidates).argmax(dim=1)
        return candidates[torch.arange(num_envs, device=low.device), best]


class CEM(ActionOptimizer):
    """Cross-entropy method: refit a diagonal Gaussian to the ``num_elites`` best of K, ``num_iterations`` times.

    The first population is uniform, as the brief's CEM (or, with ``warm_start``, Gaussian around the previous
    step's plan shifted by one step); later ones are drawn from the refitted Gaussian and clipped to the action bounds. ``alpha``
    smooths the refit: ``mean <- alpha * elite_mean + (1 - alpha) * mean`` (the brief's ``cem_alpha``; 1 = no
    smoothing). The plan is the final mean.
    """

    def __init__(self, horizon: int = 10, num_sequences: int = 1000, num_iterations: int = 4,
                 num_elites: int = 5, alpha: float = 1.0, warm_start: bool = False) -> None:
        super().__init__(horizon, num_sequences)
        if not 0 < num_elites <= num_sequences:
            raise ValueError(f"num_elites must be in [1, num_sequences={num_sequences}], got {num_elites}")
        if num_iterations <= 0 or not 0.0 < alpha <= 1.0:
            raise ValueError("num_iterations must be positive and alpha in (0, 1]")
        self.num_iterations, self.num_elites, self.alpha = num_iterations, num_elites, alpha
        self.warm_start = warm_start

    @property
    def evaluations_per_plan(self) -> int:
        return self.num_sequences * self.num_iterations

    def optimize(self, evaluate: Evaluate, low: Tensor, high: Tensor, num_envs: int,
                 init_mean: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        p_idx = torch.arange(num_envs, device=low.device)[:, None]
        mean = std = None
        if self.warm_start and init_mean is not None:
            mean = init_mean
            std = ((high - low) / 4).expand_as(mean).clone()
        for _ in range(self.num_iterations):
            if mean is None:
                candidates = self.uniform(low, high, num_envs, generator)
            else:
                noise = torch.randn((num_envs, self.num_sequences, *mean.shape[1:]), device=low.device,
                                    generator=generator)
                candidates = torch.clamp(mean[:, None] + std[:, None] * noise, low, high)
            elites = candidates[p_idx, evaluate(candidates).topk(self.num_elites, dim=1).indices]
            elite_mean, elite_std = elites.mean(1), elites.std(1, unbiased=False)
            if mean is None:
                mean, std = elite_mean, elite_std
            else:
                mean = self.alpha * elite_mean + (1 - self.alpha) * mean
                std = self.alpha * elite_std + (1 - self.alpha) * std
        return mean
