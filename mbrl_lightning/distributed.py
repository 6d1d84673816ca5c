"""Data parallelism across DDP ranks: splitting real-environment work and gathering its results (so every rank's
buffer is equal), and averaging the gradients of manually optimised modules (so every rank's weights are equal).

Every helper is a no-op with one process (``trainer`` None or ``world_size == 1``), and every collective in it is
called on all ranks in the same order: call them from code that all ranks run, never from rank-0-only branches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor, nn


def world_size(trainer: pl.Trainer | None) -> int:
    """Processes taking part in the run (1 without a trainer)."""
    return 1 if trainer is None else trainer.world_size


def rank_share(total: int, trainer: pl.Trainer | None) -> tuple[int, int]:
    """(this rank's count, offset of its first item) when ``total`` items are split over the ranks."""
    if world_size(trainer) == 1:
        return total, 0
    world, rank = trainer.world_size, trainer.global_rank
    base, extra = divmod(total, world)
    return base + (rank < extra), rank * base + min(rank, extra)


def gather_rows(trainer: pl.Trainer | None, data: dict[str, Tensor]) -> dict[str, Tensor]:
    """Concatenate every rank's rows (in rank order) on every rank; ranks may hold different numbers of rows."""
    if world_size(trainer) == 1:
        return data
    strategy = trainer.strategy
    n = next(iter(data.values())).shape[0]
    counts = strategy.all_gather(torch.tensor([n], device=strategy.root_device)).flatten().tolist()
    width = max(counts)
    out = {}
    for name, x in data.items():
        dtype = x.dtype
        x = x.to(strategy.root_device, torch.float32 if dtype == torch.bool else dtype)
        padded = torch.zeros((width, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[:n] = x
        gathered = strategy.all_gather(padded)  # (world, width, ...)
        out[name] = torch.cat([gathered[r, :c] for r, c in enumerate(counts)]).cpu().to(dtype)
    return out


def all_reduce_mean(trainer: pl.Trainer | None, x: Tensor) -> Tensor:
    """The mean of a float tensor over the ranks, on ``x``'s device (one collective, run on the rank's device)."""
    if world_size(trainer) == 1:
        return x
    y = x.to(trainer.strategy.root_device, copy=True)
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y.div_(trainer.world_size).to(x.device)


@contextmanager
def local_backward(trainer: pl.Trainer | None) -> Iterator[None]:
    """Backward passes without DDP's gradient hooks: a manual update runs several backwards over disjoint
    parameter groups per step, which DDP's reducer (one backward over every parameter) cannot follow, so
    ``average_gradients`` syncs each group instead."""
    block = getattr(trainer.strategy, "block_backward_sync", None) if world_size(trainer) > 1 else None
    with block() if block is not None else nullcontext():
        yield


def average_gradients(trainer: pl.Trainer | None, params: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks, all parameters in one collective (a missing gradient
    counts as zero), so identical optimiser steps keep the weights identical on every rank."""
    if world_size(trainer) == 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    flat = all_reduce_mean(trainer, flat)
    for p, grad in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = grad.view_as(p)


def fork_generator(generator: torch.Generator, trainer: pl.Trainer | None) -> None:
    """Reseed a generator that is equal on every rank into one independent stream per rank."""
    if world_size(trainer) > 1:
        base = int(torch.randint(2**40, (1,), generator=generator))
        generator.manual_seed(base + 7919 * trainer.global_rank)
