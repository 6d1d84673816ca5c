"""A preallocated ring buffer of transitions, kept as tensors so it checkpoints with ``weights_only``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from mbrl_lightning.checks import check_positive

FIELDS = ("obs", "act", "next_obs", "reward", "terminated")


class ReplayBuffer:
    """Ring buffer of ``(obs, act, next_obs, reward, terminated)``; the oldest data is overwritten when full.

    Storage is allocated once (``capacity`` rows); ``add`` checks shapes and dtypes and names the field
    that does not fit, so a wrongly shaped transition fails where it is added, not later in training.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        check_positive(capacity=capacity, obs_dim=obs_dim, act_dim=act_dim)
        self.capacity, self.obs_dim, self.act_dim = int(capacity), int(obs_dim), int(act_dim)
        self.obs = torch.zeros(capacity, obs_dim)
        self.act = torch.zeros(capacity, act_dim)
        self.next_obs = torch.zeros(capacity, obs_dim)
        self.reward = torch.zeros(capacity)
        self.terminated = torch.zeros(capacity, dtype=torch.bool)
        self.ptr = 0  # next row to write
        self.size = 0  # rows holding data
        self.total_added = 0  # transitions ever added (env steps collected)

    def __len__(self) -> int:
        return self.size

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {"obs": (self.obs_dim,), "act": (self.act_dim,), "next_obs": (self.obs_dim,),
                "reward": (), "terminated": ()}

    def _check(self, batch: Mapping[str, Tensor | np.ndarray]) -> dict[str, Tensor]:
        missing = [k for k in FIELDS if k not in batch]
        if missing:
            raise KeyError(f"transition batch lacks field(s) {missing}; expected {list(FIELDS)}")
        out, n = {}, None
        for name, tail in self._shapes().items():
            x = batch[name]
            x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
            if name == "terminated":
                if x.dtype not in (torch.bool, torch.uint8, torch.int64, torch.int32):
                    raise TypeError(f"'terminated' must be bool (or integer 0/1), got dtype {x.dtype}")
                x = x.bool()
            else:
                if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
                    raise TypeError(f"'{name}' must be a float tensor, got dtype {x.dtype}")
                if x.is_floating_point() and not torch.isfinite(x).all():
                    raise ValueError(f"'{name}' contains NaN or inf; refusing to store it")
                x = x.float()
            if tuple(x.shape[1:]) != tail:
                raise ValueError(
                    f"'{name}' has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, tail))})"
                    if tail else f"'{name}' has shape {tuple(x.shape)}, expected (N,)"
                )
            if n is not None and x.shape[0] != n:
                raise ValueError(f"fields disagree on the number of transitions: '{name}' has {x.shape[0]}, "
                                 f"others {n}")
            n = x.shape[0]
            out[name] = x.cpu()
        return out

    def add(self, batch: Mapping[str, Tensor | np.ndarray]) -> None:
        """Append N transitions (each field with leading dim N), wrapping around when full."""
        data = self._check(batch)
        n = data["obs"].shape[0]
        if n > self.capacity:  # only the newest ``capacity`` rows can survive
            data = {k: v[-self.capacity:] for k, v in data.items()}
            self.total_added += n - self.capacity
            n = self.capacity
        idx = (torch.arange(n) + self.ptr) % self.capacity
        for name, x in data.items():
            getattr(self, name)[idx] = x
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.total_added += n

    def resize(self, capacity: int) -> None:
        """Reallocate to ``capacity`` rows, keeping the newest ``min(len, capacity)`` transitions (MBPO's model
        pool grows and shrinks with the rollout length this way)."""
        check_positive(capacity=capacity)
        capacity = int(capacity)
        if capacity == self.capacity:
            return
        chronological = (torch.arange(self.size) + self.ptr - self.size) % self.capacity  # oldest first
        keep = chronological[max(0, self.size - capacity):]
        for name in FIELDS:
            old = getattr(self, name)
            new = torch.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[: len(keep)] = old[keep]
            setattr(self, name, new)
        self.capacity, self.size, self.ptr = capacity, len(keep), len(keep) % capacity

    def all(self) -> dict[str, Tensor]:
        """Every stored transition (views, oldest first is not guaranteed after wrapping)."""
        return {name: getattr(self, name)[: self.size] for name in FIELDS}

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               shape: tuple[int, ...] = ()) -> dict[str, Tensor]:
        """Draw ``shape + (batch_size,)`` transitions uniformly with replacement."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(self.size, (*shape, batch_size), generator=generator)
        return {name: getattr(self, name)[idx] for name in FIELDS}

    def state_dict(self) -> dict[str, Tensor | int]:
        """Only the filled rows are saved, as tensors and ints (loadable with ``weights_only=True``)."""
        state: dict[str, Tensor | int] = {name: getattr(self, name)[: self.size].clone() for name in FIELDS}
        state.update(capacity=self.capacity, ptr=self.ptr, size=self.size, total_added=self.total_added,
                     obs_dim=self.obs_dim, act_dim=self.act_dim)
        return state

    def load_state_dict(self, state: Mapping[str, Tensor | int]) -> None:
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"checkpoint buffer holds obs_dim={state['obs_dim']}, act_dim={state['act_dim']} but this "
                f"environment has obs_dim={self.obs_dim}, act_dim={self.act_dim}: was it saved for another env?"
            )
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer capacity {state['capacity']} != configured {self.capacity}")
        size = int(state["size"])
        for name in FIELDS:
            getattr(self, name)[:size] = state[name]
        self.size, self.ptr, self.total_added = size, int(state["ptr"]), int(state["total_added"])
