"""The replay DataModule: owns the environment spec and the buffer, samples per-member ensemble batches."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mbrl_lightning import envs
from mbrl_lightning.checks import check_positive
from mbrl_lightning.data.buffer import FIELDS, ReplayBuffer
from mbrl_lightning.data.collect import resolve_seed

# no held-out split means an empty validation loader on purpose; Lightning warns about it every epoch
warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")


def _val_mask(capacity: int, val_fraction: float) -> Tensor:
    """Fixed slots of the ring held out for validation (a stride pattern, so any prefix has the right share)."""
    if val_fraction <= 0:
        return torch.zeros(capacity, dtype=torch.bool)
    slots = torch.arange(capacity, dtype=torch.float64)
    return torch.floor((slots + 1) * val_fraction) > torch.floor(slots * val_fraction)


class EnsembleBatches(Dataset):
    """``num_batches`` batches of shape (E, B, ...), each member's rows drawn independently with replacement from the
    buffer's training slots as they are when the batch is drawn (data added during an epoch, by interleaved
    collection, is seen at once).

    Batch ``i`` comes from its own seeded stream, so an epoch's batches are the same however it is resumed.
    A loader resumed mid-epoch starts at batch ``start`` (item ``j`` is batch ``start + j``; the length stays the
    epoch's, as Lightning counts the batches already done); ``first``, where given, is batch ``start`` as the
    interrupted run had drawn it (Lightning fetches a batch one update ahead, before that update's interleaved env
    step: drawn again from the restored buffer it could differ).
    """

    def __init__(self, buffer: ReplayBuffer, train_slots: Tensor, train_counts: Tensor, num_batches: int,
                 batch_size: int, ensemble_size: int, seed: int, start: int = 0,
                 first: dict[str, Tensor] | None = None) -> None:
        self.buffer, self.train_slots, self.train_counts = buffer, train_slots, train_counts
        self.num_batches, self.batch_size = num_batches, batch_size
        self.ensemble_size, self.seed = ensemble_size, seed
        self.start, self.first = start, first
        self.last: tuple[int, dict[str, Tensor]] | None = None  # the batch drawn last: (index, batch)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, j: int) -> dict[str, Tensor]:
        i = self.start + j
        if i == self.start and self.first is not None:
            batch = self.first
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            n = int(self.train_counts[self.buffer.size - 1])  # training slots among the filled ones
            idx = self.train_slots[torch.randint(n, (self.ensemble_size, self.batch_size), generator=gen)]
            batch = {k: getattr(self.buffer, k)[idx] for k in FIELDS}
        self.last = (i, batch)
        return batch


class HeldOut(Dataset):
    """The held-out transitions in fixed chunks, the same rows for every member: shape (E, B, ...)."""

    def __init__(self, data: dict[str, Tensor], batch_size: int, ensemble_size: int) -> None:
        self.data, self.batch_size, self.ensemble_size = data, batch_size, ensemble_size

    def __len__(self) -> int:
        return -(-self.data["obs"].shape[0] // self.batch_size)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        chunk = {k: v[i * self.batch_size:(i + 1) * self.batch_size] for k, v in self.data.items()}
        return {k: v.expand(self.ensemble_size, *v.shape) for k, v in chunk.items()}


class ReplayDataModule(pl.LightningDataModule):
    """Replay buffer of real transitions for one environment.

    One training epoch is ``steps_per_epoch`` gradient steps (the brief's ``num_agent_train_steps_per_iter``);
    the dataloader is rebuilt every epoch (``reload_dataloaders_every_n_epochs: 1``) so it sees the data that
    callbacks collected at the previous epoch end. A ``val_fraction`` of the ring's slots is held out.

    Args:
        env_id: gymnasium id (``mbrl/Cheetah-v0``, ``HalfCheetah-v5``, ...); one without a registered reward
            function needs a model that learns it (``learn_reward``).
        env_kwargs: extra keyword arguments for ``gym.make``.
        capacity: buffer rows; the oldest transitions are overwritten beyond it.
        batch_size: transitions per ensemble member per gradient step.
        steps_per_epoch: gradient steps per MBRL iteration.
        val_fraction: share of transitions held out for the validation loss (0 disables validation).
        seed: seed of the minibatch sampling stream (combined with the epoch, so resumed runs repeat it);
            ``None`` takes the run's ``seed_everything``.
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None, capacity: int = 1_000_000,
                 batch_size: int = 512, steps_per_epoch: int = 1000,
                 val_fraction: float = 0.0, seed: int | None = None) -> None:
        super().__init__()
        check_positive(capacity=capacity, batch_size=batch_size, steps_per_epoch=steps_per_epoch)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        # None for an env with no registered reward: the model must learn it (learn_reward, "auto" in the CLI)
        self.task = envs.find_task(env_id)
        probe = self.make_env()
        if not isinstance(probe.action_space, gym.spaces.Box) or not isinstance(probe.observation_space,
                                                                                gym.spaces.Box):
            raise TypeError(f"{env_id}: mbrl-lightning needs Box observation and action spaces")
        self.obs_dim = int(probe.observation_space.shape[0])
        self.act_dim = int(probe.action_space.shape[0])
        self.action_low = torch.as_tensor(probe.action_space.low, dtype=torch.float32)
        self.action_high = torch.as_tensor(probe.action_space.high, dtype=torch.float32)
        probe.close()
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.val_fraction, self.seed = val_fraction, seed
        self.buffer = ReplayBuffer(capacity, self.obs_dim, self.act_dim)
        self._val_slots = _val_mask(capacity, val_fraction)
        self._train_slots = (~self._val_slots).nonzero().squeeze(1)  # in slot order, as ``split`` lists them
        self._train_counts = (~self._val_slots).cumsum(0)  # training slots among the first i + 1
        self._batches: EnsembleBatches | None = None  # the current epoch's
        self._resume: dict[str, Any] | None = None  # where a checkpoint saved mid-epoch left the epoch

    def make_env(self, **kwargs: Any) -> gym.Env:
        """A fresh environment instance (with the task's required ``make`` kwargs)."""
        return envs.make(self.env_id, **{**self.env_kwargs, **kwargs})

    def add(self, transitions: dict[str, Tensor]) -> None:
        """Append collected transitions to the buffer (the one entry point callbacks use)."""
        self.buffer.add(transitions)

    def split(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(train, held-out) views of the stored transitions."""
        data = self.buffer.all()
        val = self._val_slots[: self.buffer.size]
        if not val.any():
            return data, {k: v[:0] for k, v in data.items()}
        return {k: v[~val] for k, v in data.items()}, {k: v[val] for k, v in data.items()}

    @property
    def ensemble_size(self) -> int:
        """Members E of the model being trained: batches are shaped (E, B, ...) to match it."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        return int(getattr(module, "ensemble_size", 1))

    def train_dataloader(self) -> DataLoader:
        if self.buffer.size == 0 or self._train_counts[self.buffer.size - 1] == 0:
            raise RuntimeError(
                "the replay buffer is empty when training starts: add a data-collection callback "
                "(e.g. mbrl_lightning.callbacks.CollectRandom) that fills it in on_fit_start"
            )
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        # Under DDP Lightning's DistributedSampler deals the batches out over the ranks: with world x steps
        # batches every rank still takes ``steps_per_epoch`` gradient steps, each on a different minibatch.
        world = self.trainer.world_size if self.trainer is not None else 1
        start, first, resume, self._resume = 0, None, self._resume, None
        if resume is not None and resume["epoch"] == epoch and world == 1:  # a mid-epoch resume: go on from there
            start, first = int(resume["next"]), resume.get("batch")
        ds = EnsembleBatches(self.buffer, self._train_slots, self._train_counts, self.steps_per_epoch * world,
                             self.batch_size, self.ensemble_size, seed=resolve_seed(self.seed) * 100_003 + epoch,
                             start=start, first=first)
        self._batches = ds
        return DataLoader(ds, batch_size=None)

    def val_dataloader(self) -> DataLoader | list:
        _, val = self.split()
        if val["obs"].shape[0] == 0:
            return []  # no held-out split configured: no validation
        return DataLoader(HeldOut(val, max(self.batch_size, 4096), self.ensemble_size), batch_size=None)

    def _position(self) -> dict[str, Any] | None:
        """Where the training epoch stands when a checkpoint is saved between two of its batches (else ``None``):
        its epoch, the next batch's index and, if the loader already drew it, that batch."""
        trainer, ds = self.trainer, self._batches
        if trainer is None or ds is None or not trainer.training:
            return None
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if not 0 < done < trainer.num_training_batches:
            return None
        position: dict[str, Any] = {"epoch": trainer.current_epoch, "next": done}
        if ds.last is not None and ds.last[0] == done:
            position["batch"] = ds.last[1]
        return position

    def state_dict(self) -> dict[str, Any]:
        state = {"buffer": self.buffer.state_dict(), "env_id": self.env_id}
        position = self._position()
        if position is not None:
            state["position"] = position
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("env_id", self.env_id) != self.env_id:
            raise ValueError(f"checkpoint was made for env '{state_dict['env_id']}', this run is for "
                             f"'{self.env_id}'")
        self.buffer.load_state_dict(state_dict["buffer"])
        self._resume = state_dict.get("position")


__all__ = ["ReplayDataModule", "ReplayBuffer", "FIELDS"]
