"""Callbacks that step the real environment with a policy-learning agent (``SAC``, ``MBPO``).

The module only has to provide ``policy(deterministic, seed) -> data.Policy``; the MPC callbacks
(``CollectOnPolicy``, ``Evaluate``) are the planner's counterparts.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from mbrl_lightning.callbacks.collect import _datamodule
from mbrl_lightning.data.collect import Policy, collect, resolve_seed
from mbrl_lightning.distributed import gather_rows, rank_share


def agent_policy(pl_module: pl.LightningModule, deterministic: bool, seed: int) -> Policy:
    """The module's own policy; a clear error for modules that have none (e.g. a bare DynamicsEnsemble)."""
    if not hasattr(pl_module, "policy"):
        raise TypeError(f"{type(pl_module).__name__} has no policy to act with: use model class_path "
                        "mbrl_lightning.agents.SAC or mbrl_lightning.agents.MBPO with these callbacks")
    return pl_module.policy(deterministic=deterministic, seed=seed)


class CollectAgent(pl.Callback):
    """At each iteration's end, run the agent's stochastic policy for ``num_steps`` real steps into the buffer.

    ``num_envs`` episodes run side by side (one batched policy call per step). The last iteration collects
    nothing: no training would use it. Logs ``data/collect_return`` (mean return of the finished episodes).
    ``seed=None`` follows the run's ``seed_everything``; under DDP the steps are split over the ranks (each with
    its own seed) and all-gathered into every rank's buffer, as ``CollectOnPolicy`` does.
    """

    def __init__(self, num_steps: int = 1000, num_envs: int = 1, seed: int | None = None) -> None:
        if num_steps <= 0 or num_envs <= 0:
            raise ValueError("num_steps and num_envs must be positive")
        self.num_steps, self.num_envs, self.seed = num_steps, num_envs, seed

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= (trainer.max_epochs or 0) or trainer.sanity_checking:
            return
        dm = _datamodule(trainer)
        iteration = trainer.current_epoch + 1
        seed = (resolve_seed(self.seed) + 1) * 1_000_003 + 10_007 * iteration + 7919 * trainer.global_rank
        steps, _ = rank_share(self.num_steps, trainer)
        envs = [dm.make_env() for _ in range(self.num_envs)]
        policy = agent_policy(pl_module, deterministic=False, seed=seed)
        start = time.perf_counter()
        result = collect(envs, policy, num_steps=steps, seed=seed, desc=f"policy data (iteration {iteration})",
                         progress=trainer.is_global_zero)
        for env in envs:
            env.close()
        dm.add(gather_rows(trainer, result.transitions))
        pl_module.log("data/collect_seconds", time.perf_counter() - start)
        returns = gather_rows(trainer, {"r": torch.tensor(result.returns, dtype=torch.float32)})["r"]
        if len(returns):
            pl_module.log("data/collect_return", returns.mean())


class EvaluateAgent(pl.Callback):
    """Runs ``num_episodes`` episodes of the deterministic (mean-action) policy every ``every_n_iters``
    iterations and at the last; logs eval/return (mean, std, min, max), eval/ep_len and data/env_steps (the
    real steps the evaluated policy was trained with). Episodes start from the same seeds every iteration (and
    in runs with another ``seed_everything``), so they are compared on equal terms; under DDP the episodes are
    split over the ranks.

    Put it before ``CollectAgent`` and ``ProgressReport`` in ``trainer.callbacks``.
    """

    def __init__(self, num_episodes: int = 10, num_envs: int | None = None, every_n_iters: int = 1,
                 seed: int = 12345) -> None:
        if num_episodes <= 0 or every_n_iters <= 0:
            raise ValueError("num_episodes and every_n_iters must be positive")
        self.num_episodes, self.every_n_iters, self.seed = num_episodes, every_n_iters, seed
        self.num_envs = num_envs or num_episodes

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        iteration = trainer.current_epoch + 1
        last = iteration >= (trainer.max_epochs or 0)
        if trainer.sanity_checking or not (last or iteration % self.every_n_iters == 0):
            return
        dm = _datamodule(trainer)
        episodes, first = rank_share(self.num_episodes, trainer)
        start = time.perf_counter()
        returns, lengths = [], []
        if episodes:
            envs = [dm.make_env() for _ in range(min(self.num_envs, episodes))]
            policy = agent_policy(pl_module, deterministic=True, seed=self.seed + first)
            result = collect(envs, policy, num_episodes=episodes, seed=self.seed + first,
                             desc=f"evaluate (iteration {iteration})", progress=trainer.is_global_zero)
            for env in envs:
                env.close()
            returns, lengths = result.returns, result.lengths
        stats = gather_rows(trainer, {"return": torch.tensor(returns, dtype=torch.float32),
                                      "length": torch.tensor(lengths, dtype=torch.float32)})
        returns = stats["return"]
        pl_module.log_dict({
            "eval/return": returns.mean(), "eval/return_std": returns.std(unbiased=False),
            "eval/return_min": returns.min(), "eval/return_max": returns.max(),
            "eval/ep_len": stats["length"].mean(),
            "eval/seconds": time.perf_counter() - start,
            "eval/iteration": float(iteration),
            "data/env_steps": float(dm.buffer.total_added),
        })
