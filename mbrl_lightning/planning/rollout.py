"""Score candidate action sequences with the learned ensemble: the one rollout every planner calls."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbrl_lightning.envs import Task
from mbrl_lightning.envs.tasks import never_terminates

# (obs (E, N, obs_dim), act (E, N, act_dim)) -> next obs (E, N, obs_dim)
StepFn = Callable[[Tensor, Tensor], Tensor]


def default_chunk_size(device: torch.device) -> int | None:
    """Rows per member evaluated at once: on CPU, blocks whose activations stay in cache run about twice as
    fast as one huge batch (benchmarks/planning.py); a GPU wants the whole batch at once."""
    return 512 if device.type == "cpu" else None


@torch.inference_mode()
def evaluate_sequences(step: StepFn, task: Task, obs: Tensor, actions: Tensor, ensemble_size: int,
                       discount: float = 1.0, chunk_size: int | None = -1) -> Tensor:
    """Predicted return of each candidate, averaged over ensemble members.

    Args:
        step: the model's one-step prediction, batched over members (``DynamicsEnsemble.predict_next`` or its
            ``folded_step()``); its result need only stay valid until the second call after it.
        task: the env's batched reward and termination functions.
        obs: start states of P environments, (P, obs_dim).
        actions: K candidate sequences per environment, (P, K, H, act_dim).
        ensemble_size: E; every member rolls out every candidate along its own predicted trajectory.
        discount: per-step discount of the summed reward; a predicted termination stops the sum.
        chunk_size: candidates (rows of P*K) rolled out together; -1 picks the device's default, None all.

    Returns:
        (P, K) mean over members of the (discounted) sum of predicted rewards.
    """
    p, k, horizon, act_dim = actions.shape
    n = p * k
    if chunk_size == -1:
        chunk_size = default_chunk_size(obs.device)
    chunk_size = n if chunk_size is None else chunk_size
    starts = obs.repeat_interleave(k, dim=0)  # (N, obs_dim)
    acts = actions.reshape(n, horizon, act_dim).transpose(0, 1)  # (H, N, act_dim)
    total = torch.empty(n, device=obs.device, dtype=obs.dtype)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        total[lo:hi] = _rollout(step, task, starts[lo:hi], acts[:, lo:hi], ensemble_size, discount)
    return total.reshape(p, k)


def _rollout(step: StepFn, task: Task, start: Tensor, acts: Tensor, ensemble_size: int, discount: float) -> Tensor:
    """Member-mean discounted return of C candidates: start (C, obs_dim), acts (H, C, act_dim) -> (C,).

    Accumulates in place; a task that never terminates skips the alive mask (same sums, fewer passes).
    """
    c = start.shape[0]
    state = start.expand(ensemble_size, c, start.shape[-1])
    total = torch.zeros(ensemble_size, c, device=start.device, dtype=start.dtype)
    alive = None if task.terminated is never_terminates else torch.ones_like(total)
    weight = 1.0
    for t in range(acts.shape[0]):
        act = acts[t].expand(ensemble_size, c, acts.shape[-1])
        nxt = step(state, act)
        reward = task.reward(state, act, nxt)
        if alive is None:
            total.add_(reward, alpha=weight)
        else:
            total.addcmul_(alive, reward, value=weight)
            alive.masked_fill_(task.terminated(state, act, nxt), 0.0)
        state, weight = nxt, weight * discount
    return total.mean(0)
