"""Evaluate the agent's policy (MPC, or SAC's mean action) on real episodes after each iteration."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytorch_lightning as pl
import torch

from mbrl_lightning.callbacks.collect import _datamodule, acting_policy, is_last_iteration, total_over_ranks
from mbrl_lightning.checks import check_positive
from mbrl_lightning.data.collect import NonFiniteEnvError, Rollouts, collect, resolve_seed
from mbrl_lightning.distributed import gather_rows, rank_share

log = logging.getLogger(__name__)


class Evaluate(pl.Callback):
    """Runs ``num_episodes`` episodes of the agent's evaluation policy (MPC, or SAC's deterministic mean action;
    ``num_envs`` at a time, acting in one batch) every
    ``every_n_iters`` iterations and at the last one; logs eval/return (mean, std, min, max), eval/ep_len,
    env steps so far and planning seconds per action. Episodes use the same start seeds every iteration, so
    iterations (and runs with other ``seed_everything``) are compared on equal terms; under DDP the episodes
    are split over the ranks. ``video=True`` saves the first episode as a GIF in the log folder and a strip of
    its frames to TensorBoard (skipped with a warning if the env cannot render; about 0.3 s a frame on a CPU).
    ``eval/nonfinite_steps`` counts steps whose observation or reward was NaN or inf: each ended its episode there
    (which counts with the return of its finite steps).

    Args:
        num_episodes: whole evaluation episodes per evaluation.
        num_envs: episodes run side by side, acting in one batch; ``None`` runs all ``num_episodes`` at once.
        every_n_iters: evaluate every that many iterations (and always at the run's last one).
        seed: reset seed of the first episode (episode i uses ``seed + i``), the same every iteration.
        video: save the first episode as a GIF in the log folder and a strip of frames to TensorBoard.
    """

    def __init__(self, num_episodes: int = 10, num_envs: int | None = None, every_n_iters: int = 1,
                 seed: int = 12345, video: bool = False) -> None:
        check_positive(num_episodes=num_episodes, every_n_iters=every_n_iters)
        if num_envs is not None:
            check_positive(num_envs=num_envs)
        self.num_episodes, self.every_n_iters, self.seed, self.video = num_episodes, every_n_iters, seed, video
        self.num_envs = num_envs or num_episodes
        self.plan_seconds_per_action: float | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        iteration = trainer.current_epoch + 1
        last = is_last_iteration(trainer)
        if trainer.sanity_checking or not (last or iteration % self.every_n_iters == 0):
            return
        dm = _datamodule(trainer)
        episodes, first = rank_share(self.num_episodes, trainer)
        result = self._run(trainer, pl_module, dm, episodes, self.seed + first, iteration) if episodes else None
        stats = {"return": torch.tensor(result.returns if result else [], dtype=torch.float32),
                 "length": torch.tensor(result.lengths if result else [], dtype=torch.float32)}
        stats = gather_rows(trainer, stats)
        nonfinite = total_over_ranks(trainer, result.nonfinite_steps if result else 0)
        returns = stats["return"]
        pl_module.log_dict({
            "eval/return": returns.mean(), "eval/return_std": returns.std(unbiased=False),
            "eval/return_min": returns.min(), "eval/return_max": returns.max(),
            "eval/ep_len": stats["length"].mean(),
            "eval/env_steps": float(dm.buffer.total_added),
            "eval/iteration": float(iteration),
            "eval/nonfinite_steps": nonfinite,
            **({"eval/plan_seconds_per_action": self.plan_seconds_per_action}
               if self.plan_seconds_per_action is not None else {}),
        })
        folder = (trainer.log_dir or ".") if self.video else None  # a collective under DDP: asked on every rank
        if result is not None and result.frames:
            self._save_video(trainer, result.frames, iteration, folder)

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, dm, episodes: int, seed: int,
             iteration: int) -> Rollouts:
        """This rank's episodes with the MPC policy (video of the first one on rank 0, when asked)."""
        record = self.video and trainer.is_global_zero
        num_envs = min(self.num_envs, episodes)
        envs = [dm.make_env(render_mode="rgb_array") if (record and i == 0) else dm.make_env()
                for i in range(num_envs)]
        policy = acting_policy(trainer, pl_module, num_envs, seed + 7919 * resolve_seed(None), evaluation=True)
        desc = f"evaluate (iteration {iteration})"
        pl_module.eval()
        try:
            result = collect(envs, policy, num_episodes=episodes, seed=seed, desc=desc,
                             progress=trainer.is_global_zero, record_first=record)
        except Exception as err:  # rendering unavailable: evaluate without video
            if not record or isinstance(err, NonFiniteEnvError):
                raise
            log.warning("video disabled: rendering failed (%s); set MUJOCO_GL=egl for MuJoCo envs", err)
            envs[0] = dm.make_env()
            result = collect(envs, policy, num_episodes=episodes, seed=seed, desc=desc,
                             progress=trainer.is_global_zero)
        finally:
            pl_module.train()
        for env in envs:
            env.close()
        if hasattr(policy, "plan_seconds"):  # planners report their own time per action
            self.plan_seconds_per_action = policy.plan_seconds / max(policy.planned_actions, 1)
        return result

    def _save_video(self, trainer: pl.Trainer, frames: list[np.ndarray], iteration: int, folder: str) -> None:
        from PIL import Image

        os.makedirs(folder, exist_ok=True)
        images = [Image.fromarray(f) for f in frames[::2]]
        path = os.path.join(folder, f"eval_iter{iteration:03d}.gif")
        images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
        strip = np.concatenate([frames[i] for i in np.linspace(0, len(frames) - 1, 6).astype(int)], axis=1)
        for logger in trainer.loggers:
            if hasattr(logger, "experiment") and hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image("eval/episode_frames", strip, iteration, dataformats="HWC")
