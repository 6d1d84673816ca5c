"""Layers batched over ensemble members: every member's matmul runs in one ``baddbmm``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_lightning.checks import check_non_negative, check_positive

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "elu": nn.ELU, "gelu": nn.GELU,
               "leaky_relu": nn.LeakyReLU}


def make_activation(name: str) -> nn.Module:
    """The named activation, in place where torch offers it (saves a pass over the planner's activations)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of {sorted(ACTIVATIONS)}")
    try:
        return ACTIVATIONS[name](inplace=True)
    except TypeError:
        return ACTIVATIONS[name]()


def float32_output(layer: nn.Module, x: Tensor, *args) -> Tensor:
    """A network's output layer, run in float32 even under a bfloat16 autocast (``train_bf16``, SAC's ``bf16``):
    bfloat16 keeps 3 significant digits, so a Q value of 300 would come out rounded to the nearest 2."""
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return layer(x.float(), *args)
    return layer(x, *args)


class EnsembleLinear(nn.Module):
    """E independent linear maps: (E, N, in) -> (E, N, out), initialised like ``nn.Linear`` per member.

    ``members`` (k indices) runs only those members on a (k, N, in) input: the compute of k members, not E."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.ensemble_size, self.in_features, self.out_features = ensemble_size, in_features, out_features
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in={self.in_features}, out={self.out_features}"


class EnsembleMLP(nn.Sequential):
    """``num_layers`` hidden layers of ``hidden_size`` units, then a linear output, all batched over members (the
    output in float32 under an autocast)."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int, hidden_size: int = 250,
                 num_layers: int = 2, activation: str = "relu") -> None:
        check_positive(ensemble_size=ensemble_size, in_features=in_features, out_features=out_features,
                       hidden_size=hidden_size)
        check_non_negative(num_layers=num_layers)
        make_activation(activation)  # fails early on an unknown name
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers):
            layers += [EnsembleLinear(ensemble_size, width, hidden_size), make_activation(activation)]
            width = hidden_size
        layers.append(EnsembleLinear(ensemble_size, width, out_features))
        super().__init__(*layers)
        # SiLU where autograd records the pass (training) runs out of place: its in-place backward must first copy
        # the input (a model-training step of the MBPO Hopper config: -2.4 %, the same numbers). The others'
        # backward needs only the output, so in place costs them nothing.
        self.silu_out_of_place = activation == "silu"

    def forward(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        """(E, N, in) -> (E, N, out); with ``members`` (k indices), (k, N, in) -> (k, N, out) on those only."""
        *hidden, output = self
        for layer in hidden:
            if isinstance(layer, EnsembleLinear):
                x = layer(x, members)
            else:
                x = F.silu(x) if self.silu_out_of_place and x.requires_grad else layer(x)
        return float32_output(output, x, members)
