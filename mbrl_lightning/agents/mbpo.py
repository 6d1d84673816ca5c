"""MBPO (Janner et al. 2019) and the brief's Problem 6: SAC trained on real data plus short model rollouts.

Each iteration (epoch): the dynamics ensemble (a ``DynamicsEnsemble`` submodule with its own Adam) is trained on
the real buffer (``on_train_epoch_start``); then, every ``rollout_every`` SAC updates, ``rollout_batch_size``
states drawn from the real buffer start branched rollouts of ``rollout_length`` steps with the current (stochastic)
SAC policy, the ensemble as dynamics and the task's batched reward/termination functions, into a model buffer;
each SAC update trains on real and model transitions (``real_ratio``). The real environment is never stepped here:
``CollectOnPolicy`` (a callback) does that at each epoch end. ``rollout_length=0`` is plain SAC: no model training,
no rollouts, an empty model buffer.

Under DDP (data parallel, like the MPC agent): every rank draws its own model and SAC batches and rolls out its
share of the start states from its own random stream; gradients are averaged over the ranks before every step and
the rollouts are all-gathered, so weights, real buffer and model buffer stay equal on every rank.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import torch
from torch import Tensor

from mbrl_lightning.agents.sac import SAC, Backup
from mbrl_lightning.callbacks.collect import log_scalars
from mbrl_lightning.checks import check_non_negative, check_positive
from mbrl_lightning.data.buffer import FIELDS, ReplayBuffer
from mbrl_lightning.data.collect import resolve_seed
from mbrl_lightning.distributed import all_reduce_mean, fork_generator, gather_rows, rank_share
from mbrl_lightning.envs import Task
from mbrl_lightning.models.dynamics import DynamicsEnsemble, LearnFlag, Prediction


class MBPO(SAC):
    """SAC fed by branched model rollouts of length L (``rollout_length``; 0 = model-free SAC, 1 = Dyna-style).

    Data mixing (``real_ratio``):
        ``None``: each batch row is drawn uniformly from real and model data together, i.e. exactly what one shared
        buffer holding both gives (the brief's setting: rollouts are inserted into the SAC replay buffer); the two
        are stored apart only so the model never trains on its own rollouts. A float: that fraction of each batch
        is real data and the rest model data (MBPO's ``real_ratio``, 0.05 in the paper).

    Model rollouts (``model_sampling``):
        ``"mean"``: the next state is the mean of the members' predictions (the brief); ``"random"``: each
        transition uses one member drawn at random (the MBPO paper), sampling its Gaussian if ``model_loss="nll"``.
        A rollout stops after a transition the task's ``terminated`` marks (that transition is kept); rows whose
        prediction is not finite are dropped.

    Args:
        obs_dim: observation size, linked from the DataModule by the CLI.
        act_dim: action size, linked from the DataModule by the CLI.
        rollout_length: L, model steps per branched rollout.
        rollout_schedule: MBPO's ``[a, b, L_a, L_b]``: L grows linearly from ``L_a`` at iteration ``a`` to ``L_b`` at
            iteration ``b`` (iterations counted from 0, rounded down, held outside [a, b]); replaces
            ``rollout_length`` from the first iteration on. ``None``: L stays ``rollout_length``.
        rollout_batch_size: start states drawn from the real buffer per rollout round.
        rollout_every: SAC updates between rollout rounds (a round also runs at each epoch's first update).
            ``rollout_batch_size == rollout_every`` gives one rollout per SAC update, as the brief's loop.
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
        model_train_steps: dynamics gradient steps per iteration, each on (E, ``model_batch_size``) real batches.
        model_batch_size: real transitions per member in each dynamics gradient step.
        model_num_elites: members the rollouts use, the best on held-out data after each training (MBPO: 5 of 7);
            ``None``: all. Held out is the DataModule's ``val_fraction`` (the model then trains on the rest); with
            no split they are ranked on a sample of the (training) buffer.
        model_ensemble_size: members E of the ``DynamicsEnsemble`` (named ``model_*`` here, unlike
            ``ensemble_size`` in ``ReplayDataModule``: SAC batches must stay (1, B)).
        model_hidden_size: units per hidden layer of each dynamics member.
        model_num_layers: hidden layers of each dynamics member (0 = linear).
        model_activation: activation of the dynamics members.
        model_lr: learning rate of the dynamics' Adam.
        model_weight_decay: L2 decay of the dynamics layers' weights: one value, or one per layer (the paper's
            2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4 for its 4 hidden layers and output).
        model_loss: dynamics objective: ``"mse"`` on normalised deltas or Gaussian ``"nll"``.
        model_learn_reward: the dynamics also predicts the reward, used in the rollouts (``"auto"``: the CLI sets
            it where the env has no registered reward function).
        model_learn_termination: the dynamics also predicts termination, used in the rollouts (``"auto"`` as
            above).
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
    """

    def __init__(self, obs_dim: int, act_dim: int, rollout_length: int = 1, rollout_schedule: list[int] | None = None,
                 rollout_batch_size: int = 250,
                 rollout_every: int = 250, model_sampling: Literal["mean", "random"] = "mean",
                 real_ratio: float | None = None, model_buffer_capacity: int = 1_000_000,
                 model_retain_epochs: int | None = None, checkpoint_model_buffer: bool = True,
                 model_train_steps: int = 1500, model_batch_size: int = 512, model_ensemble_size: int = 3,
                 model_num_elites: int | None = None,
                 model_hidden_size: int = 250, model_num_layers: int = 2, model_activation: str = "relu",
                 model_lr: float = 1e-3, model_weight_decay: float | list[float] = 0.0,
                 model_loss: Literal["mse", "nll"] = "mse",
                 model_learn_reward: LearnFlag = "auto", model_learn_termination: LearnFlag = "auto",
                 seed: int | None = None,
                 hidden_size: int = 256, num_layers: int = 2, activation: str = "relu", num_critics: int = 2,
                 backup: Backup = "min", discount: float = 0.99, tau: float = 0.005, temperature: float = 0.05,
                 learn_temperature: bool = False, target_entropy: float | None = None, backup_entropy: bool = True,
                 actor_lr: float = 3e-4, critic_lr: float = 3e-4, temperature_lr: float = 3e-4,
                 log_std_min: float = -5.0, log_std_max: float = 2.0) -> None:
        check_positive(rollout_batch_size=rollout_batch_size, rollout_every=rollout_every,
                       model_batch_size=model_batch_size, model_buffer_capacity=model_buffer_capacity,
                       model_ensemble_size=model_ensemble_size, model_hidden_size=model_hidden_size)
        check_non_negative(rollout_length=rollout_length, model_train_steps=model_train_steps,
                           model_num_layers=model_num_layers)
        super().__init__(obs_dim, act_dim, hidden_size, num_layers, activation, num_critics, backup, discount, tau,
                         temperature, learn_temperature, target_entropy, backup_entropy, actor_lr, critic_lr,
                         temperature_lr, log_std_min, log_std_max)
        if model_retain_epochs is not None:
            check_positive(model_retain_epochs=model_retain_epochs)
        if model_sampling not in ("mean", "random"):
            raise ValueError(f"model_sampling must be 'mean' or 'random', got '{model_sampling}'")
        if real_ratio is not None and not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1] or null (one shared buffer), got {real_ratio}")
        self.save_hyperparameters()
        self.rollout_length, self.rollout_batch_size = rollout_length, rollout_batch_size
        self.rollout_every = rollout_every
        self.model_sampling, self.real_ratio = model_sampling, real_ratio
        if rollout_schedule is not None:
            if len(rollout_schedule) != 4 or not rollout_schedule[0] < rollout_schedule[1]:
                raise ValueError(f"rollout_schedule is [a, b, L_a, L_b] with a < b, got {rollout_schedule}")
            check_positive(rollout_schedule_L_a=rollout_schedule[2], rollout_schedule_L_b=rollout_schedule[3])
            self.rollout_length = rollout_schedule[2]
        self.rollout_schedule = rollout_schedule
        if model_num_elites is not None:
            check_positive(model_num_elites=model_num_elites)
            if model_num_elites > model_ensemble_size:
                raise ValueError(f"model_num_elites ({model_num_elites}) exceeds model_ensemble_size "
                                 f"({model_ensemble_size})")
        dynamics_args = {"obs_dim": obs_dim, "act_dim": act_dim, "ensemble_size": model_ensemble_size,
                         "hidden_size": model_hidden_size, "num_layers": model_num_layers,
                         "activation": model_activation, "lr": model_lr, "weight_decay": model_weight_decay,
                         "loss": model_loss, "learn_reward": model_learn_reward,
                         "learn_termination": model_learn_termination}
        self.dynamics = DynamicsEnsemble(**dynamics_args)
        # Lightning's save_hyperparameters also collects the enclosing MBPO.__init__'s arguments (SAC's
        # hidden_size among them); the submodule reads its own hparams (``loss``), so set them exactly.
        self.dynamics.save_hyperparameters(dynamics_args)
        self.model_buffer = ReplayBuffer(model_buffer_capacity, obs_dim, act_dim)
        self.model_retain_epochs, self.checkpoint_model_buffer = model_retain_epochs, checkpoint_model_buffer
        self.refill_model_buffer = False  # set by a resume whose checkpoint left the model rollouts out
        # the members rollouts use (all until the first ranking); kept in the checkpoint's "mbpo" entry, outside
        # the state dict, so checkpoints from before elites existed still load
        self.register_buffer("elites", torch.arange(model_num_elites or model_ensemble_size), persistent=False)
        self.num_elites = model_num_elites
        self.datamodule = None  # its held-out split ranks the elites (set by setup)
        self.generator = torch.Generator().manual_seed(resolve_seed(seed))
        self.task: Task | None = None
        self.real_buffer: ReplayBuffer | None = None
        self.model_trained_steps = 0  # dynamics gradient steps taken so far (0 for the whole run when L = 0)
        self.rollout_seconds = 0.0  # wall time of this iteration's rollouts so far

    # ----------------------------------------------------------------- wiring
    def attach(self, task: Task | None, real_buffer: ReplayBuffer, action_low: Tensor | None = None,
               action_high: Tensor | None = None) -> None:
        """The reward/termination functions and the real buffer rollouts start from (``setup`` does this)."""
        if task is None and not self.dynamics.learn_reward and self.rollout_length > 0:
            raise ValueError("this env has no registered reward function: set model.init_args.model_learn_reward "
                             "true (or 'auto') or register one (README, Environments)")
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
    def train_model(self, steps: int) -> Tensor:
        """Refit the normalisers to the real buffer, then ``steps`` Adam steps on independent (E, B) member batches.

        Returns the per-step normalised-delta MSE (mean over members), shape (steps,).
        """
        assert self.real_buffer is not None, "call attach() (or run under a Trainer) first"
        data, held_out = self.real_buffer.all(), None
        if self.datamodule is not None and getattr(self.datamodule, "val_fraction", 0) > 0:
            data, held_out = self.datamodule.split()
        self.dynamics.fit_normalizers({k: v.to(self.device) for k, v in data.items()})
        opts = self.optimizers()
        opt = opts[self._opt_index["dynamics"]]
        opt = getattr(opt, "optimizer", opt)  # the raw Adam: global_step keeps counting SAC optimiser steps only
        E, B = self.dynamics.ensemble_size, self.hparams.model_batch_size
        losses = torch.zeros(steps)
        self.dynamics.train()
        for step in range(steps):
            if held_out is None:
                batch = self.real_buffer.sample(B, self.generator, shape=(E,))
            else:  # the training share only: the held-out rows rank the elites
                idx = torch.randint(data["obs"].shape[0], (E, B), generator=self.generator)
                batch = {k: v[idx] for k, v in data.items()}
            objective, mse = self.dynamics.member_losses({k: v.to(self.device) for k, v in batch.items()})
            loss = objective.sum()  # members are independent: summing keeps each member's gradient its own
            self.step_optimizers((opt, loss))
            losses[step] = mse.detach().mean().cpu()
        losses = all_reduce_mean(self._trainer, losses)  # every rank logs (and stops on) the same losses
        if not torch.isfinite(losses).all():
            raise FloatingPointError("dynamics loss is not finite: lower model_lr or check the data for huge values")
        self.model_trained_steps += steps
        if self.num_elites is not None:
            self.rank_elites(held_out if held_out is not None and held_out["obs"].shape[0] > 0 else data)
        return losses

    @torch.no_grad()
    def rank_elites(self, data: dict[str, Tensor], max_rows: int = 5000) -> Tensor:
        """Keep the ``model_num_elites`` members with the lowest error on ``data`` (up to ``max_rows`` of it):
        normalised-delta MSE plus the learned heads' losses; returns every member's error, shape (E,)."""
        n = data["obs"].shape[0]
        rows = torch.randperm(n, generator=self.generator)[:max_rows] if n > max_rows else torch.arange(n)
        batch = {k: v[rows].to(self.device).expand(self.dynamics.ensemble_size, *v[rows].shape)
                 for k, v in data.items()}
        was_training = self.dynamics.training
        self.dynamics.eval()
        _, mse = self.dynamics.member_losses(batch)
        for head_loss in self.dynamics.head_losses.values():  # a bad learned reward disqualifies a member too
            mse = mse + head_loss
        self.dynamics.train(was_training)
        mse = all_reduce_mean(self._trainer, mse.cpu())
        self.elites.copy_(mse.argsort()[: self.num_elites].to(self.elites.device))
        return mse

    def model_step(self, obs: Tensor, act: Tensor) -> Prediction:
        """The ensemble's step for (N, .) inputs, each output (N, ...): the elites' mean (a learned termination by
        majority), or one random elite per row. Only the elites run; for ``"random"`` each row runs through its
        own elite only (rows grouped by elite, one batched pass), so a step costs one member's compute per row."""
        sample = self.model_sampling == "random" and self.hparams.model_loss == "nll"
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
        self.rollout_seconds = 0.0
        if self.rollout_schedule is not None:
            self.rollout_length = self.scheduled_rollout_length(self.current_epoch)
            self.log("mbpo/rollout_length", float(self.rollout_length), on_step=False, on_epoch=True)
        if self.rollout_length == 0:
            return  # L = 0: model-free SAC, the model is never trained
        self.size_model_pool()
        if self.hparams.model_train_steps > 0:
            start = time.perf_counter()
            losses = self.train_model(self.hparams.model_train_steps)
            self.log_dict({"model/loss": losses[-min(100, len(losses)):].mean(), "model/loss_first": losses[0],
                           "model/train_steps": float(self.model_trained_steps),
                           "model/train_seconds": time.perf_counter() - start}, on_step=False, on_epoch=True)

    def retained_rounds(self) -> int:
        """Rollout rounds the model buffer holds: ``model_retain_epochs`` (else one) iterations' worth."""
        rounds_per_iteration = math.ceil(self.trainer.num_training_batches / self.rollout_every)
        return (self.model_retain_epochs or 1) * rounds_per_iteration

    def size_model_pool(self) -> None:
        """With ``model_retain_epochs``: the model buffer's capacity for the current L (newest rows kept)."""
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

    def prepare_batch(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        if self.rollout_length == 0:
            return batch
        if self.refill_model_buffer:  # the first update after a resume whose checkpoint left the rollouts out
            self.refill_model_pool()
        if batch_idx % self.rollout_every == 0:
            added = self.generate_rollouts(self.rollout_batch_size)
            log_scalars(self.trainer, {"mbpo/rollout_transitions": float(added)}, step=self.num_updates)
        return self.mix(batch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.rollout_length > 0 and batch_idx + 1 == self.trainer.num_training_batches:
            self.log_dict({"mbpo/rollout_seconds": self.rollout_seconds,
                           "mbpo/model_buffer_size": float(len(self.model_buffer))}, on_step=False, on_epoch=True)

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
                              "elites": self.elites.cpu(), "rollout_length": self.rollout_length}
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
            if "elites" in state and len(state["elites"]) == len(self.elites):  # same elite count configured
                self.elites = state["elites"].to(self.elites.device)
            if "rollout_length" in state and self.rollout_schedule is not None:
                self.rollout_length = int(state["rollout_length"])
