"""The ensemble dynamics model f_theta(s, a) -> normalised state delta (brief, eqs. 1-6)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, NamedTuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError

from mbrl_lightning.checks import check_non_negative, check_positive
from mbrl_lightning.models.ensemble import EnsembleLinear, EnsembleMLP
from mbrl_lightning.models.folded import FoldedStep
from mbrl_lightning.models.normalizer import Normalizer
from mbrl_lightning.precision import bf16_autocast, resolve_bf16


class Prediction(NamedTuple):
    """One model step for every member: the next state (E, N, obs_dim) and, where the model learns them, the
    reward (E, N) and termination (E, N, bool); ``None`` means the task's own function gives it."""

    next_obs: Tensor
    reward: Tensor | None = None
    terminated: Tensor | None = None


LearnFlag = bool | Literal["auto"]


class DynamicsEnsemble(pl.LightningModule):
    """E independently initialised networks trained on independent minibatches of the replay buffer.

    Targets are normalised deltas ``Normalize(s' - s)`` (eq. 5); predictions are ``s + Unnormalize(f(s, a))``
    (eq. 6). ``loss="mse"`` is the brief's deterministic model; ``loss="nll"`` learns a bounded log-variance
    per output (PETS). The normalisers are refitted to the whole buffer at the start of every iteration.
    ``learn_reward``/``learn_termination`` add a reward output (trained by MSE on the normalised reward) and a
    termination logit (trained by cross-entropy), for environments with no hand-written reward function.

    Args:
        obs_dim: observation size (linked from the DataModule by the CLI).
        act_dim: action size (linked from the DataModule by the CLI).
        ensemble_size: members E (the brief's ``ensemble_size``).
        hidden_size: units per hidden layer of each member's MLP.
        num_layers: hidden layers of each member's MLP (0: a linear model).
        activation: hidden activation (relu, tanh, silu, elu, gelu, leaky_relu).
        lr: Adam learning rate over all members' weights at once (one optimiser, summed member losses).
        weight_decay: Adam's (coupled) L2 decay: one value for every parameter, or a list with one value per layer,
            input first, for the layers' weights only (PETS/MBPO: 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4).
        loss: ``"mse"`` (the brief's deterministic model) or ``"nll"`` (Gaussian with learned variance).
        learn_reward: also predict the reward of each transition. ``"auto"``: the CLI sets it to whether the
            run's env has no registered reward function (outside the CLI ``"auto"`` means no).
        learn_termination: also predict whether a transition terminates the episode (``"auto"`` as above).
        train_bf16: run the network's matmuls in bfloat16 in gradient steps (``training_precision()``, an autocast;
            weights, optimiser, normalisers and losses stay float32, as do held-out evaluation and prediction).
            ``"auto"``: where the device has native bf16 matmuls (AVX512-BF16/AMX, a CUDA GPU with bf16), float32
            elsewhere. On the MBPO Hopper config's model, on such a CPU, an epoch takes 30 % less time and the
            held-out error ends some 1-3 % higher (docs/performance.md, "bfloat16 for the Hopper runs").
    """

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int = 3, hidden_size: int = 250,
                 num_layers: int = 2, activation: str = "relu", lr: float = 1e-3,
                 weight_decay: float | list[float] = 0.0, loss: Literal["mse", "nll"] = "mse",
                 learn_reward: LearnFlag = "auto", learn_termination: LearnFlag = "auto",
                 train_bf16: bool | Literal["auto"] = False) -> None:
        super().__init__()
        if loss not in ("mse", "nll"):
            raise ValueError(f"loss must be 'mse' or 'nll', got '{loss}'")
        for name, flag in (("learn_reward", learn_reward), ("learn_termination", learn_termination)):
            if flag not in (True, False, "auto"):
                raise ValueError(f"{name} must be true, false or 'auto', got {flag!r}")
        if train_bf16 not in (True, False, "auto"):
            raise ValueError(f"train_bf16 must be true, false or 'auto', got {train_bf16!r}")
        check_positive(obs_dim=obs_dim, act_dim=act_dim, ensemble_size=ensemble_size, hidden_size=hidden_size)
        check_non_negative(num_layers=num_layers)
        self.save_hyperparameters()
        # built inside another module's __init__ (MBPO's dynamics), save_hyperparameters also collects that module's
        # arguments (SAC's hidden_size among them) and they win: set this model's own exactly
        self.hparams.update({"obs_dim": obs_dim, "act_dim": act_dim, "ensemble_size": ensemble_size,
                             "hidden_size": hidden_size, "num_layers": num_layers, "activation": activation,
                             "lr": lr, "weight_decay": weight_decay, "loss": loss, "learn_reward": learn_reward,
                             "learn_termination": learn_termination, "train_bf16": train_bf16})
        self.obs_dim, self.act_dim, self.ensemble_size = obs_dim, act_dim, ensemble_size
        self.learn_reward, self.learn_termination = learn_reward is True, learn_termination is True
        # output columns: delta mean (obs_dim) | delta log-variance (obs_dim, nll) | reward (1) | termination logit (1)
        out = (2 if loss == "nll" else 1) * obs_dim + self.learn_reward + self.learn_termination
        self.net = EnsembleMLP(ensemble_size, obs_dim + act_dim, out, hidden_size, num_layers, activation)
        decays = [weight_decay] * (num_layers + 1) if isinstance(weight_decay, int | float) else list(weight_decay)
        if len(decays) != num_layers + 1:
            raise ValueError(f"weight_decay lists one value per layer: {num_layers + 1} here, got {len(decays)}")
        if any(not isinstance(d, int | float) or d < 0 for d in decays):
            raise ValueError(f"weight_decay must be >= 0 (one number, or one per layer), got {weight_decay!r}")
        self.layer_decays = [float(d) for d in decays]
        self.obs_norm, self.act_norm, self.delta_norm = Normalizer(obs_dim), Normalizer(act_dim), Normalizer(obs_dim)
        # only where used, so checkpoints of models without the reward output keep their exact state dict
        self.reward_norm = Normalizer(1) if self.learn_reward else None
        if loss == "nll":
            self.max_logvar = nn.Parameter(torch.full((obs_dim,), 0.5))
            self.min_logvar = nn.Parameter(torch.full((obs_dim,), -10.0))
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_mse = MeanSquaredError()  # next-state error in the environment's own units

    # ----------------------------------------------------------------- the model
    def fit_normalizers(self, data: dict[str, Tensor]) -> None:
        """Refit input and delta statistics to a set of transitions (the whole replay buffer)."""
        self.obs_norm.fit(data["obs"])
        self.act_norm.fit(data["act"])
        self.delta_norm.fit(data["next_obs"] - data["obs"])
        if self.reward_norm is not None:
            self.reward_norm.fit(data["reward"].reshape(-1, 1))

    @property
    def has_learned_heads(self) -> bool:
        """Whether this model predicts reward or termination besides the next state."""
        return self.learn_reward or self.learn_termination

    def forward(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalised delta mean (and log-variance for ``nll``) for inputs of shape (E, N, .)."""
        mean, logvar, _, _ = self.heads(obs, act)
        return mean, logvar

    def heads(self, obs: Tensor, act: Tensor, members: Tensor | None = None
              ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """Every output for inputs of shape (E, N, .): normalised delta mean, its bounded log-variance (``nll``),
        normalised reward (E, N) and termination logit (E, N); ``None`` for the outputs this model lacks.
        With ``members`` (k indices) the inputs are (k, N, .), one slice per listed member, and only those run."""
        x = torch.cat([self.obs_norm.normalize(obs), self.act_norm.normalize(act)], dim=-1)
        y = self.net(x, members).to(x.dtype)  # under training_precision() the net's output is bfloat16
        d = self.obs_dim
        mean, logvar, col = y[..., :d], None, d
        if self.hparams.loss == "nll":
            logvar, col = y[..., d:2 * d], 2 * d
            logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
            logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        reward = done_logit = None
        if self.learn_reward:
            reward, col = y[..., col], col + 1
        if self.learn_termination:
            done_logit = y[..., col]
        return mean, logvar, reward, done_logit

    def training_bf16(self) -> bool:
        """Whether training passes run their matmuls in bfloat16: ``train_bf16``, or for ``"auto"`` the device's."""
        return resolve_bf16(self.hparams.train_bf16, self.device)

    def training_precision(self) -> AbstractContextManager:
        """The context a training pass (``member_losses`` for a gradient step) runs in: autocast to bfloat16 where
        ``training_bf16()``, so the net's hidden matmuls run in bf16 and everything else in float32; else none."""
        return bf16_autocast(self.device, "train_bf16") if self.training_bf16() else nullcontext()

    def predict(self, obs: Tensor, act: Tensor, sample: bool = False,
                generator: torch.Generator | None = None, members: Tensor | None = None) -> Prediction:
        """One step for each member: next state ``s + Unnormalize(f(s, a))`` (E, N, obs_dim), plus the learned
        reward and termination (logit > 0) where this model has them.

        ``obs``/``act`` of shape (N, .) are broadcast to all members; (E, N, .) gives each member its own
        trajectory. ``members`` (k indices) runs only those members, in that order: outputs (k, N, ...), inputs
        (N, .) or (k, N, .). ``sample=True`` draws the next state from the learned Gaussian (``nll`` only) instead
        of taking its mean; reward and termination are always the predicted mean and the most likely outcome.
        """
        e = self.ensemble_size if members is None else members.shape[0]
        if obs.dim() == 2:
            obs = obs.expand(e, *obs.shape)
        if act.dim() == 2:
            act = act.expand(e, *act.shape)
        mean, logvar, reward, done_logit = self.heads(obs, act, members)
        if sample and logvar is not None:
            noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
            mean = mean + noise * (0.5 * logvar).exp()
        if self.reward_norm is not None:
            reward = self.reward_norm.unnormalize(reward.unsqueeze(-1)).squeeze(-1)
        return Prediction(obs + self.delta_norm.unnormalize(mean), reward,
                          None if done_logit is None else done_logit > 0)

    def predict_next(self, obs: Tensor, act: Tensor, sample: bool = False,
                     generator: torch.Generator | None = None) -> Tensor:
        """Next state for each member, (E, N, obs_dim): ``predict(...).next_obs``."""
        return self.predict(obs, act, sample, generator).next_obs

    def folded_step(self) -> FoldedStep:
        """``predict_next``'s mean step with the normalisers folded into the first and last layers' weights, for
        planning (same maths, fewer passes per step); a snapshot of the current weights and statistics."""
        layers = [m for m in self.net if isinstance(m, EnsembleLinear)]
        activations = [m for m in self.net if not isinstance(m, EnsembleLinear)]
        return FoldedStep(layers, activations, self.obs_norm, self.act_norm, self.delta_norm)

    def member_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(training objective per member, normalised-delta MSE per member), both of shape (E,).

        The objective adds the learned heads' losses (normalised-reward MSE, termination cross-entropy) to the
        delta's; their per-member values are kept in ``head_losses`` for logging.
        """
        target = self.delta_norm.normalize(batch["next_obs"] - batch["obs"])
        mean, logvar, reward, done_logit = self.heads(batch["obs"], batch["act"])
        sq = (mean - target).pow(2)
        mse = sq.mean(dim=(1, 2))
        if logvar is None:
            objective = mse
        else:
            nll = (sq * (-logvar).exp() + logvar).mean(dim=(1, 2))
            objective = nll + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        self.head_losses: dict[str, Tensor] = {}
        if self.reward_norm is not None:
            reward_target = self.reward_norm.normalize(batch["reward"].unsqueeze(-1)).squeeze(-1)
            self.head_losses["reward"] = (reward - reward_target).pow(2).mean(1)
        if done_logit is not None:
            self.head_losses["termination"] = F.binary_cross_entropy_with_logits(
                done_logit, batch["terminated"].to(done_logit.dtype), reduction="none").mean(1)
        for value in self.head_losses.values():
            objective = objective + value
        return objective, mse

    # ----------------------------------------------------------------- Lightning hooks
    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "buffer") and len(dm.buffer) > 0:
            self.fit_normalizers({k: v.to(self.device) for k, v in dm.buffer.all().items()})

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        with self.training_precision():
            objective, mse = self.member_losses(batch)
        loss = objective.sum()  # members are independent: summing keeps each member's gradient its own
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"dynamics loss is {loss.item()} at step {self.global_step}: lower model.lr, check the data "
                "for huge values, or use loss='mse'"
            )
        self.train_loss.update(mse.mean())
        self.log("train/loss", mse.mean(), on_step=True, on_epoch=False, prog_bar=True)
        if self.hparams.loss == "nll":
            self.log("train/nll", objective.mean(), on_step=True, on_epoch=False)
        for name, value in self.head_losses.items():
            self.log(f"train/{name}_loss", value.mean(), on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss.compute())
        self.train_loss.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        _, mse = self.member_losses(batch)
        self.val_loss.update(mse.mean(), weight=batch["obs"].shape[1])
        pred = self.predict_next(batch["obs"], batch["act"]).mean(0)
        self.val_mse.update(pred, batch["next_obs"][0])

    def on_validation_epoch_end(self) -> None:
        if self.val_loss.update_count > 0:
            self.log("val/loss", self.val_loss.compute(), prog_bar=True)
            self.log("val/next_obs_mse", self.val_mse.compute())
        self.val_loss.reset()
        self.val_mse.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if isinstance(self.hparams.weight_decay, int | float):  # one group, as checkpoints before per-layer decay
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        layers = [m for m in self.net if isinstance(m, EnsembleLinear)]
        decayed = {id(layer.weight) for layer in layers}
        groups = [{"params": [layer.weight], "weight_decay": d} for layer, d in zip(layers, self.layer_decays,
                                                                                       strict=True)]
        groups.append({"params": [p for p in self.parameters() if id(p) not in decayed], "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=self.hparams.lr)
