"""Example user callback: how far the learned model drifts when it predicts k steps open loop.

Add it to a config, after the package's callbacks:

    trainer:
      callbacks:
        - class_path: callbacks.model_error.MultiStepError
          init_args: {horizon: 10, num_episodes: 4}

After every iteration it plays ``num_episodes`` short real episodes with random actions, predicts each one
open loop from its first state with the ensemble mean, and logs ``model/error_k{k}`` (mean squared error in
the environment's units after k steps) for k = 1, 2, 4, ... up to ``horizon``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from mbrl_lightning.checks import check_positive
from mbrl_lightning.data import RandomPolicy, collect


class MultiStepError(pl.Callback):
    """Open-loop k-step prediction error of the ensemble mean on fresh random-action episodes.

    Args:
        horizon: longest open-loop prediction, in steps (errors are logged for k = 1, 2, 4, ... up to it).
        num_episodes: random-action episodes predicted after each iteration.
        seed: seed of the episodes' resets and actions (episode i uses ``seed + i``).
    """

    def __init__(self, horizon: int = 10, num_episodes: int = 4, seed: int = 777) -> None:
        check_positive(horizon=horizon, num_episodes=num_episodes)
        self.horizon, self.num_episodes, self.seed = horizon, num_episodes, seed

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        errors = torch.zeros(self.horizon)
        counted = 0
        for i in range(self.num_episodes):
            env = dm.make_env()
            policy = RandomPolicy(dm.action_low, dm.action_high, seed=self.seed + i)
            data = collect([env], policy, num_steps=self.horizon, seed=self.seed + i, progress=False).transitions
            env.close()
            if data["obs"].shape[0] < self.horizon or data["terminated"].any():
                continue  # the episode ended early: no full open-loop segment
            state = data["obs"][:1].to(pl_module.device)
            for k in range(self.horizon):
                state = pl_module.predict_next(state, data["act"][k:k + 1].to(pl_module.device)).mean(0)
                errors[k] += (state.cpu() - data["next_obs"][k:k + 1]).pow(2).mean()
            counted += 1
        if counted:
            errors /= counted
            ks = sorted({2**j for j in range(self.horizon.bit_length()) if 2**j <= self.horizon} | {self.horizon})
            pl_module.log_dict({f"model/error_k{k}": errors[k - 1] for k in ks})
