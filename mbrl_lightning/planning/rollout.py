"""Score candidate action sequences with the learned ensemble: the one rollout every planner calls."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbrl_lightning.envs import Task
from mbrl_lightning.envs.tasks import never_terminates

# (obs (E, N, obs_dim), act (E, N, act_dim)) -> next obs (E, N, obs_dim), or a ``Prediction``
# (next obs, reward (E, N) or None, terminated (E, N) or None) from a model that learns reward/termination
StepFn = Callable[[Tensor, Tensor], "Tensor | tuple[Tensor, Tensor | None, Tensor | None]"]


def default_chunk_size(device: torch.device, dtype: torch.dtype = torch.float32) -> int | None:
    """Rows per member evaluated at once: on CPU, blocks whose activations stay in cache run about twice as
    fast as one huge batch (benchmarks/planning.py); a GPU wants the whole batch at once. In bfloat16 (or
    float16) the CPU's matmuls run several times faster, so the fixed cost of the small ops between them (the
    activations, casts, residual and reward: some 20 calls a step) weighs more: 2048 rows share it out
    (``benchmarks/planning.py --bf16 --chunk-sizes 512 2048``)."""
    if device.type != "cpu":
        return None
    return 2048 if dtype.itemsize == 2 else 512


@torch.inference_mode()
def evaluate_sequences(step: StepFn, task: Task | None, obs: Tensor, actions: Tensor, ensemble_size: int,
                       discount: float = 1.0, chunk_size: int | None = -1, particles: int = 1,
                       resample_members: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Predicted return of each candidate, averaged over its particles (and ensemble members).

    Every member rolls out ``particles`` copies of every candidate, each along its own predicted trajectory, so
    a candidate has E x ``particles`` particles (PETS' P); a sampling ``step`` makes the copies differ. Bound
    to their member for the whole horizon this is PETS' TS-inf; ``resample_members`` moves each particle to a
    random member at every step (a random permutation of the E members per particle group, so each member
    still carries the same load): TS1.

    Args:
        step: the model's one-step prediction, batched over members (``DynamicsEnsemble.predict_next``, its
            ``folded_step()`` or ``predict``); its result need only stay valid until the second call after it.
        task: the env's batched reward and termination functions; the model's own predictions replace them
            where ``step`` returns them (``None`` when the model predicts both).
        obs: start states of P environments, (P, obs_dim).
        actions: K candidate sequences per environment, (P, K, H, act_dim).
        ensemble_size: E.
        discount: per-step discount of the summed reward; a predicted termination stops the sum.
        chunk_size: particle rows (of P*K*particles) rolled out together; -1 picks the device's default (for
            the autocast dtype where autocast is on), None all.
        particles: copies of each candidate per member.
        resample_members: TS1: reassign every particle to a random member at every step.
        generator: the stream of TS1's member choices.

    Returns:
        (P, K) mean over particles and members of the (discounted) sum of predicted rewards.
    """
    p, k, horizon, act_dim = actions.shape
    n = p * k * particles
    if chunk_size == -1:
        dev = obs.device.type
        chunk_size = default_chunk_size(obs.device, torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                                        else obs.dtype)
    chunk_size = n if chunk_size is None else chunk_size
    starts = obs.repeat_interleave(k * particles, dim=0)  # (N, obs_dim), a candidate's particles side by side
    acts = actions.reshape(p * k, horizon, act_dim)
    if particles > 1:
        acts = acts.repeat_interleave(particles, dim=0)
    acts = acts.transpose(0, 1)  # (H, N, act_dim)
    total = torch.empty(n, device=obs.device, dtype=obs.dtype)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        total[lo:hi] = _rollout(step, task, starts[lo:hi], acts[:, lo:hi], ensemble_size, discount,
                                resample_members, generator)
    return total.reshape(p, k, particles).mean(-1)


def _rollout(step: StepFn, task: Task | None, start: Tensor, acts: Tensor, ensemble_size: int, discount: float,
             resample_members: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Member-mean discounted return of C particle rows: start (C, obs_dim), acts (H, C, act_dim) -> (C,).

    Accumulates in place; without any termination (task and model) the alive mask is skipped (same sums, fewer
    passes). Under TS1 the states and alive flags move between members; the member-sum of each column's return
    does not depend on which member holds which particle, so the accumulator stays put.
    """
    c, obs_dim = start.shape
    state = start.expand(ensemble_size, c, obs_dim)
    total = torch.zeros(ensemble_size, c, device=start.device, dtype=start.dtype)
    task_terminates = task is not None and task.terminated is not never_terminates
    alive = None
    weight = 1.0
    for t in range(acts.shape[0]):
        if resample_members and ensemble_size > 1 and t > 0:  # at t = 0 every member holds the same start
            order = torch.rand(ensemble_size, c, device=start.device, generator=generator).argsort(0)
            state = state.gather(0, order.unsqueeze(-1).expand(-1, -1, obs_dim))
            if alive is not None:
                alive = alive.gather(0, order)
        act = acts[t].expand(ensemble_size, c, acts.shape[-1])
        out = step(state, act)
        nxt, reward, done = out if isinstance(out, tuple) else (out, None, None)
        if reward is None:
            if task is None:
                raise ValueError("no reward: the task has no reward function and the model does not learn one "
                                 "(set learn_reward: true)")
            reward = task.reward(state, act, nxt)
        if done is None and task_terminates:
            done = task.terminated(state, act, nxt)
        if done is None:
            total.add_(reward, alpha=weight)
        else:
            if alive is None:
                alive = torch.ones_like(total)
            total.addcmul_(alive, reward, value=weight)
            alive.masked_fill_(done, 0.0)
        state, weight = nxt, weight * discount
    return total.mean(0)
