"""Per-dimension standardisation kept as module buffers, so it moves with the model and is checkpointed."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Normalizer(nn.Module):
    """``(x - mean) / std`` with ``std`` floored at ``eps``: constant dimensions (a goal) never divide by zero."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Set the statistics from data of shape (N, dim)."""
        x = x.to(self.mean.device, torch.float64)
        self.mean.copy_(x.mean(0).to(self.mean.dtype))
        self.std.copy_(x.std(0, unbiased=False).clamp_min(self.eps).to(self.std.dtype))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def unnormalize(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean
