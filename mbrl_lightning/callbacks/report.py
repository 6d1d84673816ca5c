"""Progress that a person reads: one line per MBRL iteration, the run time, and PNG curves in the log dir."""

from __future__ import annotations

import os
import time
from typing import Any

import pytorch_lightning as pl
import torch


def _scalar(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


class ProgressReport(pl.Callback):
    """Prints each iteration's losses (and eval return, when an evaluation callback logged one) and draws
    ``loss_curve.png`` (per-step training loss, the brief's Problem 1 figure) and ``eval_return.png``
    into the run's log folder after every iteration, so a crash loses no figure.

    Put it after the evaluation callback in ``trainer.callbacks``, so the line includes that iteration's return.

    Args:
        plot: draw the PNG curves (``False``: the printed lines only).
    """

    def __init__(self, plot: bool = True) -> None:
        self.plot = plot
        self.loss_steps: list[float] = []
        self.losses: list[float] = []
        self.returns: list[tuple[float, float]] = []  # (iteration, eval return)
        self._start = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._start = time.perf_counter()  # before on_fit_start, so initial data collection is counted
        if trainer.logger is not None and trainer.is_global_zero:
            # an event now: the logged wall time (first to last event, `report`) then covers the data collection
            trainer.logger.log_metrics({"time/fit_start": time.time()}, step=trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = _scalar(trainer.callback_metrics, "train/loss")
        if loss is not None:
            self.loss_steps.append(float(trainer.global_step))
            self.losses.append(loss)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        n = trainer.num_training_batches
        recent = self.losses[-n:] if isinstance(n, int) and n > 0 else self.losses[-1:]
        limit = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        parts = [f"iteration {trainer.current_epoch + 1}{limit}"]
        if recent:
            parts.append(f"train loss {recent[-1]:.4f} (mean {sum(recent) / len(recent):.4f})")
        for key, fmt in (("val/loss", "val loss {:.4g}"), ("eval/return", "eval return {:.4g}"),
                         ("eval/return_std", "± {:.3g}"), ("data/env_steps", "env steps {:.0f}")):
            value = _scalar(m, key)
            if value is not None:
                parts.append(fmt.format(value))
        value = _scalar(m, "eval/return")
        if value is not None:
            self.returns.append((float(trainer.current_epoch + 1), value))
        parts.append(f"{time.perf_counter() - self._start:.0f} s")
        if trainer.is_global_zero:
            print(" | ".join(parts).replace(" | ± ", " ± "), flush=True)
        if self.plot:
            self.draw(trainer)  # on every rank: under DDP ``trainer.log_dir`` is a collective (a broadcast)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            final = f", final train loss {self.losses[-1]:.4f}" if self.losses else ""
            print(f"fit finished in {time.perf_counter() - self._start:.1f} s{final}", flush=True)

    def draw(self, trainer: pl.Trainer) -> None:
        """Write the PNG curves into the log folder (rank 0 writes; every rank must call it)."""
        folder = trainer.log_dir
        if folder is None or not trainer.is_global_zero:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(folder, exist_ok=True)
        if self.losses:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(self.loss_steps, self.losses, lw=0.8)
            ax.set(xlabel="gradient step", ylabel="normalised-delta MSE", yscale="log",
                   title="Dynamics model training loss")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(os.path.join(folder, "loss_curve.png"), dpi=120)
            plt.close(fig)
        if self.returns:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(*zip(*self.returns, strict=True), marker="o")
            ax.set(xlabel="iteration", ylabel="eval return", title="Evaluation return")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(os.path.join(folder, "eval_return.png"), dpi=120)
            plt.close(fig)

    def state_dict(self) -> dict[str, Any]:
        return {"loss_steps": torch.tensor(self.loss_steps), "losses": torch.tensor(self.losses),
                "returns": torch.tensor(self.returns).reshape(-1, 2)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loss_steps = state_dict["loss_steps"].tolist()
        self.losses = state_dict["losses"].tolist()
        self.returns = [tuple(r) for r in state_dict["returns"].tolist()]
