"""The ensemble dynamics model f_theta(s, a) -> normalised state delta (brief, eqs. 1-6)."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError

from mbrl_lightning.checks import check_non_negative, check_positive
from mbrl_lightning.models.ensemble import EnsembleLinear, EnsembleMLP
from mbrl_lightning.models.folded import FoldedStep
from mbrl_lightning.models.normalizer import Normalizer


class DynamicsEnsemble(pl.LightningModule):
    """E independently initialised networks trained on independent minibatches of the replay buffer.

    Targets are normalised deltas ``Normalize(s' - s)`` (eq. 5); predictions are ``s + Unnormalize(f(s, a))``
    (eq. 6). ``loss="mse"`` is the brief's deterministic model; ``loss="nll"`` learns a bounded log-variance
    per output (PETS). The normalisers are refitted to the whole buffer at the start of every iteration.

    Args:
        obs_dim: observation size (linked from the DataModule by the CLI).
        act_dim: action size (linked from the DataModule by the CLI).
        ensemble_size: members E (the brief's ``ensemble_size``).
        hidden_size: units per hidden layer of each member's MLP.
        num_layers: hidden layers of each member's MLP (0: a linear model).
        activation: hidden activation (relu, tanh, silu, elu, gelu, leaky_relu).
        lr: Adam learning rate over all members' weights at once (one optimiser, summed member losses).
        weight_decay: Adam's L2 weight decay.
        loss: ``"mse"`` (the brief's deterministic model) or ``"nll"`` (Gaussian with learned variance).
    """

    def __init__(self, obs_dim: int, act_dim: int, ensemble_size: int = 3, hidden_size: int = 250,
                 num_layers: int = 2, activation: str = "relu", lr: float = 1e-3, weight_decay: float = 0.0,
                 loss: Literal["mse", "nll"] = "mse") -> None:
        super().__init__()
        if loss not in ("mse", "nll"):
            raise ValueError(f"loss must be 'mse' or 'nll', got '{loss}'")
        check_positive(obs_dim=obs_dim, act_dim=act_dim, ensemble_size=ensemble_size, hidden_size=hidden_size)
        check_non_negative(num_layers=num_layers)
        self.save_hyperparameters()
        self.obs_dim, self.act_dim, self.ensemble_size = obs_dim, act_dim, ensemble_size
        out = 2 * obs_dim if loss == "nll" else obs_dim
        self.net = EnsembleMLP(ensemble_size, obs_dim + act_dim, out, hidden_size, num_layers, activation)
        self.obs_norm, self.act_norm, self.delta_norm = Normalizer(obs_dim), Normalizer(act_dim), Normalizer(obs_dim)
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

    def forward(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalised delta mean (and log-variance for ``nll``) for inputs of shape (E, N, .)."""
        x = torch.cat([self.obs_norm.normalize(obs), self.act_norm.normalize(act)], dim=-1)
        y = self.net(x)
        if self.hparams.loss == "mse":
            return y, None
        mean, logvar = y.split(self.obs_dim, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def predict_next(self, obs: Tensor, act: Tensor, sample: bool = False,
                     generator: torch.Generator | None = None) -> Tensor:
        """Next state ``s + Unnormalize(f(s, a))`` for each member: (E, N, obs_dim).

        ``obs``/``act`` of shape (N, .) are broadcast to all members; (E, N, .) gives each member its own
        trajectory. ``sample=True`` draws from the learned Gaussian (``nll`` only) instead of its mean.
        """
        if obs.dim() == 2:
            obs = obs.expand(self.ensemble_size, *obs.shape)
        if act.dim() == 2:
            act = act.expand(self.ensemble_size, *act.shape)
        mean, logvar = self(obs, act)
        if sample and logvar is not None:
            noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
            mean = mean + noise * (0.5 * logvar).exp()
        return obs + self.delta_norm.unnormalize(mean)

    def folded_step(self) -> FoldedStep:
        """``predict_next``'s mean step with the normalisers folded into the first and last layers' weights, for
        planning (same maths, fewer passes per step); a snapshot of the current weights and statistics."""
        layers = [m for m in self.net if isinstance(m, EnsembleLinear)]
        activations = [m for m in self.net if not isinstance(m, EnsembleLinear)]
        return FoldedStep(layers, activations, self.obs_norm, self.act_norm, self.delta_norm)

    def member_losses(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(training objective per member, normalised-delta MSE per member), both of shape (E,)."""
        target = self.delta_norm.normalize(batch["next_obs"] - batch["obs"])
        mean, logvar = self(batch["obs"], batch["act"])
        sq = (mean - target).pow(2)
        mse = sq.mean(dim=(1, 2))
        if logvar is None:
            return mse, mse
        nll = (sq * (-logvar).exp() + logvar).mean(dim=(1, 2))
        return nll + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum()), mse

    # ----------------------------------------------------------------- Lightning hooks
    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "buffer") and len(dm.buffer) > 0:
            self.fit_normalizers({k: v.to(self.device) for k, v in dm.buffer.all().items()})

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
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
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
