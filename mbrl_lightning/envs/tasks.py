"""Task registry: batched torch reward/termination functions keyed by gymnasium env id.

Planners score model-predicted transitions with these functions instead of calling ``env.step``, so each
function must be pure torch, work for any leading batch dims and never branch on tensor values.
Installed packages add theirs through the ``mbrl_lightning.envs`` entry-point group (loaded on the first
lookup of an id that is not registered yet).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
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
ENTRY_POINT_GROUP = "mbrl_lightning.envs"
_plugins_loaded = False


def load_plugins() -> None:
    """Load every ``mbrl_lightning.envs`` entry point of the installed packages, once.

    An entry point names a module (importing it registers its envs and tasks) or a function, which is called
    with no arguments. One that fails to load is skipped with a warning naming it.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, types.ModuleType):
                obj()
        except Exception as err:  # a broken plugin must not stop runs on other envs
            warnings.warn(f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}) failed: {err!r}",
                          stacklevel=2)


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
    """Look up the task for ``env_id`` (loading the entry-point plugins on a miss); raises a ``KeyError``
    explaining how to register an unknown id."""
    if env_id not in _TASKS:
        load_plugins()
    try:
        return _TASKS[env_id]
    except KeyError:
        known = ", ".join(sorted(_TASKS)) or "<none>"
        raise KeyError(
            f"No task registered for env id {env_id!r}. Known ids: {known}. Register one with "
            f"mbrl_lightning.envs.register_task({env_id!r}, reward_fn, terminated_fn, **make_kwargs), "
            "where reward_fn(obs, act, next_obs) is a batched torch function, in a module that the config's "
            "`imports:` list names or that an installed package declares under the 'mbrl_lightning.envs' "
            "entry-point group (README, Environments)."
        ) from None


def find_task(env_id: str) -> Task | None:
    """The task for ``env_id`` (loading the entry-point plugins on a miss), or ``None`` if there is none: a
    model that learns reward (and termination) then stands in for it."""
    if env_id not in _TASKS:
        load_plugins()
    return _TASKS.get(env_id)


def registered_task_ids() -> list[str]:
    """Sorted ids of all registered tasks."""
    return sorted(_TASKS)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with the task's ``make_kwargs`` applied (explicit ``kwargs`` win); ok without a task."""
    if env_id not in _TASKS:
        load_plugins()  # a plugin may register the gymnasium env as well
    task = _TASKS.get(env_id)
    base = dict(task.make_kwargs) if task is not None else {}
    return gym.make(env_id, **{**base, **kwargs})
