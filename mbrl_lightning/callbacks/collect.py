"""Callbacks that step the real environment and grow the replay buffer."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytorch_lightning as pl
import torch

from mbrl_lightning.checks import check_positive
from mbrl_lightning.data.collect import (
    Policy,
    RandomPolicy,
    collect,
    env_name,
    is_finite,
    nonfinite_error,
    resolve_seed,
)
from mbrl_lightning.distributed import gather_rows, rank_share

log = logging.getLogger(__name__)

NONFINITE = "collect/nonfinite_steps"
"""The scalar that counts a collection's steps with a NaN/inf observation or reward (skipped, not stored)."""


def _datamodule(trainer: pl.Trainer):
    dm = getattr(trainer, "datamodule", None)
    if dm is None or not hasattr(dm, "buffer"):
        raise RuntimeError("data-collection callbacks need a ReplayDataModule (the run's `data:`)")
    return dm


def _limit_reached(current: int, maximum: int | None) -> bool:
    return maximum is not None and maximum != -1 and current >= maximum


def is_last_iteration(trainer: pl.Trainer) -> bool:
    """Whether fit stops after the epoch now ending: ``max_epochs``, ``max_steps``, or ``trainer.should_stop``
    (set by ``max_time``'s Timer, early stopping, ...), as Lightning's fit loop decides it."""
    if _limit_reached(trainer.global_step, trainer.max_steps):
        return True
    if _limit_reached(trainer.current_epoch + 1, trainer.max_epochs):
        return True
    min_epochs, min_steps = trainer.min_epochs or 0, trainer.min_steps or 0
    return trainer.should_stop and trainer.current_epoch + 1 >= min_epochs and trainer.global_step >= min_steps


def total_over_ranks(trainer: pl.Trainer, count: int) -> float:
    """``count`` summed over the DDP ranks (itself with one process); a collective: call it on every rank."""
    return float(gather_rows(trainer, {"n": torch.tensor([float(count)])})["n"].sum())


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

    Args:
        num_steps: random-policy environment steps (the brief's ``initial_batch_size``).
        num_envs: environments stepped side by side.
        seed: seed of the actions and episode resets; ``None`` takes the run's ``seed_everything``.
    """

    def __init__(self, num_steps: int = 5000, num_envs: int = 1, seed: int | None = None) -> None:
        check_positive(num_steps=num_steps, num_envs=num_envs)
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
                   "data/collect_seconds": time.perf_counter() - start,
                   NONFINITE: total_over_ranks(trainer, result.nonfinite_steps)}
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
    statistics do not change). The run's last iteration (``max_epochs``, ``max_steps``, ``max_time`` or an early
    stop ends it) collects nothing: no training would use it; a run resumed with a larger limit collects that
    skipped batch at fit start, so it trains on the same data as an uninterrupted run. Under DDP the steps are
    split over the ranks (each with its own seed) and all-gathered into every rank's buffer.

    Args:
        num_steps: real environment steps collected after each iteration (the brief's ``batch_size``).
        num_envs: episodes run side by side, their actions planned in one batch.
        seed: seed of the episode resets and the policy's sampling; ``None`` takes the run's ``seed_everything``.
    """

    def __init__(self, num_steps: int = 1000, num_envs: int = 1, seed: int | None = None) -> None:
        check_positive(num_steps=num_steps, num_envs=num_envs)
        self.num_steps, self.num_envs, self.seed = num_steps, num_envs, seed
        self.skipped = 0  # the iteration whose batch the last iteration left uncollected (0: none); checkpointed

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict["skipped"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the first dataloader is built, so the resumed iteration trains on this batch. A run with
        # max_steps is resumed by Lightning inside its ended epoch, whose on_train_epoch_end then collects it.
        if self.skipped > 0 and trainer.max_steps == -1 and not _limit_reached(self.skipped, trainer.max_epochs):
            log_scalars(trainer, self._collect(trainer, pl_module, self.skipped))
            self.skipped = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        iteration = trainer.current_epoch + 1
        if is_last_iteration(trainer):
            self.skipped = iteration
            return
        self.skipped = 0
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
        metrics = {"data/env_steps": float(dm.buffer.total_added), "data/collect_seconds": time.perf_counter() - start,
                   NONFINITE: total_over_ranks(trainer, result.nonfinite_steps)}
        returns = gather_rows(trainer, {"r": torch.tensor(result.returns, dtype=torch.float32)})["r"]
        if len(returns):
            metrics["data/collect_return"] = float(returns.mean())
        return metrics


class CollectInterleaved(pl.Callback):
    """Step the real environment inside the training loop: ``num_steps`` steps with the agent's (stochastic)
    policy before every ``every_n_updates``-th update, as SAC and MBPO are normally run (the MBPO authors' code:
    one env step, then 20 SAC updates), so the policy that collects improves at every step.

    The episode carries on across updates and iterations. A resumed run restarts it: the checkpoint holds how many
    episodes were started (and every stored transition), not the simulator's state, so the first episode after a
    resume begins with a fresh ``reset`` (seeded by the episode count) and the cut-off one is not counted in
    ``data/collect_return``. Batches are drawn from the live buffer, so updates see new data within an iteration
    (Lightning fetches each batch one update ahead: a batch can miss the newest one or two env steps).
    Under DDP every rank steps its own env (own seed) and all ranks store every rank's steps.

    A step whose observation or reward is NaN or inf is not stored and ends its episode (as ``collect`` does;
    counted in ``collect/nonfinite_steps`` each iteration); an iteration whose env steps were all non-finite stops
    the run with ``NonFiniteEnvError`` naming the env.

    Args:
        num_steps: real env steps each time (MBPO: 1).
        every_n_updates: optimizer updates between env steps (MBPO on Hopper: 20; plain SAC: 1).
        seed: seed of the episode resets and the policy's sampling; ``None`` takes the run's ``seed_everything``.
    """

    def __init__(self, num_steps: int = 1, every_n_updates: int = 1, seed: int | None = None) -> None:
        check_positive(num_steps=num_steps, every_n_updates=every_n_updates)
        self.num_steps, self.every_n_updates, self.seed = num_steps, every_n_updates, seed
        self.updates = 0  # training batches seen (checkpointed): an env step comes before every k-th
        self.episodes = 0  # episodes started (checkpointed): the next reset's seed
        self.env = self.policy = self.obs = None
        self.episode_return, self.episode_length = 0.0, 0
        self.returns: list[float] = []  # episodes finished in this iteration
        self.seconds = 0.0
        self.nonfinite = 0  # steps (and resets) with a NaN/inf observation or reward since the last iteration's end
        self.stored = 0  # finite steps stored since the last iteration's end

    def state_dict(self) -> dict:
        # with the iteration's counts so far, which a checkpoint saved mid-iteration carries to the resumed run
        return {"updates": self.updates, "episodes": self.episodes, "returns": list(self.returns),
                "seconds": self.seconds, "nonfinite": self.nonfinite, "stored": self.stored}

    def load_state_dict(self, state_dict: dict) -> None:
        self.updates, self.episodes = int(state_dict["updates"]), int(state_dict["episodes"])
        self.returns = [float(r) for r in state_dict.get("returns", [])]
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.nonfinite, self.stored = int(state_dict.get("nonfinite", 0)), int(state_dict.get("stored", 0))

    def env_steps_per_epoch(self, trainer: pl.Trainer) -> int:
        """Real env steps one iteration collects: ``num_steps`` per ``every_n_updates`` of its updates."""
        return math.ceil(trainer.num_training_batches / self.every_n_updates) * self.num_steps

    def _seed(self, trainer: pl.Trainer) -> int:
        return (resolve_seed(self.seed) + 3) * 1_000_003 + 7919 * trainer.global_rank

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = _datamodule(trainer)
        self.env = dm.make_env()
        # a resumed run draws its actions from a stream of its own (seeded by the env steps so far): deterministic
        self.policy = acting_policy(trainer, pl_module, 1, self._seed(trainer) + dm.buffer.total_added)
        self._reset(trainer)

    def _reset(self, trainer: pl.Trainer) -> None:
        """Begin the next episode; a non-finite first observation counts as a non-finite step and leaves ``obs``
        ``None``, so that the next due step tries the episode after it."""
        self.obs, _ = self.env.reset(seed=self._seed(trainer) + self.episodes)
        self.episodes += 1
        self.episode_return, self.episode_length = 0.0, 0
        self.policy.reset(torch.tensor([0]))
        if not is_finite(self.obs):
            self.obs = None
            self.nonfinite += 1

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.returns, self.seconds = [], 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        due = self.updates % self.every_n_updates == 0
        self.updates += 1
        if not due:
            return
        start = time.perf_counter()
        rows: dict[str, list] = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated")}
        was_training = pl_module.training
        pl_module.eval()
        for _ in range(self.num_steps):
            if self.obs is None:  # the last reset gave a non-finite observation: this step is another reset
                self._reset(trainer)
                continue
            action = self.policy.act(torch.as_tensor(self.obs, dtype=torch.float32)[None], torch.tensor([0]))[0]
            next_obs, reward, terminated, truncated, _ = self.env.step(action.numpy())
            if not is_finite(next_obs, reward):  # not stored; the episode ends here, as a truncation
                self.nonfinite += 1
                if self.episode_length > 0:
                    self.returns.append(self.episode_return)
                self._reset(trainer)
                continue
            for name, value in zip(rows, (self.obs, action.numpy(), next_obs, float(reward), bool(terminated)),
                                   strict=True):
                rows[name].append(value)
            self.episode_return += float(reward)
            self.episode_length += 1
            self.obs = next_obs
            if terminated or truncated:
                self.returns.append(self.episode_return)
                self._reset(trainer)
        pl_module.train(was_training)
        dm = _datamodule(trainer)
        self.stored += len(rows["obs"])
        batch_rows = {k: torch.as_tensor(np.asarray(v)) for k, v in rows.items()} if rows["obs"] else self._no_rows(dm)
        gathered = gather_rows(trainer, batch_rows)
        if len(gathered["obs"]):
            dm.add(gathered)
        self.seconds += time.perf_counter() - start

    def _no_rows(self, dm) -> dict[str, torch.Tensor]:
        """Zero transitions, shaped and typed as this env's steps are (so DDP ranks can gather them)."""
        obs = torch.as_tensor(np.zeros((0, dm.obs_dim), dtype=self.env.observation_space.dtype))
        return {"obs": obs, "act": torch.zeros(0, dm.act_dim), "next_obs": obs.clone(),
                "reward": torch.zeros(0, dtype=torch.float64), "terminated": torch.zeros(0, dtype=torch.bool)}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        nonfinite, stored = total_over_ranks(trainer, self.nonfinite), total_over_ranks(trainer, self.stored)
        self.nonfinite = self.stored = 0
        what = f"iteration {trainer.current_epoch + 1}'s interleaved collection"
        if nonfinite and not stored:
            raise nonfinite_error(self.env, int(nonfinite), what)
        if nonfinite and trainer.is_global_zero:
            log.warning("%s: %d of the %d steps of %s returned a NaN or inf observation or reward: each ended its "
                        "episode and was not stored", env_name(self.env), nonfinite, nonfinite + stored, what)
        metrics = {"data/env_steps": float(_datamodule(trainer).buffer.total_added),
                   "data/collect_seconds": self.seconds, NONFINITE: nonfinite}
        returns = gather_rows(trainer, {"r": torch.tensor(self.returns, dtype=torch.float32)})["r"]
        if len(returns):
            metrics["data/collect_return"] = float(returns.mean())
        for name, value in metrics.items():
            pl_module.log(name, value)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.env is not None:
            self.env.close()


def env_steps_per_iteration(trainer: pl.Trainer) -> int | None:
    """Real env steps one iteration adds, from the run's collection callback (``None`` without one)."""
    for callback in trainer.callbacks:
        if isinstance(callback, CollectInterleaved):
            return callback.env_steps_per_epoch(trainer)
        if isinstance(callback, CollectOnPolicy):
            return callback.num_steps
    return None
