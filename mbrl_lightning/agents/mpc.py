"""The model-based agent of the brief: a dynamics ensemble plus an action optimiser, acting by MPC."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor

from mbrl_lightning.checks import check_positive
from mbrl_lightning.envs import Task
from mbrl_lightning.models.dynamics import DynamicsEnsemble, LearnFlag, Prediction
from mbrl_lightning.planning import MPCPolicy, RandomShooting
from mbrl_lightning.planning.optimizers import ActionOptimizer
from mbrl_lightning.planning.rollout import StepFn
from mbrl_lightning.precision import cpu_lacks_bf16, device_has_bf16, device_name


class MPCAgent(DynamicsEnsemble):
    """``DynamicsEnsemble`` trained as usual, plus the planner the collection and evaluation callbacks use.

    Args:
        obs_dim: observation size (linked from the DataModule by the CLI).
        act_dim: action size (linked from the DataModule by the CLI).
        planner: the action optimiser, e.g. ``RandomShooting`` or ``CEM`` (horizon, candidate sequences, ...).
        discount: discount of the predicted rewards summed over the horizon (1 = plain sum, as the brief).
        propagation: how a candidate's trajectories are predicted. ``"mean"``: one per member, each stepped
            with its member's mean (the brief's). PETS' trajectory sampling, with ``num_particles`` particles
            per candidate drawn from the learned Gaussian (``loss="nll"``; a deterministic model steps its mean):
            ``"ts_inf"`` binds each particle to one member for the whole horizon, ``"ts1"`` moves it to a random
            member at every step.
        num_particles: PETS' P, particles per candidate (a multiple of ``ensemble_size``); ``None``: one per
            member.
        chunk_size: candidate rows rolled out at once; -1 = the device's default (512 on CPU, 2048 when planning in
            bfloat16 there; all on GPU),
            None = all. A speed setting only: with mean propagation the plans do not depend on it (sampled
            particles and TS1 draw their noise per chunk, so there only the statistics are the same).
        bf16: ``"auto"`` (the default): bfloat16 matmuls where the device has native ones (AVX512-BF16/AMX on a
            CPU, a CUDA GPU with bf16), float32 elsewhere; the choice is printed once. Measured paired on the
            same starts, bf16 planning's return differs from float32's by less than its noise (docs/performance.md,
            "bf16 and the return"). ``true``: bfloat16 matmuls everywhere (states and rewards stay float32;
            some 30x *slower* on CPUs without native bf16, and a warning says so); ``false``: float32.
        ensemble_size: members E of the dynamics ensemble (the brief's ``ensemble_size``).
        hidden_size: units per hidden layer of each member's MLP.
        num_layers: hidden layers of each member's MLP (0: a linear model).
        activation: hidden activation (relu, tanh, silu, elu, gelu, leaky_relu).
        lr: Adam learning rate of the dynamics model.
        weight_decay: L2 decay of the layers' weights: one value, or one per layer (PETS/MBPO).
        loss: ``"mse"`` (the brief's deterministic model) or ``"nll"`` (Gaussian with learned variance).
        learn_reward, learn_termination, train_bf16: as ``DynamicsEnsemble``'s (``train_bf16``: the model's training
            matmuls in bfloat16; float32 unless set).
    """

    def __init__(self, obs_dim: int, act_dim: int, planner: ActionOptimizer | None = None,
                 discount: float = 1.0, propagation: Literal["mean", "ts_inf", "ts1"] = "mean",
                 num_particles: int | None = None, chunk_size: int | None = -1,
                 bf16: bool | Literal["auto"] = "auto",
                 ensemble_size: int = 3, hidden_size: int = 250, num_layers: int = 2, activation: str = "relu",
                 lr: float = 1e-3, weight_decay: float | list[float] = 0.0, loss: Literal["mse", "nll"] = "mse",
                 learn_reward: LearnFlag = "auto", learn_termination: LearnFlag = "auto",
                 train_bf16: bool | Literal["auto"] = False) -> None:
        super().__init__(obs_dim, act_dim, ensemble_size, hidden_size, num_layers, activation, lr, weight_decay,
                         loss, learn_reward, learn_termination, train_bf16)
        if propagation not in ("mean", "ts_inf", "ts1"):
            raise ValueError(f"propagation must be 'mean', 'ts_inf' or 'ts1', got {propagation!r}")
        self.particles = self._particles_per_member(propagation, num_particles, ensemble_size, loss)
        if chunk_size is not None and chunk_size != -1:
            check_positive(chunk_size=chunk_size)
        if bf16 not in (True, False, "auto"):
            raise ValueError(f"bf16 must be true, false or 'auto', got {bf16!r}")
        self.save_hyperparameters(ignore=["planner"])
        self.planner = planner if planner is not None else RandomShooting()
        self.discount, self.propagation, self.chunk_size, self.bf16 = discount, propagation, chunk_size, bf16

    @staticmethod
    def _particles_per_member(propagation: str, num_particles: int | None, ensemble_size: int, loss: str) -> int:
        """PETS' P / E, checked: P a positive multiple of E; extra particles only where they can differ."""
        if num_particles is None:
            return 1
        check_positive(num_particles=num_particles)
        if num_particles % ensemble_size:
            raise ValueError(f"num_particles ({num_particles}) must be a multiple of ensemble_size ({ensemble_size}):"
                             " every member carries the same number of particles")
        per_member = num_particles // ensemble_size
        if per_member > 1 and (propagation == "mean" or (propagation == "ts_inf" and loss == "mse")):
            raise ValueError(f"num_particles {num_particles} > ensemble_size with propagation={propagation!r} and "
                             f"loss={loss!r}: a member's particles would be identical copies. Use loss='nll' with "
                             "propagation 'ts_inf' or 'ts1' (PETS), or leave num_particles unset")
        return per_member

    def planning_step(self, seed: int = 0) -> StepFn:
        """The step the planner rolls out: the folded mean step (normalisers in the weights, a snapshot of the
        model as it is now); ``predict`` where the model learns reward or termination; a sampled ``predict``
        (its own stream, from ``seed``) for PETS' propagation of an ``nll`` model."""
        sample = self.propagation != "mean" and self.hparams.loss == "nll"
        if not sample and not self.has_learned_heads:
            return self.folded_step()
        generator = torch.Generator(device=self.device).manual_seed(seed + 1) if sample else None

        def step(obs: Tensor, act: Tensor) -> Prediction:
            return self.predict(obs, act, sample=sample, generator=generator)

        return step

    def planning_bf16(self) -> bool:
        """Whether planning runs its matmuls in bfloat16: ``bf16`` itself, or for ``"auto"`` what the device has."""
        if self.bf16 != "auto":
            return bool(self.bf16)
        use = device_has_bf16(self.device)
        _print_once(f"bf16: auto -> planning in {'bfloat16' if use else 'float32'} on {device_name(self.device)}")
        return use

    def mpc_policy(self, task: Task | None, low: Tensor, high: Tensor, max_envs: int, seed: int = 0) -> MPCPolicy:
        """A fresh MPC policy over this model (as trained so far) for up to ``max_envs`` environments side by side."""
        bf16 = self.planning_bf16()
        if bf16 and self.device.type == "cpu" and cpu_lacks_bf16():
            warnings.warn("bf16: true on a CPU without AVX512-BF16 or AMX: bfloat16 matmuls are emulated there and "
                          "planning runs ~30x slower than float32 (benchmarks/planning.py --bf16). Set "
                          "--model.init_args.bf16 false (or auto).", stacklevel=2)
        self._check_task(task)
        return MPCPolicy(self.planning_step(seed), self.ensemble_size, task, self.planner, low, high, max_envs,
                         discount=self.discount, device=self.device, seed=seed, chunk_size=self.chunk_size,
                         bf16=bf16, particles=self.particles, resample_members=self.propagation == "ts1")

    def _check_task(self, task: Task | None) -> None:
        if task is None and not self.learn_reward:
            raise ValueError("this env has no registered reward function: set model.init_args.learn_reward true "
                             "(or 'auto') or register one (README, Environments)")
        if task is None and not self.learn_termination:
            _print_once("no registered task and learn_termination false: planning assumes episodes never end")

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "task"):
            self._check_task(dm.task)  # before any data is collected or trained on

    def acting_policy(self, datamodule, max_envs: int, seed: int = 0, evaluation: bool = False) -> MPCPolicy:
        """What ``CollectOnPolicy``/``Evaluate`` run: MPC on the DataModule's env (the same for both)."""
        return self.mpc_policy(datamodule.task, datamodule.action_low, datamodule.action_high, max_envs, seed)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # plain types only: which planner made this run (its settings live in the run's config.yaml too)
        checkpoint["planner"] = {"class": type(self.planner).__name__, **vars(self.planner)}


_printed: set[str] = set()


def _print_once(message: str) -> None:
    """Print ``message`` on rank zero, the first time this process sees it."""
    if message not in _printed:
        _printed.add(message)
        if rank_zero_only.rank == 0:
            print(message, flush=True)
