"""Score candidate action sequences with the learned ensemble: the one rollout every planner calls."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbrl_lightning.envs import Task

# (obs (E, N, obs_dim), act (E, N, act_dim)) -> next obs (E, N, obs_dim)
StepFn = Callable[[Tensor, Tensor], Tensor]


@torch.inference_mode()
def evaluate_sequences(step: StepFn, task: Task, obs: Tensor, actions: Tensor, ensemble_size: int,
                       discount: float = 1.0) -> Tensor:
    """Predicted return of each candidate, averaged over ensemble members.

    Args:
        step: the model's one-step prediction, batched over members (``DynamicsEnsemble.predict_next``).
        task: the env's batched reward and termination functions.
        obs: start states of P environments, (P, obs_dim).
        actions: K candidate sequences per environment, (P, K, H, act_dim).
        ensemble_size: E; every member rolls out every candidate along its own predicted trajectory.
        discount: per-step discount of the summed reward; a predicted termination stops the sum.

    Returns:
        (P, K) mean over members of the (discounted) sum of predicted rewards.
    """
    p, k, horizon, act_dim = actions.shape
    n = p * k
    state = obs.repeat_interleave(k, dim=0).expand(ensemble_size, n, obs.shape[-1])
    acts = actions.reshape(n, horizon, act_dim).transpose(0, 1)  # (H, N, act_dim)
    total = torch.zeros(ensemble_size, n, device=obs.device, dtype=obs.dtype)
    alive = torch.ones(ensemble_size, n, device=obs.device, dtype=obs.dtype)
    weight = 1.0
    for t in range(horizon):
        act = acts[t].expand(ensemble_size, n, act_dim)
        nxt = step(state, act)
        total += weight * alive * task.reward(state, act, nxt)
        alive = alive * (~task.terminated(state, act, nxt)).to(alive.dtype)
        state, weight = nxt, weight * discount
    return total.mean(0).reshape(p, k)
