"""Optimisers over H-step action sequences for P environments at once (random shooting, CEM).

Each calls ``evaluate(actions (P, K, H, A)) -> returns (P, K)`` and returns one plan per environment,
(P, H, A); MPC executes its first action. New optimisers (MPPI, iCEM) subclass ``ActionOptimizer``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from mbrl_lightning.checks import check_positive

Evaluate = Callable[[Tensor], Tensor]


class ActionOptimizer(ABC):
    """Searches K candidate sequences of horizon H; subclasses say how candidates are proposed.

    Args:
        horizon: H, planned steps per candidate sequence (the brief's ``mpc_horizon``).
        num_sequences: K, candidate sequences scored per planned action (the brief's ``mpc_num_action_sequences``).
    """

    def __init__(self, horizon: int = 10, num_sequences: int = 1000) -> None:
        check_positive(horizon=horizon, num_sequences=num_sequences)
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
    """K uniform random sequences; the best-scoring one is the plan (eq. 8 of the brief).

    Args:
        horizon: H, planned steps per candidate sequence (the brief's ``mpc_horizon``).
        num_sequences: K, candidate sequences scored per planned action (the brief's ``mpc_num_action_sequences``).
    """

    def optimize(self, evaluate: Evaluate, low: Tensor, high: Tensor, num_envs: int,
                 init_mean: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        candidates = self.uniform(low, high, num_envs, generator)
        best = evaluate(candidates).argmax(dim=1)
        return candidates[torch.arange(num_envs, device=low.device), best]


class CEM(ActionOptimizer):
    """Cross-entropy method: refit a diagonal Gaussian to the ``num_elites`` best of K, ``num_iterations`` times.

    The first population is uniform, as the brief's CEM (or, with ``warm_start``, Gaussian around the previous
    step's plan shifted by one step); later ones are drawn from the refitted Gaussian and clipped to the action
    bounds. ``alpha`` smooths the refit: ``mean <- alpha * elite_mean + (1 - alpha) * mean`` (the brief's
    ``cem_alpha``; 1 = no smoothing). The plan is the final mean.

    Args:
        horizon: H, planned steps per candidate sequence (the brief's ``mpc_horizon``).
        num_sequences: K, candidates scored per CEM iteration.
        num_iterations: refits of the Gaussian per planned action (the brief's ``cem_iterations``).
        num_elites: best candidates the Gaussian is refitted to (the brief's ``cem_num_elites``).
        alpha: smoothing of the refit in (0, 1] (the brief's ``cem_alpha``; 1 = no smoothing).
        warm_start: start from the previous step's plan shifted by one step instead of a uniform population.
    """

    def __init__(self, horizon: int = 10, num_sequences: int = 1000, num_iterations: int = 4,
                 num_elites: int = 5, alpha: float = 1.0, warm_start: bool = False) -> None:
        super().__init__(horizon, num_sequences)
        check_positive(num_iterations=num_iterations, num_elites=num_elites)
        if not 0 < num_elites <= num_sequences:
            raise ValueError(f"num_elites must be in [1, num_sequences={num_sequences}], got {num_elites}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
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


def colored_noise(beta: float, shape: tuple[int, ...], horizon: int, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> Tensor:
    """Gaussian noise of shape (*shape, horizon), unit variance per step, power spectrum proportional to 1/f^beta.

    Drawn in the frequency domain (Fourier coefficients scaled by f^(-beta/2), the lowest frequency clipped at
    1/horizon) and transformed back; beta = 0 is white noise, larger beta gives smoother, slower-varying sequences.
    """
    if beta < 0:
        raise ValueError(f"beta (noise exponent) must be >= 0, got {beta}")
    freqs = torch.fft.rfftfreq(horizon, device=device)
    freqs[0] = 1.0 / horizon
    scale = freqs ** (-beta / 2)
    re = torch.randn((*shape, len(freqs)), device=device, generator=generator) * scale
    im = torch.randn((*shape, len(freqs)), device=device, generator=generator) * scale
    # The zero (and, for even horizons, the Nyquist) coefficient is real: give it the power of a complex one.
    real_only = [0, len(freqs) - 1] if horizon % 2 == 0 else [0]
    re[..., real_only] *= 2**0.5
    im[..., real_only] = 0.0
    # Var(x_t) = (2 s_0^2 + 4 sum_mid s_k^2 + 2 s_nyq^2) / H^2, the same at every t: divide it out.
    weight = torch.full_like(scale, 4.0)
    weight[real_only] = 2.0
    std = (weight * scale**2).sum().sqrt() / horizon
    return torch.fft.irfft(torch.complex(re, im), n=horizon) / std


class ICEM(ActionOptimizer):
    """Improved CEM (Pinneri et al. 2020): coloured noise, kept elites, a shrinking population, best-seen plan.

    Iteration i draws ``max(2 * num_elites, int(num_sequences / decay**i))`` candidates (the kept elites of the
    previous iteration among them, re-scored with the rest) as ``clip(mean + std * noise)`` with 1/f^``beta``
    noise along the horizon. The Gaussian starts at the shifted previous plan (``warm_start`` and ``init_mean``)
    or the middle of the bounds, with std ``init_std`` x half the action range, and is refitted to the
    ``num_elites`` best: ``mean <- (1 - momentum) * elite_mean + momentum * mean`` (same for std). A fraction
    ``keep_elites`` of the elites joins the next population; the last iteration also scores the mean itself.
    The plan is the best sequence seen over all iterations, or the final mean with ``return_mean``.

    Args:
        horizon: H, planned steps per candidate sequence.
        num_sequences: N, candidates in the first iteration (later ones shrink by ``decay``).
        num_iterations: refits of the Gaussian per planned action.
        num_elites: best candidates the Gaussian is refitted to.
        beta: exponent of the 1/f^beta noise along the horizon (0 = white, 2 = the paper's default).
        decay: the population shrinks by this factor per iteration (>= 1).
        keep_elites: fraction of the elites carried into the next iteration's population.
        momentum: weight of the old mean and std in the refit (the paper's alpha), in [0, 1).
        init_std: first std, as a fraction of half the action range.
        warm_start: start from the previous step's plan shifted by one step instead of the middle of the bounds.
        return_mean: plan with the final mean instead of the best sequence seen.
    """

    def __init__(self, horizon: int = 10, num_sequences: int = 300, num_iterations: int = 4, num_elites: int = 10,
                 beta: float = 2.0, decay: float = 1.25, keep_elites: float = 0.3, momentum: float = 0.1,
                 init_std: float = 0.5, warm_start: bool = True, return_mean: bool = False) -> None:
        super().__init__(horizon, num_sequences)
        if num_iterations <= 0:
            raise ValueError(f"num_iterations must be positive, got {num_iterations}")
        if not 0 < num_elites <= num_sequences:
            raise ValueError(f"num_elites must be in [1, num_sequences={num_sequences}], got {num_elites}")
        if beta < 0:
            raise ValueError(f"beta (noise exponent) must be >= 0, got {beta}")
        if decay < 1.0:
            raise ValueError(f"decay (population shrink factor per iteration) must be >= 1, got {decay}")
        if not 0.0 <= keep_elites <= 1.0:
            raise ValueError(f"keep_elites (fraction of elites kept) must be in [0, 1], got {keep_elites}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if init_std <= 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.num_iterations, self.num_elites, self.beta, self.decay = num_iterations, num_elites, beta, decay
        self.keep_elites, self.momentum, self.init_std = keep_elites, momentum, init_std
        self.warm_start, self.return_mean = warm_start, return_mean

    def population(self, iteration: int) -> int:
        """Candidates scored in iteration ``iteration`` (0-based)."""
        return max(2 * self.num_elites, int(self.num_sequences / self.decay**iteration))

    @property
    def evaluations_per_plan(self) -> int:
        return sum(self.population(i) for i in range(self.num_iterations))

    def optimize(self, evaluate: Evaluate, low: Tensor, high: Tensor, num_envs: int,
                 init_mean: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        p_idx = torch.arange(num_envs, device=low.device)
        shape = (num_envs, self.horizon, low.shape[0])
        if self.warm_start and init_mean is not None:
            mean = init_mean.clone()
        else:
            mean = ((low + high) / 2).expand(shape).clone()
        std = (self.init_std * (high - low) / 2).expand(shape).clone()
        num_kept = int(self.keep_elites * self.num_elites)
        kept = best = best_score = None
        for i in range(self.num_iterations):
            num_new = self.population(i) - (0 if kept is None else num_kept)
            noise = colored_noise(self.beta, (num_envs, num_new, low.shape[0]), self.horizon, low.device, generator)
            candidates = torch.clamp(mean[:, None] + std[:, None] * noise.transpose(-1, -2), low, high)
            if i == self.num_iterations - 1:
                candidates[:, 0] = torch.clamp(mean, low, high)
            if kept is not None:
                candidates = torch.cat([kept, candidates], dim=1)
            scores = evaluate(candidates)
            top = scores.topk(self.num_elites, dim=1)
            elites = candidates[p_idx[:, None], top.indices]
            if best is None:
                best, best_score = elites[:, 0], top.values[:, 0]
            else:
                better = top.values[:, 0] > best_score
                best = torch.where(better[:, None, None], elites[:, 0], best)
                best_score = torch.where(better, top.values[:, 0], best_score)
            mean = (1 - self.momentum) * elites.mean(1) + self.momentum * mean
            std = (1 - self.momentum) * elites.std(1, unbiased=False) + self.momentum * std
            kept = elites[:, :num_kept] if num_kept > 0 else None
        return torch.clamp(mean, low, high) if self.return_mean else best


class MPPI(ActionOptimizer):
    """MPPI as in PDDM (Williams et al. 2017; Nagabandi et al. 2019): a reward-weighted mean of noisy sequences.

    Candidates are ``clip(mean + n)`` with smoothed noise ``n_t = beta * u_t + (1 - beta) * n_{t-1}``,
    ``u_t ~ N(0, (sigma * half range)^2)``; the new mean is their average weighted by ``exp(gamma * (R - max R))``.
    ``gamma`` is PDDM's reward-weighting factor, an inverse temperature: large gamma gives the best candidate,
    gamma -> 0 their plain mean. The mean starts at the previous plan shifted by one step (``init_mean``, which
    ``MPCPolicy`` supplies) or the middle of the bounds; ``num_iterations`` > 1 repeats the update. The plan is
    the final mean.

    Args:
        horizon: H, planned steps per candidate sequence.
        num_sequences: K, noisy candidates per update.
        num_iterations: updates of the mean per planned action.
        gamma: reward-weighting factor (an inverse temperature): large gives the best candidate, small the mean.
        beta: noise smoothing along the horizon, in (0, 1] (1 = white noise).
        sigma: noise std as a fraction of half the action range.
    """

    def __init__(self, horizon: int = 10, num_sequences: int = 1000, num_iterations: int = 1, gamma: float = 10.0,
                 beta: float = 0.6, sigma: float = 0.9) -> None:
        super().__init__(horizon, num_sequences)
        if num_iterations <= 0:
            raise ValueError(f"num_iterations must be positive, got {num_iterations}")
        if gamma <= 0:
            raise ValueError(f"gamma (reward-weighting factor) must be positive, got {gamma}")
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta (noise smoothing) must be in (0, 1], got {beta}")
        if sigma <= 0:
            raise ValueError(f"sigma (noise std) must be positive, got {sigma}")
        self.num_iterations, self.gamma, self.beta, self.sigma = num_iterations, gamma, beta, sigma

    @property
    def evaluations_per_plan(self) -> int:
        return self.num_sequences * self.num_iterations

    def optimize(self, evaluate: Evaluate, low: Tensor, high: Tensor, num_envs: int,
                 init_mean: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        shape = (num_envs, self.num_sequences, self.horizon, low.shape[0])
        mean = ((low + high) / 2).expand(num_envs, *shape[2:]) if init_mean is None else init_mean
        for _ in range(self.num_iterations):
            u = torch.randn(shape, device=low.device, generator=generator) * (self.sigma * (high - low) / 2)
            noise = torch.empty_like(u)
            prev = torch.zeros_like(u[:, :, 0])
            for t in range(self.horizon):
                prev = noise[:, :, t] = self.beta * u[:, :, t] + (1 - self.beta) * prev
            candidates = torch.clamp(mean[:, None] + noise, low, high)
            weights = torch.softmax(self.gamma * evaluate(candidates), dim=1)  # = exp(gamma (R - max R)) / sum
            mean = torch.clamp((weights[:, :, None, None] * candidates).sum(1), low, high)  # rounding can overstep
        return mean
