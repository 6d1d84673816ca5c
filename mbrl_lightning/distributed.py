"""Splitting real-environment work across DDP ranks and gathering the results, so every rank's buffer is equal."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor


def rank_share(total: int, trainer: pl.Trainer) -> tuple[int, int]:
    """(this rank's count, offset of its first item) when ``total`` items are split over the ranks."""
    world, rank = trainer.world_size, trainer.global_rank
    base, extra = divmod(total, world)
    return base + (rank < extra), rank * base + min(rank, extra)


def gather_rows(trainer: pl.Trainer, data: dict[str, Tensor]) -> dict[str, Tensor]:
    """Concatenate every rank's rows (in rank order) on every rank; ranks may hold different numbers of rows."""
    if trainer.world_size == 1:
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
