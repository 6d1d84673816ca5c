"""Task registry: batched torch reward/termination functions keyed by gymnasium env id.

Planners score model-predicted transitions with these functions instead of calling ``env.step``, so each
function must be pure torch, work for any leading batch dims and never branch on tensor values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

RewardFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(obs, act, next_obs) -> reward``; shapes ``(..., obs_dim), (..., act_dim), (..., obs_dim) -> (...)``."""

TerminatedFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(obs, act, next_obs) -> terminated`` as a bool tensor of shape ``(...)``."""


def never_terminates(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    """Termination function for tasks without terminal states: all ``False``."""
    return next_obs.new_zeros(next_obs.shape[:-1], dtype=torch.bool)


@dataclass(frozen=True)
class Task:
    """Everything a planner needs to know about an env beyond its dynamics."""

    reward: RewardFn
    terminated: TerminatedFn = never_terminates
    # kwargs ``gym.make`` needs so that ``reward`` is computable from observations (e.g. keep x position).
    make_kwargs: Mapping[str, Any] = field(default_factory=dict)


_TASKS: dict[str, Task] = {}


def register_task(
    env_id: str, reward: RewardFn, terminated: TerminatedFn | None = None, **make_kwargs: Any
) -> None:
    """Register (or replace) the task for ``env_id``; ``terminated=None`` means the task never terminates."""
    _TASKS[env_id] = Task(
        reward=reward,
        terminated=never_terminates if terminated is None else terminated,
        make_kwargs=dict(make_kwargs),
    )


def get_task(env_id: str) -> Task:
    """Look up the task for ``env_id``; raises a ``KeyError`` explaining how to register an unknown id."""
    try:
        return _TASKS[env_id]
    except KeyError:
        known = ", ".join(sorted(_TASKS)) or "<none>"
        raise KeyError(
            f"No task registered for env id {env_id!r}. Known ids: {known}. Register one with "
            f"mbrl_lightning.envs.register_task({env_id!r}, reward_fn, terminated_fn, **make_kwargs), "
            "where reward_fn(obs, act, next_obs) is a batched torch function."
        ) from None


def registered_task_ids() -> list[str]:
    """Sorted ids of all registered tasks."""
    return sorted(_TASKS)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with the task's ``make_kwargs`` applied (explicit ``kwargs`` win); ok without a task."""
    task = _TASKS.get(env_id)
    base = dict(task.make_kwargs) if task is not None else {}
    return gym.make(env_id, **{**base, **kwargs})
