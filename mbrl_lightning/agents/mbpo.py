"""MBPO (Janner et al. 2019) and the brief's Problem 6: SAC trained on real data plus short model rollouts.

MBPO's Algorithm 2, as this module runs it (``prepare_batch``, once per SAC update):

    every model_train_freq env steps: train the dynamics ensemble on the real buffer (to early stopping on the
                                      held-out split), rank the elites, and roll out rollout_batch_size branched
                                      rollouts of length L from real states into the model pool
    every SAC update:                 train SAC on a batch of real (real_ratio) and model transitions

The real environment is never stepped here: a collection callback does that, either interleaved with the updates
(``CollectInterleaved``: one env step every k updates, as the paper's code) or between iterations
(``CollectOnPolicy``, the brief's loop). With ``model_train_freq: null`` the model is trained once per iteration
(``on_train_epoch_start``, the brief's schedule) and a rollout round runs every ``rollout_every`` updates.
``rollout_length=0`` is plain SAC: no model training, no rollouts, an empty model buffer.

Under DDP (data parallel, like the MPC agent): every rank draws its own model and SAC batches and rolls out its
share of the start states from its own random stream; gradients are averaged over the ranks before every step and
the rollouts are all-gathered, so weights, real buffer and model buffer stay equal on every rank.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from mbrl_lightning.agents.sac import SAC, Backup
from mbrl_lightning.callbacks.collect import env_steps_per_iteration, log_scalars
from mbrl_lightning.checks import check_non_negative, check_positive
from mbrl_lightning.data.buffer import FIELDS, ReplayBuffer
from mbrl_lightning.data.collect import resolve_seed
from mbrl_lightning.distributed import all_reduce_mean, fork_generator, gather_rows, rank_share
from mbrl_lightning.envs import Task
from mbrl_lightning.models.dynamics import DynamicsEnsemble, Prediction

DynamicsFactory = Callable[[int, int], DynamicsEnsemble]
"""``(obs_dim, act_dim) -> DynamicsEnsemble``: what a config's ``dynamics: {class_path, init_args}`` becomes."""


class MBPO(SAC):
    """SAC fed by branched model rollouts of length L (``rollout_length``; 0 = model-free SAC, 1 = Dyna-style).

    Data mixing (``real_ratio``):
        ``None``: each batch row is drawn uniformly from real and model data together, i.e. exactly what one shared
        buffer holding both gives (the brief's setting: rollouts are inserted into the SAC replay buffer); the two
        are stored apart only so the model never trains on its own rollouts. A float: that fraction of each batch
        is real data and the rest model data (MBPO's ``real_ratio``, 0.05 in the paper).

    Model rollouts (``model_sampling``):
        ``"mean"``: the next state is the mean of the members' predictions (the brief); ``"random"``: each
        transition uses one elite drawn at random (the MBPO paper), sampling its Gaussian if the model's
        ``loss`` is ``"nll"``. A rollout stops after a transition the task's ``terminated`` marks (that transition
        is kept); rows whose prediction is not finite are dropped.

    Args:
        obs_dim: observation size, linked from the DataModule by the CLI.
        act_dim: action size, linked from the DataModule by the CLI.
        dynamics: the dynamics ensemble, as ``class_path``/``init_args`` of ``DynamicsEnsemble`` (the model the MPC
            agent trains; ``obs_dim``/``act_dim`` are filled in here). From Python: a callable
            ``(obs_dim, act_dim) -> DynamicsEnsemble`` (e.g. ``functools.partial``) or an instance. ``None``: a
            ``DynamicsEnsemble`` with its defaults. Its ``lr``/``weight_decay`` configure the model's Adam.
        num_elites: members the rollouts use, the best on held-out data after each training (MBPO: 5 of 7);
            ``None``: all. Held out is the DataModule's ``val_fraction`` (the model then trains on the rest); with
            no split they are ranked on a sample of the (training) buffer.
        model_batch_size: real transitions per member in each dynamics gradient step.
        model_train_steps: dynamics gradient steps per training; ``None``: train in epochs over the training split
            until the held-out error stops improving (``model_patience``, ``model_max_epochs``), keeping each
            member's best weights (needs ``val_fraction > 0``).
        model_train_freq: env steps between model trainings (MBPO: 250), each followed by a rollout round of
            ``rollout_batch_size`` starts; checked before every SAC update. ``None``: the model trains at each
            iteration's start and rounds run every ``rollout_every`` updates (the brief's loop).
        model_patience: epochs without a held-out improvement after which training stops (``model_train_steps:
            null``).
        model_max_epochs: cap on the epochs of one training to early stopping (``None``: no cap).
        model_improvement: relative drop of a member's held-out error that counts as an improvement.
        rollout_length: L, model steps per branched rollout.
        rollout_schedule: MBPO's ``[a, b, L_a, L_b]``: L grows linearly from ``L_a`` at iteration ``a`` to ``L_b`` at
            iteration ``b`` (iterations counted from 0, rounded down, held outside [a, b]); replaces
            ``rollout_length`` from the first iteration on. ``None``: L stays ``rollout_length``.
        rollout_batch_size: start states drawn from the real buffer per rollout round.
        rollout_every: SAC updates between rollout rounds with ``model_train_freq: null`` (a round also runs at each
            epoch's first update). ``rollout_batch_size == rollout_every`` gives one rollout per SAC update.
        model_sampling: ``"mean"`` or ``"random"``: how a rollout step uses the members (see above).
        real_ratio: fraction of each SAC batch drawn from real data; ``None``: one shared buffer (see above).
        model_buffer_capacity: model transitions kept (FIFO: old rollouts, made by an older model, leave first);
            with ``model_retain_epochs`` only the size allocated before the first iteration.
        model_retain_epochs: MBPO's ``model_retain_epochs``: the model buffer holds this many iterations' rollouts,
            its capacity set at each iteration's start to retain x rounds per iteration x ``rollout_batch_size``
            x L (so it grows with the rollout schedule; the newest rows are kept); ``None``: a fixed
            ``model_buffer_capacity``.
        checkpoint_model_buffer: keep the model rollouts in checkpoints. ``False`` leaves them out (650 MB at
            Hopper's L = 15, rebuilt cheaply): before its first update a resumed run refills the buffer with the
            rollout rounds that ``model_retain_epochs`` (or else one iteration) holds, from the current model and
            policy, so it no longer repeats an uninterrupted run exactly.
        seed: seed of the rollout-start, member-choice and batch-mixing stream (checkpointed); ``None`` takes the
            run's ``seed_everything``.
        hidden_size: SAC's: units per hidden layer of the actor and critic MLPs.
        num_layers: SAC's: hidden layers of the actor and critic MLPs (0 = linear).
        activation: SAC's: activation of the actor and critic MLPs.
        num_critics: SAC's: critics N, each with its own target copy.
        backup: SAC's: target value over critics, ``"min"``, ``"mean"`` or ``"doubleq"``.
        discount: SAC's: gamma.
        tau: SAC's: Polyak rate of the target critics.
        temperature: SAC's: entropy weight alpha (the start value if ``learn_temperature``).
        learn_temperature: SAC's: tune alpha so the policy entropy tracks ``target_entropy``.
        target_entropy: SAC's: entropy the learned temperature aims for; ``None`` takes ``-act_dim``.
        backup_entropy: SAC's: include ``-alpha log pi(a'|s')`` in the critic target.
        actor_lr: SAC's: learning rate of the actor's Adam.
        critic_lr: SAC's: learning rate of the critics' Adam.
        temperature_lr: SAC's: learning rate of the temperature's Adam.
        log_std_min: SAC's: lower bound of the actor's log-std.
        log_std_max: SAC's: upper bound of the actor's log-std.
        bf16: SAC's: the updates' hidden-layer matmuls in bfloat16 (the model's: ``dynamics``' ``train_bf16``).
    """

    def __init__(self, obs_dim: int, act_dim: int, dynamics: DynamicsFactory | None = None,
                 num_elites: int | None = None, model_batch_size: int = 512, model_train_steps: int | None = 1500,
                 model_train_freq: int | None = None, model_patience: int = 10, model_max_epochs: int | None = None,
                 model_improvement: float = 0.01,
                 rollout_length: int = 1, rollout_schedule: list[int] | None = None, rollout_batch_size: int = 250,
                 rollout_every: int = 250, model_sampling: Literal["mean", "random"] = "mean",
                 real_ratio: float | None = None, model_buffer_capacity: int = 1_000_000,
                 model_retain_epochs: int | None = None, checkpoint_model_buffer: bool = True,
                 seed: int | None = None,
                 hidden_size: int = 256, num_layers: int = 2, activation: str = "relu", num_critics: int = 2,
                 backup: Backup = "min", discount: float = 0.99, tau: float = 0.005, temperature: float = 0.05,
                 learn_temperature: bool = False, target_entropy: float | None = None, backup_entropy: bool = True,
                 actor_lr: float = 3e-4, critic_lr: float = 3e-4, temperature_lr: float = 3e-4,
                 log_std_min: float = -5.0, log_std_max: float = 2.0, bf16: bool | Literal["auto"] = False) -> None:
        check_positive(rollout_batch_size=rollout_batch_size, rollout_every=rollout_every,
                       model_batch_size=model_batch_size, model_buffer_capacity=model_buffer_capacity,
                       model_patience=model_patience)
        check_non_negative(rollout_length=rollout_length)
        if not model_improvement >= 0:
            raise ValueError(f"model_improvement must be >= 0 (a relative drop of the held-out error), got "
                             f"{model_improvement}")
        for name, value in (("model_train_steps", model_train_steps), ("model_train_freq", model_train_freq),
                            ("model_max_epochs", model_max_epochs), ("model_retain_epochs", model_retain_epochs)):
            if value is not None:
                (check_non_negative if name == "model_train_steps" else check_positive)(**{name: value})
        super().__init__(obs_dim, act_dim, hidden_size, num_layers, activation, num_critics, backup, discount, tau,
                         temperature, learn_temperature, target_entropy, backup_entropy, actor_lr, critic_lr,
                         temperature_lr, log_std_min, log_std_max, bf16)
        if model_sampling not in ("mean", "random"):
            raise ValueError(f"model_sampling must be 'mean' or 'random', got '{model_sampling}'")
        if real_ratio is not None and not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1] or null (one shared buffer), got {real_ratio}")
        self.save_hyperparameters(ignore=["dynamics"])  # config.yaml keeps the dynamics' class_path/init_args
        self.rollout_length, self.rollout_batch_size = rollout_length, rollout_batch_size
        self.rollout_every, self.model_train_freq = rollout_every, model_train_freq
        self.model_sampling, self.real_ratio = model_sampling, real_ratio
        if rollout_schedule is not None:
            if len(rollout_schedule) != 4 or not rollout_schedule[0] < rollout_schedule[1]:
                raise ValueError(f"rollout_schedule is [a, b, L_a, L_b] with a < b, got {rollout_schedule}")
            check_positive(rollout_schedule_L_a=rollout_schedule[2], rollout_schedule_L_b=rollout_schedule[3])
            self.rollout_length = rollout_schedule[2]
        self.rollout_schedule = rollout_schedule
        self.dynamics = self.build_dynamics(dynamics, obs_dim, act_dim)
        if num_elites is not None:
            check_positive(num_elites=num_elites)
            if num_elites > self.dynamics.ensemble_size:
                raise ValueError(f"num_elites ({num_elites}) exceeds the dynamics' ensemble_size "
                                 f"({self.dynamics.ensemble_size})")
        self.model_buffer = ReplayBuffer(model_buffer_capacity, obs_dim, act_dim)
        self.model_retain_epochs, self.checkpoint_model_buffer = model_retain_epochs, checkpoint_model_buffer
        self.refill_model_buffer = False  # set by a resume whose checkpoint left the model rollouts out
        # the members rollouts use (all until the first ranking); kept in the checkpoint's "mbpo" entry, outside
        # the state dict, so checkpoints from before elites existed still load
        self.register_buffer("elites", torch.arange(num_elites or self.dynamics.ensemble_size), persistent=False)
        self.num_elites = num_elites
        self.datamodule = None  # its held-out split ranks the elites (set by setup)
        self.generator = torch.Generator().manual_seed(resolve_seed(seed))
        self.task: Task | None = None
        self.real_buffer: ReplayBuffer | None = None
        self.model_trained_steps = 0  # dynamics gradient steps taken so far (0 for the whole run when L = 0)
        self.model_trainings = 0  # trainings of the dynamics so far
        self.last_training_env_steps: int | None = None  # real env steps when the model last trained
        self.rollout_seconds = self.model_seconds = 0.0  # wall time of this iteration's rollouts / trainings so far
        self._epoch_start_metrics: dict[str, float] = {}  # logged at the iteration's last update (checkpointed)

    @staticmethod
    def build_dynamics(dynamics: DynamicsFactory | DynamicsEnsemble | None, obs_dim: int,
                       act_dim: int) -> DynamicsEnsemble:
        """The ensemble from a factory, an instance or ``None`` (the defaults), checked against the env's sizes."""
        if dynamics is None:
            model = DynamicsEnsemble(obs_dim, act_dim)
        elif isinstance(dynamics, DynamicsEnsemble):
            model = dynamics
        elif callable(dynamics):
            model = dynamics(obs_dim, act_dim)
        else:
            raise TypeError(f"dynamics must be a DynamicsEnsemble config (class_path/init_args), a factory or an "
                            f"instance, got {type(dynamics).__name__}")
        if not isinstance(model, DynamicsEnsemble):
            raise TypeError(f"dynamics must build a DynamicsEnsemble, got {type(model).__name__}")
        if (model.obs_dim, model.act_dim) != (obs_dim, act_dim):
            raise ValueError(f"dynamics was built for obs_dim={model.obs_dim}, act_dim={model.act_dim}; this agent "
                             f"has {obs_dim}, {act_dim}")
        return model

    # ----------------------------------------------------------------- wiring
    def attach(self, task: Task | None, real_buffer: ReplayBuffer, action_low: Tensor | None = None,
               action_high: Tensor | None = None) -> None:
        """The reward/termination functions and the real buffer rollouts start from (``setup`` does this)."""
        if task is None and not self.dynamics.learn_reward and self.rollout_length > 0:
            raise ValueError("this env has no registered reward function: set the dynamics' learn_reward true "
                             "(model.init_args.dynamics.init_args.learn_reward, or 'auto') or register one "
                             "(README, Environments)")
        self.task, self.real_buffer = task, real_buffer
        if action_low is not None and action_high is not None:
            self.set_action_bounds(action_low.to(self.action_low), action_high.to(self.action_high))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "buffer") or not hasattr(dm, "task"):
            raise RuntimeError("MBPO needs a ReplayDataModule (the run's `data:`): its buffer and task")
        self.attach(dm.task, dm.buffer)
        self.datamodule = dm

    # ----------------------------------------------------------------- the model
    def train_model(self, steps: int | None = None) -> dict[str, float]:
        """Refit the normalisers to the real buffer's training share, train the ensemble (``steps`` gradient steps,
        default ``model_train_steps``; ``None`` there: to early stopping on the held-out split), rank the elites.

        Returns the metrics to log (``model/loss`` is the last steps' normalised-delta MSE, mean over members).
        """
        assert self.real_buffer is not None, "call attach() (or run under a Trainer) first"
        start = time.perf_counter()
        steps = self.hparams.model_train_steps if steps is None else steps
        data, held_out = self.real_buffer.all(), None
        if self.datamodule is not None and getattr(self.datamodule, "val_fraction", 0) > 0:
            data, held_out = self.datamodule.split()
        has_held_out = held_out is not None and held_out["obs"].shape[0] > 0
        self.dynamics.fit_normalizers({k: v.to(self.device) for k, v in data.items()})
        self.dynamics.train()
        if steps is not None:
            losses = self.train_steps(data, steps)
            metrics = {"model/loss": float(losses[-min(100, len(losses)):].mean()),
                       "model/loss_first": float(losses[0])}
            if self.num_elites is not None:
                self.rank_elites(held_out if has_held_out else data)
        else:
            if not has_held_out:
                raise ValueError("model_train_steps: null trains the model to early stopping on held-out data: set "
                                 "data.init_args.val_fraction > 0 (MBPO holds out 0.2)")
            metrics = self.train_to_early_stopping(data, held_out)
        self.model_trainings += 1
        self.model_seconds += time.perf_counter() - start
        return {**metrics, "model/train_steps": float(self.model_trained_steps),
                "model/train_seconds": time.perf_counter() - start,
                "model/bf16": float(self.dynamics.training_bf16())}  # the logs say which trainings ran in bf16

    def train_steps(self, data: dict[str, Tensor], steps: int) -> Tensor:
        """``steps`` Adam steps on independent (E, ``model_batch_size``) batches of ``data``; per-step MSE (steps,)."""
        opt = self.optimizers()[self._opt_index["dynamics"]]
        opt = getattr(opt, "optimizer", opt)  # the raw Adam: global_step keeps counting SAC optimiser steps only
        E, B, n = self.dynamics.ensemble_size, self.hparams.model_batch_size, data["obs"].shape[0]
        losses = torch.zeros(steps)
        for step in range(steps):
            idx = torch.randint(n, (E, B), generator=self.generator).view(-1)
            # the rows v[idx] gives, gathered by index_select (a row copy; advanced indexing goes element by element)
            batch = {k: v.index_select(0, idx).view(E, B, *v.shape[1:]).to(self.device) for k, v in data.items()}
            with self.dynamics.training_precision():
                objective, mse = self.dynamics.member_losses(batch)
            loss = objective.sum()  # members are independent: summing keeps each member's gradient its own
            self.step_optimizers((opt, loss))
            losses[step] = mse.detach().mean().cpu()
        losses = all_reduce_mean(self._trainer, losses)  # every rank logs (and stops on) the same losses
        if not torch.isfinite(losses).all():
            raise FloatingPointError("dynamics loss is not finite: lower the dynamics' lr or check the data for huge "
                                     "values")
        self.model_trained_steps += steps
        return losses

    def train_to_early_stopping(self, data: dict[str, Tensor], held_out: dict[str, Tensor]) -> dict[str, float]:
        """Epochs of ceil(N / B) steps until no member's held-out error has dropped by ``model_improvement``
        (relative) for ``model_patience`` epochs (or ``model_max_epochs``); each member then gets back its weights
        of its best epoch and the elites are the best on held-out data. The stopping rule is mbrl-lib 0.2's
        ``ModelTrainer.train``; the per-member best weights are the MBPO authors' (jannerm/mbpo, ``bnn.py``)."""
        held = self.held_out_sample(held_out)
        params = list(self.dynamics.net.parameters())  # every one (E, ...): a member's weights are its slices
        best_params = [p.detach().clone() for p in params]
        best = self.member_errors(held)
        patience, cap = self.hparams.model_patience, self.hparams.model_max_epochs
        steps_per_epoch = math.ceil(data["obs"].shape[0] / self.hparams.model_batch_size)
        epochs = since_improved = 0
        while since_improved < patience and (cap is None or epochs < cap):
            losses = self.train_steps(data, steps_per_epoch)
            epochs += 1
            errors = self.member_errors(held)
            improved = (best - errors) / best.abs() > self.hparams.model_improvement
            if improved.any():
                for kept, p in zip(best_params, params, strict=True):
                    kept[improved] = p.detach()[improved.to(p.device)].to(kept)
                best = torch.where(improved, errors, best)
                since_improved = 0
            else:
                since_improved += 1
        with torch.no_grad():
            for kept, p in zip(best_params, params, strict=True):
                p.copy_(kept)
        order = best.argsort()
        if self.num_elites is not None:
            self.elites.copy_(order[: self.num_elites].to(self.elites.device))
        elite_error = best[order[: self.num_elites or len(order)]].mean()
        return {"model/loss": float(losses[-min(100, len(losses)):].mean()), "model/epochs": float(epochs),
                "model/held_out_loss": float(elite_error)}

    def held_out_sample(self, data: dict[str, Tensor], max_rows: int = 5000) -> dict[str, Tensor]:
        """Up to ``max_rows`` of ``data`` (the MBPO authors' cap on the held-out set), one (E, N, ...) batch on the
        module's device, the same rows for every member."""
        n = data["obs"].shape[0]
        rows = torch.randperm(n, generator=self.generator)[:max_rows] if n > max_rows else torch.arange(n)
        return {k: v[rows].to(self.device).expand(self.dynamics.ensemble_size, *v[rows].shape)
                for k, v in data.items()}

    @torch.no_grad()
    def member_errors(self, batch: dict[str, Tensor]) -> Tensor:
        """Each member's error on an (E, N, ...) batch: normalised-delta MSE plus the learned heads' losses (a bad
        learned reward disqualifies a member too), averaged over the DDP ranks; shape (E,), on the CPU."""
        was_training = self.dynamics.training
        self.dynamics.eval()
        _, mse = self.dynamics.member_losses(batch)
        for head_loss in self.dynamics.head_losses.values():
            mse = mse + head_loss
        self.dynamics.train(was_training)
        return all_reduce_mean(self._trainer, mse.cpu())

    def rank_elites(self, data: dict[str, Tensor], max_rows: int = 5000) -> Tensor:
        """Keep the ``num_elites`` members with the lowest error on ``data`` (up to ``max_rows`` of it); returns
        every member's error, shape (E,)."""
        errors = self.member_errors(self.held_out_sample(data, max_rows))
        self.elites.copy_(errors.argsort()[: self.num_elites].to(self.elites.device))
        return errors

    def model_step(self, obs: Tensor, act: Tensor) -> Prediction:
        """The ensemble's step for (N, .) inputs, each output (N, ...): the elites' mean (a learned termination by
        majority), or one random elite per row. Only the elites run; for ``"random"`` each row runs through its
        own elite only (rows grouped by elite, one batched pass), so a step costs one member's compute per row."""
        sample = self.model_sampling == "random" and self.dynamics.hparams.loss == "nll"
        gen = self.generator if self.device.type == "cpu" else None
        elites = self.elites if self.num_elites is not None else None  # None: every member, in order
        if self.model_sampling == "mean":
            pred = self.dynamics.predict(obs, act, members=elites)  # (k, N, ...)
            done = None if pred.terminated is None else pred.terminated.float().mean(0) > 0.5
            return Prediction(pred.next_obs.mean(0), None if pred.reward is None else pred.reward.mean(0), done)
        n = obs.shape[0]
        k = self.dynamics.ensemble_size if elites is None else elites.shape[0]
        member = torch.randint(k, (n,), generator=self.generator).to(obs.device)  # each row's elite, uniform
        order = member.argsort(stable=True)
        counts = torch.bincount(member, minlength=k)
        width = int(counts.max())  # each elite's slice is padded to the largest group
        rank = torch.empty_like(member)  # each row's position within its elite's group
        rank[order] = torch.arange(n, device=obs.device) - (counts.cumsum(0) - counts)[member[order]]
        slot = member * width + rank  # row -> its place in the (k, width) batch
        x_obs, x_act = obs.new_zeros(k * width, obs.shape[1]), act.new_zeros(k * width, act.shape[1])
        x_obs[slot], x_act[slot] = obs, act
        pred = self.dynamics.predict(x_obs.view(k, width, -1), x_act.view(k, width, -1), sample=sample,
                                     generator=gen, members=elites)
        return Prediction(*(None if x is None else x.reshape(k * width, *x.shape[2:])[slot] for x in pred))

    @torch.inference_mode()
    def rollout(self, start_obs: Tensor, length: int | None = None) -> dict[str, Tensor]:
        """Branched rollouts from (N, obs_dim) start states, all in one batch; never touches the real env.

        Returns buffer-layout transitions on the CPU: N x L rows, fewer where a rollout terminated early.
        """
        if self.task is None and not self.dynamics.learn_reward:
            raise RuntimeError("MBPO.rollout needs the task's reward function: call attach() first")
        length = self.rollout_length if length is None else length
        obs = start_obs.to(self.device, torch.float32)
        out: dict[str, list[Tensor]] = {k: [] for k in FIELDS}
        for _ in range(length):
            if obs.shape[0] == 0:
                break
            act = self.act(obs, deterministic=False)
            next_obs, reward, terminated = self.model_step(obs, act)
            finite = torch.isfinite(next_obs).all(-1)
            if reward is not None:
                finite &= torch.isfinite(reward)
                reward = reward[finite]
            if terminated is not None:
                terminated = terminated[finite]
            obs, act, next_obs = obs[finite], act[finite], next_obs[finite]
            if reward is None:
                reward = self.task.reward(obs, act, next_obs)
            if terminated is None:
                terminated = (self.task.terminated(obs, act, next_obs).bool() if self.task is not None
                              else torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device))
            for name, value in zip(FIELDS, (obs, act, next_obs, reward, terminated), strict=True):
                out[name].append(value.cpu())
            obs = next_obs[~terminated]
        if not out["obs"]:
            return {"obs": torch.zeros(0, self.obs_dim), "act": torch.zeros(0, self.act_dim),
                    "next_obs": torch.zeros(0, self.obs_dim), "reward": torch.zeros(0),
                    "terminated": torch.zeros(0, dtype=torch.bool)}
        return {name: torch.cat(values) for name, values in out.items()}

    def generate_rollouts(self, num_starts: int) -> int:
        """Roll out from ``num_starts`` states drawn from the real buffer into the model buffer; rows added.

        Under DDP each rank rolls out its share of the starts and every rank adds all ranks' rollouts.
        """
        assert self.real_buffer is not None, "call attach() (or run under a Trainer) first"
        start = time.perf_counter()
        starts = self.real_buffer.sample(rank_share(num_starts, self._trainer)[0], self.generator)["obs"]
        was_training = self.training
        self.eval()
        transitions = gather_rows(self._trainer, self.rollout(starts))
        self.train(was_training)
        if transitions["obs"].shape[0] > 0:
            self.model_buffer.add(transitions)
        self.rollout_seconds += time.perf_counter() - start
        return int(transitions["obs"].shape[0])

    def mix(self, real: dict[str, Tensor]) -> dict[str, Tensor]:
        """Replace part of a real (B, ...) batch with model transitions, as ``real_ratio`` says: the batch's first
        rows stay real, the rest are drawn from the model buffer (row order does not matter to an update)."""
        num_model_data = len(self.model_buffer)
        if num_model_data == 0:
            return real
        B = real["obs"].shape[0]
        if self.real_ratio is None:  # uniform over the union of both buffers = one shared buffer
            p_model = num_model_data / (num_model_data + len(self.real_buffer))
            k = int((torch.rand(B, generator=self.generator) < p_model).sum())
        else:
            k = B - round(self.real_ratio * B)
        if k == 0:
            return real
        model = self.model_buffer.sample(k, self.generator)
        return {name: torch.cat([value[: B - k], model[name].to(value.device, value.dtype)])
                for name, value in real.items()}

    # ----------------------------------------------------------------- Lightning hooks
    def on_fit_start(self) -> None:
        # after a resume's restore: under DDP each rank draws its own batches and rollout starts from here on
        fork_generator(self.generator, self.trainer)

    def scheduled_rollout_length(self, iteration: int) -> int:
        """L at this iteration under ``rollout_schedule`` (``rollout_length`` without one)."""
        if self.rollout_schedule is None:
            return self.rollout_length
        a, b, len_a, len_b = self.rollout_schedule
        frac = min(max((iteration - a) / (b - a), 0.0), 1.0)
        return int(len_a + frac * (len_b - len_a))

    def on_train_epoch_start(self) -> None:
        # metrics of this hook are kept and logged (as epoch metrics) with the iteration's last update, so that a
        # run resumed mid-iteration, which does not run this hook again, logs them too
        self.rollout_seconds = self.model_seconds = 0.0
        self._epoch_start_metrics = {}
        if self.rollout_schedule is not None:
            self.rollout_length = self.scheduled_rollout_length(self.current_epoch)
            self._epoch_start_metrics["mbpo/rollout_length"] = float(self.rollout_length)
        if self.rollout_length == 0:
            return  # L = 0: model-free SAC, the model is never trained
        self.size_model_pool()
        if self.model_train_freq is None and self.hparams.model_train_steps != 0:  # the brief: once per iteration
            self._epoch_start_metrics.update({k: float(v) for k, v in self.train_model().items()})

    def model_training_due(self) -> bool:
        """Whether ``model_train_freq`` real env steps have come in since the model last trained (or it never has)."""
        assert self.real_buffer is not None
        last = self.last_training_env_steps
        return last is None or self.real_buffer.total_added - last >= self.model_train_freq

    def prepare_batch(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """MBPO's Algorithm 2 as seen by one SAC update (the real env steps come from a collection callback): train
        the model when due and roll out a round from real states, then mix model data into the real batch."""
        if self.rollout_length == 0:
            return batch
        if self.refill_model_buffer:  # the first update after a resume whose checkpoint left the rollouts out
            self.refill_model_pool()
        if self.model_train_freq is not None:
            if self.model_training_due():  # every model_train_freq env steps: train, then one rollout round
                self.last_training_env_steps = self.real_buffer.total_added
                log_scalars(self.trainer, self.train_model(), step=self.num_updates)
                self.rollout_round()
        elif batch_idx % self.rollout_every == 0:
            self.rollout_round()
        return self.mix(batch)

    def rollout_round(self) -> None:
        """``rollout_batch_size`` branched rollouts of length L from real states into the model pool."""
        added = self.generate_rollouts(self.rollout_batch_size)
        log_scalars(self.trainer, {"mbpo/rollout_transitions": float(added)}, step=self.num_updates)

    def rounds_per_iteration(self) -> int:
        """Rollout rounds in one iteration: one per model training (``model_train_freq``), else one per
        ``rollout_every`` updates."""
        if self.model_train_freq is None:
            return math.ceil(self.trainer.num_training_batches / self.rollout_every)
        env_steps = env_steps_per_iteration(self.trainer)
        if env_steps is None:
            raise ValueError("model_train_freq counts real env steps, but no collection callback (CollectInterleaved "
                             "or CollectOnPolicy) says how many an iteration takes; add one")
        return math.ceil(env_steps / self.model_train_freq)

    def retained_rounds(self) -> int:
        """Rollout rounds the model buffer holds: ``model_retain_epochs`` (else one) iterations' worth."""
        return (self.model_retain_epochs or 1) * self.rounds_per_iteration()

    def size_model_pool(self) -> None:
        """With ``model_retain_epochs``: the model buffer's capacity for the current L (newest rows kept); MBPO's
        ``model_retain_epochs x rollout_batch_size x (env steps per epoch / model_train_freq) x L``."""
        if self.model_retain_epochs is not None:
            self.model_buffer.resize(self.retained_rounds() * self.rollout_batch_size * self.rollout_length)

    def refill_model_pool(self) -> int:
        """Rebuild the rollouts a checkpoint left out (``checkpoint_model_buffer: false``): as many rounds as the
        pool holds, from the current model and policy; rows added."""
        self.size_model_pool()  # a resume from inside an iteration skipped on_train_epoch_start
        added = sum(self.generate_rollouts(self.rollout_batch_size) for _ in range(self.retained_rounds()))
        self.refill_model_buffer = False
        log_scalars(self.trainer, {"mbpo/refill_transitions": float(added)}, step=self.num_updates)
        return added

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches and self._epoch_start_metrics:
            self.log_dict(self._epoch_start_metrics, on_step=False, on_epoch=True)
            self._epoch_start_metrics = {}
        if self.rollout_length > 0 and batch_idx + 1 == self.trainer.num_training_batches:
            metrics = {"mbpo/rollout_seconds": self.rollout_seconds,
                       "mbpo/model_buffer_size": float(len(self.model_buffer))}
            if self.model_train_freq is not None:
                metrics.update({"model/seconds": self.model_seconds, "model/trainings": float(self.model_trainings)})
            self.log_dict(metrics, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opts = super().configure_optimizers()
        self._opt_index["dynamics"] = len(opts)
        opts.append(self.dynamics.configure_optimizers())
        return opts

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn sends the module to its processes through shared memory, where a torch.Generator's pickled
        # state (a temporary tensor, freed before the child maps it) fails: send that state as bytes
        return {**super().__getstate__(), "generator": self.generator.get_state().numpy().tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state["generator"]), dtype=torch.uint8))
        super().__setstate__({**state, "generator": generator})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # tensors and plain types only (checkpoints load with weights_only=True)
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbpo"] = {"generator": self.generator.get_state(),
                              "model_trained_steps": self.model_trained_steps,
                              "elites": self.elites.cpu(), "rollout_length": self.rollout_length,
                              "model_trainings": self.model_trainings,
                              "last_training_env_steps": self.last_training_env_steps,
                              "rollout_seconds": self.rollout_seconds, "model_seconds": self.model_seconds,
                              "epoch_start_metrics": dict(self._epoch_start_metrics)}
        if self.checkpoint_model_buffer:
            checkpoint["mbpo"]["model_buffer"] = self.model_buffer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("mbpo")
        if state is not None:
            if "model_buffer" in state:
                if self.model_retain_epochs is not None:  # its capacity follows L: take the saved one
                    self.model_buffer.resize(int(state["model_buffer"]["capacity"]))
                self.model_buffer.load_state_dict(state["model_buffer"])
            else:  # saved with checkpoint_model_buffer false: rebuilt at the next iteration's start
                self.refill_model_buffer = True
            self.generator.set_state(state["generator"])
            self.model_trained_steps = int(state["model_trained_steps"])
            self.model_trainings = int(state.get("model_trainings", 0))
            self.last_training_env_steps = state.get("last_training_env_steps")
            self.rollout_seconds = float(state.get("rollout_seconds", 0.0))
            self.model_seconds = float(state.get("model_seconds", 0.0))
            self._epoch_start_metrics = dict(state.get("epoch_start_metrics", {}))
            if "elites" in state and len(state["elites"]) == len(self.elites):  # same elite count configured
                self.elites = state["elites"].to(self.elites.device)
            if "rollout_length" in state and self.rollout_schedule is not None:
                self.rollout_length = int(state["rollout_length"])
