"""Stepping a batch of real environments with a batched policy: the one routine that gathers real data.

A step whose observation or reward is NaN or inf (a MuJoCo simulation that blew up) is contained here: it ends its
episode as a truncation, is not stored, and is counted (``Rollouts.nonfinite_steps``); only a collection that gets
no finite transition at all stops, with a ``NonFiniteEnvError`` naming the env.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from mbrl_lightning.checks import check_non_negative, check_positive

log = logging.getLogger(__name__)


class NonFiniteEnvError(RuntimeError):
    """An environment gave only non-finite (NaN/inf) observations or rewards: nothing finite to learn from."""


def env_name(env: gym.Env) -> str:
    """The env's registered id (``mbrl/Cheetah-v0``), else its class name: how messages name it."""
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def is_finite(*values: object) -> bool:
    """Whether every number in ``values`` (observations, rewards) is finite in float32, the buffer's dtype: no
    NaN, no inf, and nothing so large that storing it would make it inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        return all(bool(np.isfinite(np.asarray(v, dtype=np.float32)).all()) for v in values)


def nonfinite_error(env: gym.Env, count: int, what: str) -> NonFiniteEnvError:
    """The error that stops a run whose collection got only non-finite steps (``count`` of them) from ``env``."""
    return NonFiniteEnvError(
        f"{env_name(env)}: all {count} steps of {what} returned a NaN or inf observation or reward, so there is no "
        "finite data to store. Non-finite steps are otherwise skipped (each ends its episode, see "
        "collect/nonfinite_steps); every step failing means the env itself is broken: check it (a MuJoCo "
        "simulation blows up on too large actions or time steps) and its env_kwargs.")


def resolve_seed(seed: int | None) -> int:
    """An explicit seed, else the run's ``seed_everything`` value (so ``--seed_everything`` varies everything)."""
    return int(seed) if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))


class Policy(Protocol):
    """Acts for several environments at once; ``env_idx`` says which of the batch's envs each row is."""

    def act(self, obs: Tensor, env_idx: Tensor) -> Tensor: ...

    def reset(self, env_idx: Tensor) -> None: ...


class RandomPolicy:
    """Uniform actions within the action bounds, from its own seeded generator."""

    def __init__(self, low: Tensor, high: Tensor, seed: int = 0) -> None:
        self.low, self.high = low.float(), high.float()
        self.gen = torch.Generator().manual_seed(seed)

    def act(self, obs: Tensor, env_idx: Tensor) -> Tensor:
        u = torch.rand(obs.shape[0], self.low.shape[0], generator=self.gen)
        return self.low + u * (self.high - self.low)

    def reset(self, env_idx: Tensor) -> None:
        pass


@dataclass
class Rollouts:
    """Transitions in buffer layout plus the returns and lengths of the episodes that finished, and how many steps
    (and resets) were skipped for a non-finite observation or reward."""

    transitions: dict[str, Tensor]
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    nonfinite_steps: int = 0

    @property
    def num_steps(self) -> int:
        return int(self.transitions["obs"].shape[0])


def collect(envs: Sequence[gym.Env], policy: Policy, *, num_steps: int | None = None,
            num_episodes: int | None = None, seed: int = 0, desc: str = "collect", progress: bool = True,
            record_first: bool = False) -> Rollouts:
    """Run ``policy`` on up to ``len(envs)`` environments side by side.

    Exactly one of ``num_steps`` (stop after that many transitions in total; an episode cut off at the end
    is simply not counted in ``returns``) or ``num_episodes`` (run that many whole episodes) is given.
    Episode ``i`` is reset with ``seed + i``, so a run repeats exactly for the same seed.
    ``record_first`` keeps the ``rgb_array`` frames of the first episode (the envs must render).

    A step (or reset) whose observation or reward is NaN or inf (as float32, as the buffer stores it) is not
    stored: it ends its episode as a truncation (the episode's finite steps count in ``returns``), counts as one
    of ``num_steps`` and in ``Rollouts.nonfinite_steps``, and is reported in a warning. Where every step of the
    collection is non-finite, ``NonFiniteEnvError`` names the env. Without non-finite steps nothing changes: the
    same random streams, the same data.
    """
    if (num_steps is None) == (num_episodes is None):
        raise ValueError("give exactly one of num_steps or num_episodes")
    check_positive(num_envs=len(envs))
    check_non_negative(**({"num_steps": num_steps} if num_steps is not None else {"num_episodes": num_episodes}))
    budget_steps = num_steps if num_steps is not None else float("inf")
    budget_eps = num_episodes if num_episodes is not None else float("inf")
    slots = len(envs) if num_episodes is None else min(len(envs), num_episodes)
    obs = [None] * slots
    ep_ret, ep_len, ep_id = [0.0] * slots, [0] * slots, [-1] * slots
    active = [False] * slots
    started, steps = 0, 0
    out: dict[str, list] = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated")}
    result = Rollouts(transitions={})

    def start(i: int) -> None:
        """Begin the next episode in slot ``i``; a reset with a non-finite observation counts as a non-finite step
        (and as a step of ``num_steps``) and the episode after it is tried, while the budgets allow."""
        nonlocal started, steps
        while True:
            o, _ = envs[i].reset(seed=seed + started)
            obs[i], ep_ret[i], ep_len[i], ep_id[i], active[i] = o, 0.0, 0, started, True
            started += 1
            policy.reset(torch.tensor([i]))
            if is_finite(o):
                if record_first and ep_id[i] == 0:
                    result.frames.append(envs[i].render())
                return
            active[i] = False
            result.nonfinite_steps += 1
            steps += 1
            if not (started < budget_eps and steps < budget_steps):
                return

    for i in range(slots):
        if started < budget_eps:
            start(i)
    bar = tqdm(total=num_steps if num_steps is not None else num_episodes, desc=desc, leave=False,
               disable=not progress, dynamic_ncols=True, unit="step" if num_steps is not None else "ep")
    while any(active) and steps < budget_steps:
        idx = [i for i in range(slots) if active[i]]
        if num_steps is not None:
            idx = idx[: int(budget_steps - steps)]
        o = torch.as_tensor(np.stack([obs[i] for i in idx]), dtype=torch.float32)
        a = policy.act(o, torch.tensor(idx)).detach().cpu()
        for row, i in enumerate(idx):
            next_o, r, term, trunc, _ = envs[i].step(a[row].numpy())
            steps += 1
            if not is_finite(next_o, r):  # not stored; the episode ends here, as a truncation
                result.nonfinite_steps += 1
                term, trunc = False, True
            else:
                out["obs"].append(obs[i])
                out["act"].append(a[row].numpy())
                out["next_obs"].append(next_o)
                out["reward"].append(float(r))
                out["terminated"].append(bool(term))
                ep_ret[i] += float(r)
                ep_len[i] += 1
                obs[i] = next_o
                if record_first and ep_id[i] == 0:
                    result.frames.append(envs[i].render())
            if term or trunc:
                if ep_len[i] > 0:  # an episode cut short by a non-finite step counts with its finite steps
                    result.returns.append(ep_ret[i])
                    result.lengths.append(ep_len[i])
                active[i] = False
                if num_episodes is not None:
                    bar.update(1)
                if started < budget_eps:
                    start(i)
        if num_steps is not None:
            bar.update(len(idx))
    bar.close()
    stored = len(out["obs"])
    if result.nonfinite_steps and not stored:
        raise nonfinite_error(envs[0], result.nonfinite_steps, desc)
    if result.nonfinite_steps:
        log.warning("%s: %d of %d steps of %s returned a NaN or inf observation or reward: each ended its episode "
                    "and was not stored", env_name(envs[0]), result.nonfinite_steps, stored + result.nonfinite_steps,
                    desc)
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    result.transitions = {
        "obs": torch.as_tensor(np.asarray(out["obs"], dtype=np.float32)).reshape(-1, obs_dim),
        "act": torch.as_tensor(np.asarray(out["act"], dtype=np.float32)).reshape(-1, act_dim),
        "next_obs": torch.as_tensor(np.asarray(out["next_obs"], dtype=np.float32)).reshape(-1, obs_dim),
        "reward": torch.as_tensor(np.asarray(out["reward"], dtype=np.float32)),
        "terminated": torch.as_tensor(np.asarray(out["terminated"], dtype=bool)),
    }
    return result
