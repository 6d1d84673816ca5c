"""The planner's model step with the normalisers folded into the weights: the rollout is then mostly matmuls."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mbrl_lightning.models.ensemble import EnsembleLinear
from mbrl_lightning.models.normalizer import Normalizer


class FoldedStep:
    """``DynamicsEnsemble.predict_next`` (the mean prediction) as a chain of batched matmuls, for rollouts.

    ``s + Unnormalize(f([Normalize(s), Normalize(a)]))`` is computed as ``s + h W_L' + b_L'`` with the input
    scales folded into the first layer (``W_1' = W_1 / std_in`` row-wise) and the delta's scale and shift into
    the last (``W_L' = W_L std_d``, ``b_L' = b_L std_d + mean_d``). The centring ``s - mean`` stays a subtraction:
    folding it into ``b_1`` would cancel huge terms for a constant input whose std sits at the floor (the
    obstacles' goal). Every bias rides in its matmul as the weight row of a constant unit (the input gets a column
    of ones, each hidden layer one unit that is always ``act(1)``), which saves a broadcast pass per layer; hidden
    layers are padded with zero units to aligned widths. Same maths as ``predict_next``, up to float rounding.

    A snapshot of the weights at construction: build a new one after training. Scratch memory is allocated once
    per dtype and reused; the returned state is one of two buffers used in turn, so it stays valid until the
    second call after it (a rollout needs the current and the next state). Inside ``torch.autocast`` the matmuls
    run in the autocast dtype; states, the residual sum and the last bias stay in the model's dtype.
    """

    def __init__(self, layers: Sequence[EnsembleLinear], activations: Sequence[nn.Module], obs_norm: Normalizer,
                 act_norm: Normalizer, delta_norm: Normalizer) -> None:
        if len(activations) != len(layers) - 1:
            raise ValueError(f"{len(layers)} layers need {len(layers) - 1} activations, got {len(activations)}")
        self.obs_dim, self.ensemble_size = obs_norm.mean.numel(), layers[0].ensemble_size
        with torch.no_grad():
            weights = [layer.weight.detach() for layer in layers]
            biases = [layer.bias.detach() for layer in layers]
            weights[0] = weights[0] / torch.cat([obs_norm.std, act_norm.std])[:, None]
            # the mean half of the output (an nll model's log-variance only matters for sampling)
            weights[-1] = weights[-1][..., : self.obs_dim] * delta_norm.std
            biases[-1] = biases[-1][..., : self.obs_dim] * delta_norm.std + delta_norm.mean
            self.folded = _with_bias_rows(weights, biases, activations)
        self.last_bias_row = weights[-1].shape[1]  # the last layer's row fed by the constant unit
        self.dtype = weights[0].dtype
        self.obs_mean, self.act_mean = obs_norm.mean.clone(), act_norm.mean.clone()
        self.last_bias = biases[-1].clone()
        self.activations = list(activations)
        self._low: dict[torch.dtype, list[Tensor]] = {}
        self._scratch: dict[torch.dtype, _Scratch] = {}

    def weights(self, dtype: torch.dtype) -> list[Tensor]:
        """The folded weights in ``dtype``; below the model's dtype the last layer's bias row is zero, since that
        bias (the delta's mean) is then added in full precision. Cast once, then cached."""
        if dtype == self.dtype:
            return self.folded
        if dtype not in self._low:
            last = self.folded[-1].clone()
            last[:, self.last_bias_row] = 0.0
            self._low[dtype] = [w.to(dtype) for w in [*self.folded[:-1], last]]
        return self._low[dtype]

    @torch.inference_mode()
    def __call__(self, obs: Tensor, act: Tensor) -> Tensor:
        """Next state per member, (E, N, obs_dim); (N, .) inputs are broadcast to all members."""
        e, d = self.ensemble_size, self.obs_dim
        obs = obs.expand(e, *obs.shape) if obs.dim() == 2 else obs
        act = act.expand(e, *act.shape) if act.dim() == 2 else act
        dev = obs.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.dtype
        weights = self.weights(dtype)
        scratch = self._scratch.get(dtype)
        if scratch is None:
            widths = [w.shape[1] for w in weights]  # the input (with its ones column), then each padded hidden layer
            scratch = self._scratch[dtype] = _Scratch(widths, dtype, self.dtype)
        x, hidden, delta, out = scratch.views(e, obs.shape[1], d, obs.device)
        torch.sub(obs, self.obs_mean, out=x[..., :d])
        torch.sub(act, self.act_mean, out=x[..., d:-1])
        h = x
        for w, buf, activation in zip(weights[:-1], hidden, self.activations, strict=True):
            h = activation(torch.bmm(h, w, out=buf))
        if delta is None:  # full precision: the residual s + h W_L' is the matmul's own accumulate, bias included
            return torch.baddbmm(obs, h, weights[-1], out=out)
        torch.add(obs, torch.bmm(h, weights[-1], out=delta), out=out)
        return out.add_(self.last_bias)


def _with_bias_rows(weights: list[Tensor], biases: list[Tensor], activations: Sequence[nn.Module],
                    align: int = 16) -> list[Tensor]:
    """Each (E, in, out) weight with its bias as an extra input row, fed by a constant unit: the input's ones
    column, or in each hidden layer an extra unit whose pre-activation is 1 (so its value is ``act(1)``). Hidden
    widths are padded with zero units to a multiple of ``align`` (250 -> 256): aligned rows make the matmuls
    faster per useful FLOP than the unpadded ones (benchmarks/planning.py)."""
    folded, unit = [], 1.0  # the value of the previous layer's constant unit
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        hidden = i < len(weights) - 1
        e, n_in, n_out = w.shape
        rows = folded[-1].shape[-1] if folded else n_in + 1  # the previous layer's padded width
        a = w.new_zeros(e, rows, -(-(n_out + 1) // align) * align if hidden else n_out)
        a[:, :n_in, :n_out] = w
        a[:, n_in, :n_out] = b[:, 0] / unit  # row n_in: the previous constant unit (the input's ones column)
        if hidden:
            a[:, n_in, n_out] = 1.0 / unit
            unit = float(activations[i](torch.ones(1, dtype=torch.float64)))
            if unit == 0.0:
                raise ValueError(f"activation {activations[i]} is 0 at 1: its bias cannot ride in the matmul")
        folded.append(a)
    return folded


class _Scratch:
    """Flat storages for one compute dtype, viewed as contiguous (E, rows, width) tensors for any row count."""

    def __init__(self, widths: list[int], dtype: torch.dtype, state_dtype: torch.dtype) -> None:
        self.widths, self.dtype, self.state_dtype = widths, dtype, state_dtype
        self.rows, self.turn = 0, 0
        self.storage: list[Tensor] = []
        self._views: dict[int, tuple] = {}

    def views(self, e: int, rows: int, obs_dim: int, device: torch.device) -> tuple:
        """(x, hidden buffers, low-precision delta buffer or None, the output state buffer for this call)."""
        if rows not in self._views:
            if rows > self.rows:  # grow; smaller row counts view the front of the same storage
                self._allocate(e, rows, obs_dim, device)
            self._views[rows] = self._slice(e, rows, obs_dim)
        x, hidden, delta, states = self._views[rows]
        self.turn ^= 1
        return x, hidden, delta, states[self.turn]

    def _allocate(self, e: int, rows: int, obs_dim: int, device: torch.device) -> None:
        specs = [(w, self.dtype) for w in self.widths] + [(obs_dim, self.state_dtype)] * 2
        if self.dtype != self.state_dtype:
            specs.append((obs_dim, self.dtype))
        self.storage = [torch.empty(e * rows * w, dtype=dt, device=device) for w, dt in specs]
        self.storage[0].view(-1, self.widths[0])[:, -1] = 1.0  # the input's ones column, in every row view
        self.rows, self._views = rows, {}

    def _slice(self, e: int, rows: int, obs_dim: int) -> tuple:
        widths = [*self.widths, obs_dim, obs_dim, obs_dim]
        views = [s[: e * rows * w].view(e, rows, w) for s, w in zip(self.storage, widths, strict=False)]
        n = len(self.widths)
        delta = views[n + 2] if len(views) > n + 2 else None
        return views[0], views[1:n], delta, (views[n], views[n + 1])
