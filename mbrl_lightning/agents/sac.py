"""Soft actor-critic (Haarnoja et al. 2018) as a LightningModule: one training batch = one SAC update.

The MBRL loop is the project's usual one (one epoch = one iteration): ``CollectRandom`` seeds the real buffer,
the epoch's batches from ``ReplayDataModule`` (``batch_size`` transitions, ``steps_per_epoch`` batches) are the
SAC updates, and the callbacks ``Evaluate`` / ``CollectOnPolicy`` evaluate the deterministic policy and step
the real environment with the stochastic one at each epoch end. ``MBPO`` (``agents/mbpo.py``) is this module
plus a dynamics ensemble and model rollouts mixed into the batches (``prepare_batch``).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_lightning.callbacks.collect import log_scalars
from mbrl_lightning.checks import check_non_negative, check_positive
from mbrl_lightning.distributed import all_reduce_mean, average_gradients, local_backward
from mbrl_lightning.models.ensemble import ACTIVATIONS, EnsembleMLP, float32_output
from mbrl_lightning.precision import bf16_autocast, resolve_bf16

# ReplayDataModule offers a (possibly empty) validation loader; SAC has nothing to validate on purpose
warnings.filterwarnings("ignore", message=r"You passed in a `val_dataloader` but have no `validation_step`")
# under DDP the epoch metrics logged here are already averaged over the ranks (or are one rank's wall time)
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(sac|model|mbpo)/")

Backup = Literal["min", "mean", "doubleq"]
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MLP(nn.Sequential):
    """Linear layers and activations in sequence; the output layer in float32 under an autocast."""

    def forward(self, x: Tensor) -> Tensor:
        *hidden, output = self
        for layer in hidden:
            x = layer(x)
        return float32_output(output, x)


def mlp(in_features: int, out_features: int, hidden_size: int, num_layers: int,
        activation: str = "relu") -> MLP:
    """``num_layers`` hidden layers of ``hidden_size`` units and a linear output layer."""
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_size), ACTIVATIONS[activation]()]
        width = hidden_size
    layers.append(nn.Linear(width, out_features))
    return MLP(*layers)


def tanh_log_prob_correction(u: Tensor) -> Tensor:
    """``sum log(1 - tanh(u)^2)`` over the last dim, in the stable form ``2 (log 2 - u - softplus(-2u))``."""
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (the same update in one pass over all tensors; CPU and CUDA), else ``foreach``.

    The per-tensor loop of the default CPU Adam was a quarter of a small SAC update's time.
    """
    params = list(params)
    if all(p.device.type in ("cpu", "cuda") for p in params):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, foreach=True)


class SACPolicy:
    """The agent as a ``data.collect`` policy: stochastic (data collection) or its mean action (evaluation)."""

    def __init__(self, agent: SAC, deterministic: bool, seed: int = 0) -> None:
        self.agent, self.deterministic = agent, deterministic
        self.generator = torch.Generator(device=agent.device).manual_seed(seed)

    @torch.inference_mode()
    def act(self, obs: Tensor, env_idx: Tensor) -> Tensor:
        action = self.agent.act(obs.to(self.agent.device), self.deterministic, self.generator)
        return action.cpu()

    def reset(self, env_idx: Tensor) -> None:
        pass


class SAC(pl.LightningModule):
    """SAC with a tanh-squashed Gaussian actor, N critics batched in one ensemble network, target critics.

    Actions are handled in [-1, 1] (the actor's tanh range, which the critics see); ``act`` rescales them to
    the environment's bounds, taken from the DataModule in ``setup``; buffers hold environment actions.

    Args:
        obs_dim: observation size, linked from the DataModule by the CLI.
        act_dim: action size, linked from the DataModule by the CLI.
        hidden_size: units per hidden layer of the actor and critic MLPs.
        num_layers: hidden layers of the actor and critic MLPs (0 = linear).
        activation: activation of the actor and critic MLPs (a name from ``models.ensemble.ACTIVATIONS``).
        num_critics: critics N, trained on the same batch, each with its own target copy.
        backup: target value over critics: ``"min"`` (clipped double-Q, TD3), ``"mean"``, or ``"doubleq"``
            (critic i bootstraps from target critic i+1, double Q-learning).
        discount: gamma.
        tau: Polyak rate of the target critics, ``target <- (1 - tau) target + tau critic`` after every update.
        temperature: entropy weight alpha (the start value if ``learn_temperature``).
        learn_temperature: tune alpha so the policy entropy tracks ``target_entropy``.
        target_entropy: entropy the learned temperature aims for; ``None`` takes ``-act_dim`` (Haarnoja et al.).
        backup_entropy: include ``-alpha log pi(a'|s')`` in the critic target (soft Bellman backup).
        actor_lr: learning rate of the actor's Adam.
        critic_lr: learning rate of the critics' Adam.
        temperature_lr: learning rate of the temperature's Adam (used if ``learn_temperature``).
        log_std_min: lower bound of the actor's state-dependent log-std (a smooth tanh rescaling).
        log_std_max: upper bound of the actor's state-dependent log-std.
        bf16: the updates' hidden-layer matmuls in bfloat16 (an autocast); every network's output layer, the
            losses, the weights and Adam stay float32, and acting runs in float32. ``"auto"``: where the device has
            native bf16 (AVX512-BF16/AMX, a CUDA GPU with bf16). ``false`` (the default): float32.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int = 256, num_layers: int = 2,
                 activation: str = "relu", num_critics: int = 2, backup: Backup = "min", discount: float = 0.99,
                 tau: float = 0.005, temperature: float = 0.05, learn_temperature: bool = False,
                 target_entropy: float | None = None, backup_entropy: bool = True, actor_lr: float = 3e-4,
                 critic_lr: float = 3e-4, temperature_lr: float = 3e-4, log_std_min: float = -5.0,
                 log_std_max: float = 2.0, bf16: bool | Literal["auto"] = False) -> None:
        super().__init__()
        check_positive(obs_dim=obs_dim, act_dim=act_dim, hidden_size=hidden_size, num_critics=num_critics)
        check_non_negative(num_layers=num_layers)
        if backup not in ("min", "mean", "doubleq"):
            raise ValueError(f"backup must be 'min', 'mean' or 'doubleq', got '{backup}'")
        if backup in ("min", "doubleq") and num_critics < 2:
            raise ValueError(f"backup='{backup}' needs num_critics >= 2, got {num_critics}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; choose one of {sorted(ACTIVATIONS)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if bf16 not in (True, False, "auto"):
            raise ValueError(f"bf16 must be true, false or 'auto', got {bf16!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.num_critics, self.backup, self.discount, self.tau = num_critics, backup, discount, tau
        self.target_entropy = float(-act_dim if target_entropy is None else target_entropy)
        self.actor = mlp(obs_dim, 2 * act_dim, hidden_size, num_layers, activation)
        self.critics = EnsembleMLP(num_critics, obs_dim + act_dim, 1, hidden_size, num_layers, activation)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        # environment action bounds (set from the DataModule in ``setup``; kept in checkpoints)
        self.register_buffer("action_low", -torch.ones(act_dim))
        self.register_buffer("action_high", torch.ones(act_dim))
        self._opt_index: dict[str, int] = {}
        self.num_updates = 0  # SAC updates so far (the x axis of the sac/* curves; checkpointed)
        self._metric_keys: list[str] = []
        self._pending: list[dict[str, Tensor]] = []  # metrics of the updates not yet summed into the two below
        self._window = self._epoch = torch.zeros(0)
        self._window_n = self._epoch_n = 0
        self._updates_start = 0.0

    # ----------------------------------------------------------------- policy and critics
    @property
    def temperature(self) -> Tensor:
        """alpha = exp(log_alpha)."""
        return self.log_alpha.exp()

    def set_action_bounds(self, low: Tensor, high: Tensor) -> None:
        """Bounds of the environment's Box action space (actions are rescaled from [-1, 1] to them)."""
        if low.shape != (self.act_dim,) or high.shape != (self.act_dim,):
            raise ValueError(f"action bounds of shape {tuple(low.shape)} do not fit act_dim={self.act_dim}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError("SAC needs finite action bounds (a Box action space with finite low/high)")
        self.action_low.copy_(low)
        self.action_high.copy_(high)

    def to_env_action(self, action: Tensor) -> Tensor:
        """[-1, 1] -> [low, high]."""
        return self.action_low + 0.5 * (action + 1.0) * (self.action_high - self.action_low)

    def from_env_action(self, action: Tensor) -> Tensor:
        """[low, high] -> [-1, 1] (what the critics see)."""
        return 2.0 * (action - self.action_low) / (self.action_high - self.action_low) - 1.0

    def actor_dist(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of the pre-tanh Gaussian; log-std squashed smoothly into [log_std_min, log_std_max]."""
        mean, log_std = self.actor(obs).chunk(2, dim=-1)
        lo, hi = self.hparams.log_std_min, self.hparams.log_std_max
        return mean, lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1.0)

    def sample_action(self, obs: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterised ``a = tanh(mu + sigma * eps)`` in [-1, 1] and its log-density (with the tanh term)."""
        mean, log_std = self.actor_dist(obs)
        eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        u = mean + log_std.exp() * eps
        log_prob = (-0.5 * eps.square() - log_std - _LOG_SQRT_2PI).sum(-1) - tanh_log_prob_correction(u)
        return torch.tanh(u), log_prob

    def act(self, obs: Tensor, deterministic: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Environment-scale action: the mean action ``tanh(mu)`` if ``deterministic``, else a sample."""
        if deterministic:
            action = torch.tanh(self.actor_dist(obs)[0])
        else:
            action = self.sample_action(obs, generator)[0]
        return self.to_env_action(action)

    def policy(self, deterministic: bool = False, seed: int = 0) -> SACPolicy:
        """This agent as a policy for ``data.collect``: stochastic to collect, mean action to evaluate."""
        return SACPolicy(self, deterministic, seed)

    def acting_policy(self, datamodule: Any, max_envs: int, seed: int = 0, evaluation: bool = False) -> SACPolicy:
        """What ``CollectOnPolicy`` (stochastic) and ``Evaluate`` (deterministic) run on the real env."""
        return self.policy(deterministic=evaluation, seed=seed)

    def q_values(self, obs: Tensor, action: Tensor, target: bool = False) -> Tensor:
        """Q of every critic (or target critic) for ([-1, 1]-scaled) actions: (N, B)."""
        x = torch.cat([obs, action], dim=-1)
        net = self.critics_target if target else self.critics
        return net(x.expand(self.num_critics, *x.shape)).squeeze(-1)

    def critic_target(self, batch: dict[str, Tensor]) -> Tensor:
        """Soft Bellman target ``r + gamma (1 - done) (Q'(s', a') - alpha log pi(a'|s'))``, a' ~ pi(s'): (N or 1, B)."""
        with torch.no_grad():
            next_action, next_log_prob = self.sample_action(batch["next_obs"])
            next_q = self.q_values(batch["next_obs"], next_action, target=True)
            if self.backup == "min":
                next_q = next_q.min(0, keepdim=True).values
            elif self.backup == "mean":
                next_q = next_q.mean(0, keepdim=True)
            else:  # doubleq: critic i bootstraps from the target of critic i + 1
                next_q = next_q.roll(-1, dims=0)
            if self.hparams.backup_entropy:
                next_q = next_q - self.temperature * next_log_prob
            not_done = 1.0 - batch["terminated"].to(next_q.dtype)
            return batch["reward"] + self.discount * not_done * next_q

    # ----------------------------------------------------------------- one SAC update
    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step on the critics, the actor and (if learned) the temperature, then Polyak averaging.

        ``batch`` holds (B, ...) transitions with environment-scale actions. Returns the detached metrics.
        Under DDP each rank's batch is its own and the gradients are averaged over the ranks before each step.
        """
        with self.update_precision():
            return self._update(batch)

    def update_bf16(self) -> bool:
        """Whether updates run their hidden-layer matmuls in bfloat16: ``bf16``, or for ``"auto"`` the device's."""
        return resolve_bf16(self.hparams.bf16, self.device)

    def update_precision(self) -> AbstractContextManager:
        """The context an update runs in: autocast to bfloat16 where ``update_bf16()``, else none."""
        return bf16_autocast(self.device, "bf16") if self.update_bf16() else nullcontext()

    def _update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        alpha = self.temperature.detach()
        batch = {**batch, "act": self.from_env_action(batch["act"])}

        # critics: every critic regresses on the target; summing their losses keeps each gradient its own
        target = self.critic_target(batch)
        q = self.q_values(batch["obs"], batch["act"])
        critic_loss = (q - target).square().mean(-1).sum()
        self.step_optimizers((opts[self._opt_index["critic"]], critic_loss))

        # actor: reparameterised gradient of E[alpha log pi(a|s) - Q(s, a)], critics held fixed
        self.critics.requires_grad_(False)
        action, log_prob = self.sample_action(batch["obs"])
        q_pi = self.q_values(batch["obs"], action)
        q_pi = q_pi.min(0).values if self.backup == "min" else q_pi.mean(0)
        actor_loss = (alpha * log_prob - q_pi).mean()
        steps = [(opts[self._opt_index["actor"]], actor_loss)]
        metrics = {"sac/critic_loss": critic_loss.detach() / self.num_critics, "sac/actor_loss": actor_loss.detach(),
                   "sac/q_mean": q.detach().mean(), "sac/entropy": -log_prob.detach().mean()}
        if self.hparams.learn_temperature:  # the same log-probabilities: one step (one sync) with the actor's
            temperature_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            steps.append((opts[self._opt_index["temperature"]], temperature_loss))
            metrics["sac/temperature_loss"] = temperature_loss.detach()
        self.step_optimizers(*steps)
        self.critics.requires_grad_(True)
        metrics["sac/temperature"] = self.temperature.detach()

        with torch.no_grad():
            target_params = list(self.critics_target.parameters())
            torch._foreach_lerp_(target_params, list(self.critics.parameters()), self.tau)
        return metrics

    def step_optimizers(self, *steps: tuple[Any, Tensor]) -> None:
        """Backward the (optimiser, loss) pairs' losses, average the gradients over the DDP ranks, step the optimisers.

        The losses go through one backward, of their sum (one autograd pass and one ``manual_backward`` instead of
        one per loss): a sum passes each loss its gradient unchanged, so every gradient is bit for bit the one that
        a backward per loss gives (SAC's losses reach disjoint parameters). The gradients are reset as
        ``zero_grad(set_to_none=True)`` does, without its profiler context per optimiser (a small update's overhead).

        DDP's own gradient hooks are blocked (``local_backward``): one update is several backwards over disjoint
        parameter groups, each synced here in one collective, so no ``find_unused_parameters`` is needed.
        """
        trainer = self._trainer
        params = [p for opt, _ in steps for group in opt.param_groups for p in group["params"]]
        for p in params:
            p.grad = None
        loss = steps[0][1]
        for _, other in steps[1:]:
            loss = loss + other
        with local_backward(trainer):
            self.manual_backward(loss)
        average_gradients(trainer, params)
        for opt, _ in steps:
            opt.step()

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "action_low"):
            if dm.act_dim != self.act_dim or dm.obs_dim != self.obs_dim:
                raise ValueError(f"{type(self).__name__} was built for obs_dim={self.obs_dim}, "
                                 f"act_dim={self.act_dim}, but env '{dm.env_id}' has {dm.obs_dim}, {dm.act_dim}")
            self.set_action_bounds(dm.action_low.to(self.action_low), dm.action_high.to(self.action_high))

    def prepare_batch(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """The batch an update trains on; plain SAC trains on the real batch as it is (MBPO mixes in model data)."""
        return batch

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if batch["obs"].dim() == 3:  # ReplayDataModule yields (E=1, B, ...) for a module without an ensemble
            batch = {k: v[0] for k, v in batch.items()}
        if batch_idx == 0:
            self._updates_start = time.perf_counter()
        metrics = self.update(self.prepare_batch(batch, batch_idx))
        self.num_updates += 1
        self._accumulate(metrics)
        if batch_idx + 1 == self.trainer.num_training_batches:  # wall time of this iteration's updates
            self.log("sac/seconds", time.perf_counter() - self._updates_start, on_step=False, on_epoch=True)

    def _accumulate(self, metrics: dict[str, Tensor]) -> None:
        """Keep the update's metrics; every ``log_every_n_steps`` updates write their mean to the loggers.

        ``self.log`` on every update costs about as much as a small SAC update itself, so per-update metrics
        go straight to the loggers (x axis: SAC updates) and ``self.log`` gets the epoch means only (``*_epoch``,
        in ``trainer.callback_metrics`` for callbacks such as ModelCheckpoint). The metrics are summed only
        when logged (one stack for the whole window), not per update.
        """
        self._pending.append(metrics)
        every = max(int(self.trainer.log_every_n_steps), 1) if self._trainer is not None else 0
        if self._window_n + len(self._pending) < (every or 50):  # no Trainer: still sum every 50 updates
            return
        self._sum_pending()
        if every:  # means over the ranks too: every rank logs and checks the same
            window = all_reduce_mean(self._trainer, self._window / self._window_n)
            means = dict(zip(self._metric_keys, window.tolist(), strict=True))
            self._check_finite(means)
            log_scalars(self.trainer, means, step=self.num_updates)
            self._window, self._window_n = self._window * 0, 0

    def _sum_pending(self) -> None:
        """Add the kept updates' metrics to the window and epoch sums, in one stack."""
        if not self._pending:
            return
        keys, n = list(self._pending[0]), len(self._pending)
        sums = torch.stack([v for metrics in self._pending for v in metrics.values()]).view(n, len(keys)).sum(0)
        if self._metric_keys != keys:
            self._metric_keys, self._window, self._epoch = keys, sums * 0, sums * 0
            self._window_n = self._epoch_n = 0
        self._window, self._epoch = self._window + sums, self._epoch + sums
        self._window_n, self._epoch_n = self._window_n + n, self._epoch_n + n
        self._pending.clear()

    def _check_finite(self, metrics: dict[str, float]) -> None:
        """Stop with the names of the diverged quantities (checked where metrics are synced anyway, not per update)."""
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:
            raise FloatingPointError(f"SAC diverged by update {self.num_updates}: {bad} are not finite; lower the "
                                     "learning rates or check rewards/observations for huge values")

    def on_train_epoch_end(self) -> None:
        self._sum_pending()
        if self._epoch_n > 0:
            epoch = all_reduce_mean(self._trainer, self._epoch / self._epoch_n)
            means = dict(zip(self._metric_keys, epoch, strict=True))
            self._check_finite({k: float(v) for k, v in means.items()})
            self.log_dict({f"{k}_epoch": v for k, v in means.items()})  # e.g. sac/critic_loss_epoch
            self._epoch, self._epoch_n = self._epoch * 0, 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the metric sums in progress (the log window runs across iterations; a mid-epoch checkpoint holds part of
        # the epoch's) and the updates' wall time so far: a resumed run logs what the uninterrupted one does
        checkpoint["sac"] = {"num_updates": self.num_updates, "metric_keys": list(self._metric_keys),
                             "pending": [dict(metrics) for metrics in self._pending],
                             "window": self._window, "window_n": self._window_n,
                             "epoch": self._epoch, "epoch_n": self._epoch_n,
                             "updates_seconds": time.perf_counter() - self._updates_start}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("sac", {})
        self.num_updates = int(state.get("num_updates", 0))
        if "window" in state:  # checkpoints from before the sums were kept start them anew
            self._metric_keys = list(state["metric_keys"])
            self._pending = [dict(metrics) for metrics in state["pending"]]
            self._window, self._window_n = state["window"], int(state["window_n"])
            self._epoch, self._epoch_n = state["epoch"], int(state["epoch_n"])
            self._updates_start = time.perf_counter() - float(state["updates_seconds"])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opts = [adam(self.actor.parameters(), self.hparams.actor_lr),
                adam(self.critics.parameters(), self.hparams.critic_lr)]
        self._opt_index = {"actor": 0, "critic": 1}
        if self.hparams.learn_temperature:
            self._opt_index["temperature"] = len(opts)
            opts.append(adam([self.log_alpha], self.hparams.temperature_lr))
        return opts
