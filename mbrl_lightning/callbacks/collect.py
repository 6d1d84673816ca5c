"""Callbacks that step the real environment and grow the replay buffer."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from mbrl_lightning.data.collect import Policy, RandomPolicy, collect, resolve_seed
from mbrl_lightning.distributed import gather_rows, rank_share


def _datamodule(trainer: pl.Trainer):
    dm = getattr(trainer, "datamodule", None)
    if dm is None or not hasattr(dm, "buffer"):
        raise RuntimeError("data-collection callbacks need a ReplayDataModule (the run's `data:`)")
    return dm


def log_scalars(trainer: pl.Trainer, metrics: dict[str, float], step: int | None = None) -> None:
    """Write scalars straight to the loggers (for hooks where ``LightningModule.log`` is not allowed)."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step if step is None else step)


class CollectRandom(pl.Callback):
    """Fill the buffer with ``num_steps`` random-policy steps at fit start (the brief's initial batch).

    It runs in ``on_fit_start``, before the first dataloader is built; a resumed run whose buffer
    already holds data skips it. Under DDP each rank collects its share with its own seed and every rank
    receives all of it.
    """

    def __init__(self, num_steps: int = 5000, num_envs: int = 1, seed: int | None = None) -> None:
        if num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        self.num_steps, self.num_envs, self.seed = num_steps, num_envs, seed

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = _datamodule(trainer)
        if len(dm.buffer) > 0:
            return
        seed = resolve_seed(self.seed) + 7919 * trainer.global_rank
        steps, _ = rank_share(self.num_steps, trainer)
        envs = [dm.make_env() for _ in range(self.num_envs)]
        start = time.perf_counter()
        policy = RandomPolicy(dm.action_low, dm.action_high, seed=seed)
        result = collect(envs, policy, num_steps=steps, seed=seed, desc="random data",
                         progress=trainer.is_global_zero)
        for env in envs:
            env.close()
        dm.add(gather_rows(trainer, result.transitions))
        metrics = {"data/env_steps": float(dm.buffer.total_added),
                   "data/collect_seconds": time.perf_counter() - start}
        if result.returns:
            metrics["data/random_return"] = float(torch.tensor(result.returns).mean())
        log_scalars(trainer, metrics, step=0)


def acting_policy(trainer: pl.Trainer, pl_module: pl.LightningModule, max_envs: int, seed: int,
                  evaluation: bool = False) -> Policy:
    """The module's policy for the real env: MPC for ``MPCAgent``, the actor for ``SAC``/``MBPO``.

    Any LightningModule with ``acting_policy(datamodule, max_envs, seed, evaluation) -> Policy`` works with
    ``CollectOnPolicy`` and ``Evaluate``.
    """
    if not hasattr(pl_module, "acting_policy"):
        raise TypeError(f"{type(pl_module).__name__} cannot act: use a model with an acting_policy method, e.g. "
                        "mbrl_lightning.agents.MPCAgent, SAC or MBPO, with CollectOnPolicy and Evaluate")
    return pl_module.acting_policy(_datamodule(trainer), max_envs, seed, evaluation)


class CollectOnPolicy(pl.Callback):
    """At each iteration's end, run the agent's policy (MPC, or SAC's stochastic actor) for ``num_steps`` real
    steps and add them to the buffer.

    ``num_envs`` episodes run side by side, planned in one batch (independent episodes, so the data's
    statistics do not change). The last iteration collects nothing: no training would use it; a run resumed
    with a larger ``max_epochs`` collects that skipped batch at fit start, so it trains on the same data as an
    uninterrupted run. Under DDP the steps are split over the ranks (each with its own seed) and all-gathered
    into every rank's buffer.
    """

    def __init__(self, num_steps: int = 1000, num_envs: int = 1, seed: int | None = None) -> None:
        if num_steps <= 0 or num_envs <= 0:
            raise ValueError("num_steps and num_envs must be positive")
        self.num_steps, self.num_envs, self.seed = num_steps, num_envs, seed
        self.skipped = 0  # the iteration whose batch the last iteration left uncollected (0: none); checkpointed

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict["skipped"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the first dataloader is built, so the resumed iteration trains on this batch
        if 0 < self.skipped < (trainer.max_epochs or 0):
            log_scalars(trainer, self._collect(trainer, pl_module, self.skipped))
            self.skipped = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        iteration = trainer.current_epoch + 1
        if iteration >= (trainer.max_epochs or 0):
            self.skipped = iteration
            return
        for name, value in self._collect(trainer, pl_module, iteration).items():
            pl_module.log(name, value)

    def _collect(self, trainer: pl.Trainer, pl_module: pl.LightningModule, iteration: int) -> dict[str, float]:
        """Add the batch collected after ``iteration`` (1-based) to the buffer; return its metrics."""
        dm = _datamodule(trainer)
        seed = (resolve_seed(self.seed) + 1) * 1_000_003 + 10_007 * iteration + 7919 * trainer.global_rank
        steps, _ = rank_share(self.num_steps, trainer)
        envs = [dm.make_env() for _ in range(self.num_envs)]
        policy = acting_policy(trainer, pl_module, self.num_envs, seed)
        was_training = pl_module.training
        pl_module.eval()
        start = time.perf_counter()
        result = collect(envs, policy, num_steps=steps, seed=seed, desc=f"policy data (iteration {iteration})",
                         progress=trainer.is_global_zero)
        pl_module.train(was_training)
        for env in envs:
            env.close()
        dm.add(gather_rows(trainer, result.transitions))
        metrics = {"data/env_steps": float(dm.buffer.total_added), "data/collect_seconds": time.perf_counter() - start}
        returns = gather_rows(trainer, {"r": torch.tensor(result.returns, dtype=torch.float32)})["r"]
        if len(returns):
            metrics["data/collect_return"] = float(returns.mean())
        return metrics
