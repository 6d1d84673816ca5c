"""Checkpoint on signal: SIGTERM, SIGUSR1 and SIGINT save a checkpoint at the next safe point and end the run, and
every checkpoint of a run takes the place of the previous one only once everything logged up to it is on disk.

``MBRLCLI`` adds ``CheckpointOnSignal`` to every ``fit``; in a script of your own pass it to the Trainer together
with ``AtomicCheckpointIO`` (``Trainer(callbacks=[..., CheckpointOnSignal()], plugins=[AtomicCheckpointIO()])``).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from torchmetrics import Metric

from mbrl_lightning.checkpoints import AtomicCheckpointIO

log = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class StoppedBySignal(SystemExit):
    """Ends a run stopped by a signal after its checkpoint is written; the exit status is ``128 + signum`` (what a
    shell reports for a process a signal ended), e.g. 143 for SIGTERM, 130 for SIGINT."""


def rng_states() -> dict[str, Any]:
    """The global random streams (torch CPU and CUDA, numpy, Python) as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, state, py_gauss = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "gauss": float(gauss)},
           "python": {"version": version, "state": list(state), "gauss": py_gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: dict[str, Any]) -> None:
    """Set the global random streams saved by ``rng_states``."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def flush_loggers(trainer: pl.Trainer) -> None:
    """Hand everything logged so far to disk (TensorBoard's writer queues events and flushes on its own clock)."""
    for logger in trainer.loggers:
        logger.save()
        experiment = getattr(logger, "_experiment", None)  # only a started one: do not create an event file
        if experiment is not None and hasattr(experiment, "flush"):
            experiment.flush()


def mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether the training loop stands between two batches of an epoch (not before the first, not at the end)."""
    if not trainer.training:
        return False
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return 0 < done < trainer.num_training_batches


class CheckpointOnSignal(pl.Callback):
    """On SIGTERM, SIGUSR1 or SIGINT, save a checkpoint at the next safe point and end the run; keep the logs
    consistent with the checkpoints.

    Safe points: the end of a training batch (between optimizer updates), where it saves ``last.ckpt`` (in the
    ``ModelCheckpoint``'s folder) with the training loop's position, from which a resume continues mid-epoch; and
    the end of an iteration (the signal came during its last batch or the epoch-end collection and evaluation),
    where the run stops after that iteration's usual checkpoint. The process then exits with status
    ``128 + signum``. A second Ctrl-C interrupts at once (Lightning's own shutdown, no checkpoint). Under SLURM
    with ``SLURMEnvironment(auto_requeue=True)`` the requeue signal also runs Lightning's requeue (its
    ``hpc_ckpt`` save and ``scontrol requeue``) at that safe point.

    The checkpoint holds the global random streams (torch, numpy, Python) and the torchmetrics states of the
    module, set back on resume where the run was saved, so a resumed run repeats the uninterrupted one.

    Logs: while training, a checkpoint is written to its ``.partial`` file and renamed over its target only at the
    next batch start, epoch start, training end or exception, after the loggers have flushed: at that point
    Lightning has handed the step's (or the epoch's) metrics to the loggers. A kill in between leaves the previous
    checkpoint, from which a resume logs those points again, so no series has a hole. Needs the strategy's
    checkpoint IO to be ``AtomicCheckpointIO`` (``MBRLCLI`` installs it); with another one only the signals are
    handled.

    Args:
        signals: names of the signals that stop the run this way.
    """

    def __init__(self, signals: list[str] | tuple[str, ...] = SIGNALS) -> None:
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self.signum: int | None = None  # the signal received (None: none yet)
        self.trainer: pl.Trainer | None = None
        self._active = False
        self._exit = False  # a checkpoint for the signal is written: leave at the next batch start
        self._stopping = False  # the signal stops the run at this iteration's end
        self._originals: dict[int, Any] = {}
        self._resume_rng: dict[str, Any] | None = None  # set at the first batch of a mid-epoch resume
        self._resume_metrics: dict[str, Any] | None = None

    # ----------------------------------------------------------------- signals
    def _handle(self, signum: int, frame: Any) -> None:
        if not self._active:  # outside fit: behave as the handler we replaced
            self._fall_back(signum, frame)
            return
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: Lightning's own shutdown
        if self.signum is None:
            log.warning("Received %s: saving a checkpoint at the next safe point (end of a training batch or of "
                        "the iteration), then stopping", signal.Signals(signum).name)
        self.signum = signum

    def _fall_back(self, signum: int, frame: Any) -> None:
        original = self._originals.get(signum, signal.SIG_DFL)
        if callable(original):
            original(signum, frame)
        elif original == signal.SIG_DFL:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            current = signal.getsignal(signum)
            if current is not self._handle and signum not in self._originals:
                self._originals[signum] = current
            signal.signal(signum, self._handle)

    def _uninstall(self) -> None:
        self._active = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, original in self._originals.items():
            if original is not None:
                signal.signal(signum, original)
        self._originals = {}

    def _requested(self, trainer: pl.Trainer) -> bool:
        """Whether any rank received a signal (a collective under DDP: every rank stops at the same batch)."""
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False))
        return self.signum is not None

    def _checkpoint_io(self, trainer: pl.Trainer) -> AtomicCheckpointIO | None:
        io = getattr(trainer.strategy, "checkpoint_io", None)
        return io if isinstance(io, AtomicCheckpointIO) else None

    def _commit(self, trainer: pl.Trainer) -> None:
        """Flush the loggers, then put the checkpoints written since the last commit in place."""
        io = self._checkpoint_io(trainer)
        if io is not None and io.pending:
            flush_loggers(trainer)
            io.commit()

    def _last_path(self, trainer: pl.Trainer) -> Path:
        callback = trainer.checkpoint_callback
        folder = getattr(callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
        name = getattr(callback, "CHECKPOINT_NAME_LAST", "last") + getattr(callback, "FILE_EXTENSION", ".ckpt")
        return Path(folder) / name

    def _stop(self, trainer: pl.Trainer) -> None:
        assert self.signum is not None
        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue \
                and self.signum == environment.requeue_signal:
            trainer._signal_connector._slurm_sigusr_handler_fn(self.signum, None)  # Lightning's requeue
        raise StoppedBySignal(128 + self.signum)

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.trainer, self.signum, self._exit, self._stopping = trainer, None, False, False
        self._active = True
        self._install()  # during on_fit_start's collection too (Lightning registers its own handlers after it)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install()  # again: Lightning's SIGTERM handler (set after on_fit_start) stops without a checkpoint
        io = self._checkpoint_io(trainer)
        if io is not None:
            io.defer = True
        if self._resume_metrics is not None:
            set_metric_states(pl_module, self._resume_metrics)
            self._resume_metrics = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._resume_rng is not None:  # where the uninterrupted run stood after the saved batch
            set_rng_states(self._resume_rng)
            self._resume_rng = None
        self._commit(trainer)
        if self._exit:
            self._stop(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._exit or not self._requested(trainer) or not mid_epoch(trainer):
            return  # the last batch: the iteration's end is the safe point
        if self.signum is None:
            self.signum = signal.SIGTERM  # another rank's signal
        path = self._last_path(trainer)
        trainer.save_checkpoint(path)
        log.warning("%s: saved %s after batch %d of iteration %d; stopping", signal.Signals(self.signum).name, path,
                    batch_idx + 1, trainer.current_epoch + 1)
        self._exit = True  # the step's metrics reach the loggers after this hook: commit and leave at the next start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._commit(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._requested(trainer):
            self.signum = self.signum or signal.SIGTERM
            self._stopping = trainer.should_stop = True  # this iteration's checkpoint is the safe point

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._commit(trainer)
        io = self._checkpoint_io(trainer)
        if io is not None:
            io.defer = False
        if self._stopping:
            log.warning("%s: stopped after iteration %d, its checkpoint saved", signal.Signals(self.signum).name,
                        trainer.current_epoch)
            self._uninstall()
            self._stop(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._commit(trainer)  # what was saved is consistent with what is logged now
        io = self._checkpoint_io(trainer)
        if io is not None:
            io.defer = False
        self._uninstall()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._uninstall()

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        inside = trainer is not None and mid_epoch(trainer)
        state: dict[str, Any] = {"rng": rng_states(), "mid_epoch": inside}
        if inside:
            state["metrics"] = metric_states(trainer.lightning_module)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # here, before the first dataloader is built, as the uninterrupted run stood after an iteration's checkpoint;
        # a mid-epoch checkpoint's streams are set again at the first batch (building the dataloader draws from them)
        set_rng_states(state_dict["rng"])
        if state_dict.get("mid_epoch"):
            self._resume_rng = state_dict["rng"]
            self._resume_metrics = state_dict.get("metrics")


def metric_states(module: pl.LightningModule) -> dict[str, Any]:
    """The accumulated states of the module's torchmetrics (not in its state_dict: they are not persistent)."""
    out = {}
    for name, metric in module.named_modules():
        if isinstance(metric, Metric):
            out[name] = {"state": {k: v.detach().clone() if torch.is_tensor(v) else [x.detach().clone() for x in v]
                                   for k, v in metric.metric_state.items()},
                         "update_count": int(metric._update_count)}
    return out


def set_metric_states(module: pl.LightningModule, states: dict[str, Any]) -> None:
    """Set the torchmetrics states ``metric_states`` saved (metrics not found are left as they are)."""
    modules = dict(module.named_modules())
    for name, saved in states.items():
        metric = modules.get(name)
        if not isinstance(metric, Metric):
            continue
        for key, value in saved["state"].items():
            setattr(metric, key, value.to(metric.device) if torch.is_tensor(value) else
                    [v.to(metric.device) for v in value])
        metric._update_count = saved["update_count"]
        metric._computed = None


__all__ = ["CheckpointOnSignal", "StoppedBySignal", "flush_loggers", "rng_states", "set_rng_states"]
