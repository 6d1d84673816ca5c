"""The model-based agent of the brief: a dynamics ensemble plus an action optimiser, acting by MPC."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Literal

from torch import Tensor

from mbrl_lightning.envs import Task
from mbrl_lightning.models.dynamics import DynamicsEnsemble
from mbrl_lightning.planning import MPCPolicy, RandomShooting
from mbrl_lightning.planning.optimizers import ActionOptimizer


class MPCAgent(DynamicsEnsemble):
    """``DynamicsEnsemble`` trained as usual, plus the planner the collection and evaluation callbacks use.

    Args:
        planner: ``RandomShooting`` or ``CEM`` (horizon, number of candidate sequences, CEM settings).
        discount: discount of the predicted rewards summed over the horizon (1 = plain sum, as the brief).
        propagation: ``"mean"`` steps each member with its predicted mean; ``"sample"`` draws from the
            learned Gaussian (``loss="nll"`` only; PETS' TS-inf style propagation).
        chunk_size: candidate rows rolled out at once; -1 = the device's default (512 on CPU, all on GPU),
            None = all. A speed setting only: the plans do not depend on it.
        bf16: plan with bfloat16 matmuls (autocast; states and rewards stay float32). About 2.5x faster on
            CPUs with AVX512-BF16 (or AMX) and on recent GPUs, but some 30x *slower* on CPUs without them
            (a warning says so); its effect on returns is in the README.
        (the other arguments are DynamicsEnsemble's)
    """

    def __init__(self, obs_dim: int, act_dim: int, planner: ActionOptimizer | None = None,
                 discount: float = 1.0, propagation: Literal["mean", "sample"] = "mean", chunk_size: int | None = -1,
                 bf16: bool = False,
                 ensemble_size: int = 3, hidden_size: int = 250, num_layers: int = 2, activation: str = "relu",
                 lr: float = 1e-3, weight_decay: float = 0.0, loss: Literal["mse", "nll"] = "mse") -> None:
        super().__init__(obs_dim, act_dim, ensemble_size, hidden_size, num_layers, activation, lr, weight_decay,
                         loss)
        if propagation == "sample" and loss != "nll":
            raise ValueError("propagation='sample' needs a probabilistic model: set loss='nll'")
        self.save_hyperparameters(ignore=["planner"])
        self.planner = planner if planner is not None else RandomShooting()
        self.discount, self.propagation, self.chunk_size, self.bf16 = discount, propagation, chunk_size, bf16

    def _step(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.predict_next(obs, act, sample=self.propagation == "sample")

    def mpc_policy(self, task: Task, low: Tensor, high: Tensor, max_envs: int, seed: int = 0) -> MPCPolicy:
        """A fresh MPC policy over this model for up to ``max_envs`` environments side by side."""
        if self.bf16 and self.device.type == "cpu" and cpu_lacks_bf16():
            warnings.warn("bf16: true on a CPU without AVX512-BF16 or AMX: bfloat16 matmuls are emulated there and "
                          "planning runs ~30x slower than float32 (benchmarks/planning.py --bf16). Set "
                          "--model.init_args.bf16 false.", stacklevel=2)
        return MPCPolicy(self._step, self.ensemble_size, task, self.planner, low, high, max_envs,
                         discount=self.discount, device=self.device, seed=seed, chunk_size=self.chunk_size,
                         bf16=self.bf16)

    def acting_policy(self, datamodule, max_envs: int, seed: int = 0, evaluation: bool = False) -> MPCPolicy:
        """What ``CollectOnPolicy``/``Evaluate`` run: MPC on the DataModule's env (the same for both)."""
        return self.mpc_policy(datamodule.task, datamodule.action_low, datamodule.action_high, max_envs, seed)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # plain types only: which planner made this run (its settings live in the run's config.yaml too)
        checkpoint["planner"] = {"class": type(self.planner).__name__, **vars(self.planner)}


@cache
def cpu_lacks_bf16() -> bool:
    """True when /proc/cpuinfo (Linux) lists neither ``avx512_bf16`` nor ``amx_bf16``; False if it cannot tell."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "flags" in flags and "avx512_bf16" not in flags and "amx_bf16" not in flags
