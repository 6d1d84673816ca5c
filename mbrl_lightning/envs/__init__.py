"""Environments and their planner-facing tasks (batched torch reward / termination functions).

Importing this package registers ``mbrl/Obstacles-v0``, ``mbrl/Cheetah-v0`` and ``mbrl/Reacher7DOF-v0`` with
gymnasium and registers tasks for those plus gymnasium's ``HalfCheetah-v5``, ``Hopper-v5`` and ``Reacher-v5``.
Use ``make(env_id)`` rather than ``gym.make`` so a task's required ``make_kwargs`` are applied.

How to add an environment
-------------------------
1. Write a ``gymnasium.Env`` whose observation contains everything the reward needs (float32 obs, actions in
   [-1, 1], randomness only from ``self.np_random``).
2. Register it with gymnasium: ``gym.register(id="mbrl/MyEnv-v0", entry_point="pkg.module:MyEnv",
   max_episode_steps=...)``.
3. ``register_task("mbrl/MyEnv-v0", reward_fn, terminated_fn)`` where ``reward_fn(obs, act, next_obs)`` is
   pure torch, batched over any leading dims and free of value-dependent Python branching; pass
   ``**make_kwargs`` if ``gym.make`` needs options for the reward to be computable from observations.
4. Have the module imported: list it under ``imports:`` in the run's config, or declare it in your package's
   ``[project.entry-points."mbrl_lightning.envs"]`` (``load_plugins`` imports those on the first unknown id).
"""

from __future__ import annotations

import gymnasium as gym

from mbrl_lightning.envs.cheetah import cheetah_reward
from mbrl_lightning.envs.gym_tasks import register_gym_tasks
from mbrl_lightning.envs.obstacles import obstacles_reward, obstacles_terminated
from mbrl_lightning.envs.reacher import reacher_reward
from mbrl_lightning.envs.tasks import (
    Task,
    find_task,
    get_task,
    load_plugins,
    make,
    register_task,
    registered_task_ids,
)

__all__ = ["Task", "register_task", "get_task", "find_task", "load_plugins", "make", "registered_task_ids"]

_ENVS = {
    "mbrl/Obstacles-v0": ("mbrl_lightning.envs.obstacles:ObstaclesEnv", 100),
    "mbrl/Cheetah-v0": ("mbrl_lightning.envs.cheetah:CheetahEnv", 500),
    "mbrl/Reacher7DOF-v0": ("mbrl_lightning.envs.reacher:Reacher7DOFEnv", 200),
}

for _env_id, (_entry_point, _max_steps) in _ENVS.items():
    if _env_id not in gym.registry:  # a re-import (e.g. importlib.reload) must not re-register
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)

register_task("mbrl/Obstacles-v0", obstacles_reward, obstacles_terminated)
register_task("mbrl/Cheetah-v0", cheetah_reward)
register_task("mbrl/Reacher7DOF-v0", reacher_reward)
register_gym_tasks()
