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
    second call after it (a rollout needs the current and the next state).

    Inside ``torch.autocast`` (``bf16: true``) the matmuls run in the autocast dtype with weights cast once per
    snapshot (``weights``), and the step keeps to buffers of that dtype between them: the input is centred in
    the states' dtype and rounded once (one contiguous cast, twice as fast as centring into a bfloat16 view), the
    hidden activations stay in preallocated bfloat16 buffers (a ReLU works on their bits: ``_relu_bits_``), and
    the last matmul leaves the delta in bfloat16. States, the residual sum and the delta's mean (the last bias,
    added after the sum) stay in the model's dtype.
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

    def __call__(self, obs: Tensor, act: Tensor) -> Tensor:
        """Next state per member, (E, N, obs_dim); (N, .) inputs are broadcast to all members."""
        if not torch.is_inference_mode_enabled():  # the rollout already is: no context to enter at every step
            with torch.inference_mode():
                return self(obs, act)
        e = self.ensemble_size
        obs = obs.expand(e, *obs.shape) if obs.dim() == 2 else obs
        act = act.expand(e, *act.shape) if act.dim() == 2 else act
        dev = obs.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.dtype
        weights = self.weights(dtype)
        scratch = self._scratch.get(dtype)
        if scratch is None:
            widths = [w.shape[1] for w in weights]  # the input (with its ones column), then each padded hidden layer
            scratch = self._scratch[dtype] = _Scratch(widths, dtype, self.last_bias, self._activations(dtype))
        (x, x_obs, x_act), x_low, hidden, delta, bias, out = scratch.views(e, obs.shape[1], obs.device)
        torch.sub(obs, self.obs_mean, out=x_obs)  # centred in the states' precision, then rounded
        torch.sub(act, self.act_mean, out=x_act)
        h = x if x_low is None else x_low.copy_(x)
        for w, buf, activation in zip(weights[:-1], hidden, scratch.activations, strict=True):
            h = activation(torch.bmm(h, w, out=buf))
        if delta is None:  # full precision: the residual s + h W_L' is the matmul's own accumulate, bias included
            return torch.baddbmm(obs, h, weights[-1], out=out)
        torch.add(obs, torch.bmm(h, weights[-1], out=delta), out=out)
        return out.add_(bias)

    def _activations(self, dtype: torch.dtype) -> list:
        """The hidden activations for ``dtype``, in place: a ReLU as ``torch.relu_`` (no module call), in 16-bit
        floats on its bits (``_relu_bits_``)."""
        relu = _relu_bits_ if dtype.itemsize == 2 else torch.relu_
        return [relu if isinstance(a, nn.ReLU) else a for a in self.activations]


def _relu_bits_(h: Tensor) -> Tensor:
    """In-place ReLU of a bfloat16 (or float16) tensor as an int16 clamp of its bits: a float below zero has its
    sign bit set, so its bits are a negative int16 and become 0 (+0.0); the rest is kept bit for bit. Same
    result as ``relu_`` (except that a NaN with its sign bit set becomes 0) in a fifth of the time: torch's
    bfloat16 clamp was 65 us against this one's 13 us on a (3, 512, 256) block (Sapphire Rapids, one thread)."""
    h.view(torch.int16).clamp_min_(0)
    return h


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
    """Flat storages for one compute dtype, viewed as contiguous (E, rows, width) tensors for any row count.

    Always: the centred input with its ones column (E, rows, in+1) and the two output states, in the states'
    dtype, and one buffer per hidden layer in the compute dtype. Below the states' dtype also: the input rounded
    to the compute dtype, the matmul's delta in it, and the delta's mean (the last bias) expanded to (E, rows,
    obs_dim) in the states' dtype (a plain add, twice as fast as the broadcast one)."""

    def __init__(self, widths: list[int], dtype: torch.dtype, last_bias: Tensor, activations: list) -> None:
        self.widths, self.dtype, self.last_bias, self.activations = widths, dtype, last_bias, activations
        self.state_dtype, self.obs_dim = last_bias.dtype, last_bias.shape[-1]
        self.low = dtype != self.state_dtype
        self.rows, self.turn = 0, 0
        self.storage: list[Tensor] = []
        self._views: dict[int, tuple] = {}

    def views(self, e: int, rows: int, device: torch.device) -> tuple:
        """((x, its state and action columns), x in the compute dtype or None, hidden buffers, delta or None,
        the expanded last bias or None, the output state buffer for this call)."""
        if rows not in self._views:
            if rows > self.rows:  # grow; smaller row counts view the front of the same storage
                self._allocate(e, rows, device)
            self._views[rows] = self._slice(e, rows)
        x, x_low, hidden, delta, bias, states = self._views[rows]
        self.turn ^= 1
        return x, x_low, hidden, delta, bias, states[self.turn]

    def _specs(self) -> list[tuple[int, torch.dtype]]:
        d, sd = self.obs_dim, self.state_dtype
        specs = [(self.widths[0], sd), (d, sd), (d, sd)] + [(w, self.dtype) for w in self.widths[1:]]
        return specs + ([(self.widths[0], self.dtype), (d, self.dtype)] if self.low else [])

    def _allocate(self, e: int, rows: int, device: torch.device) -> None:
        self.storage = [torch.empty(e * rows * w, dtype=dt, device=device) for w, dt in self._specs()]
        self.storage[0].view(-1, self.widths[0])[:, -1] = 1.0  # the input's ones column, in every row view
        self.bias = self.last_bias.to(device).expand(e, rows, self.obs_dim).clone() if self.low else None
        self.rows, self._views = rows, {}

    def _slice(self, e: int, rows: int) -> tuple:
        x, s0, s1, *rest = [s[: e * rows * w].view(e, rows, w) for s, (w, _) in zip(self.storage, self._specs(),
                                                                                  strict=True)]
        xs = x, x[..., : self.obs_dim], x[..., self.obs_dim : -1]
        if not self.low:
            return xs, None, rest, None, None, (s0, s1)
        *hidden, x_low, delta = rest
        return xs, x_low, hidden, delta, self.bias[:, :rows], (s0, s1)
