"""Milliseconds per SAC update and seconds per dynamics training of MBPO at the Hopper config's sizes
(configs/mbpo/hopper.yaml: its agent, model and data settings, read from the file), float32 (``--train-bf16``: the
model trains in bfloat16), inside a real Trainer.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/mbpo_hopper.py [--part sac model] [--sac-rows 26000]
        [--updates 2000] [--rows 30000 100000] [--epochs 5] [--profile] [--train-bf16]

``sac``: the real buffer holds ``--sac-rows`` Hopper-sized transitions and the model pool 4 rounds x 100k rollouts
(L = 1, as at 26k env steps); ``--updates`` updates of a 20000-update epoch run as in a run (the DataModule's batches,
``CollectInterleaved`` stepping Hopper-v5 every 20 updates, ``prepare_batch`` mixing 95 % model rows in, the update,
the metric bookkeeping, a TensorBoard logger), none of them training the model. Prints ms per update in the Trainer
(median over blocks of 100 updates, in wall time and in this thread's CPU time, which other processes' turns on the
core do not inflate; and the mean) and of the bare ``update`` on
one fixed batch with the raw optimisers (what the Trainer, the data and the collection add is the difference).

``model``: ``train_model`` (normalisers, the early-stopping loop, best-weight bookkeeping, elite ranking) on ``--rows``
transitions (80 % trained on, 20 % held out), run for exactly ``--epochs`` epochs (``model_max_epochs``, no patience
stop), from the same initial weights every time. Prints the whole time and, per epoch (median), the gradient steps
and the held-out evaluation. A real training runs to early stopping: the Hopper runs in results/ logged
``model/epochs`` 16 to 355 per training, median 47 (148 trainings, 5k-26k env steps); multiply.

The transitions are synthetic (11-d observations, 3-d actions, smooth dynamics plus noise): the timing does not depend
on their values. The held-out loss printed is a fingerprint: equal before and after a change that keeps the numerics.
``--profile`` also prints torch.profiler's table of the timed region (ops by self CPU time).

Before/after: check the older code out in a worktree and put it first on the path (this file works with both):

    git worktree add --detach /tmp/before HEAD
    PYTHONPATH=/tmp/before python benchmarks/mbpo_hopper.py; python benchmarks/mbpo_hopper.py
"""

from __future__ import annotations

import argparse
import datetime
import math
import pathlib
import statistics
import tempfile
import time
from functools import partial

import pytorch_lightning as pl
import torch
import yaml

from mbrl_lightning.agents import MBPO
from mbrl_lightning.callbacks import CollectInterleaved
from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.models import DynamicsEnsemble

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "mbpo" / "hopper.yaml"


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def hopper_settings() -> tuple[dict, dict, dict]:
    """(MBPO init_args, DynamicsEnsemble init_args, ReplayDataModule init_args) of configs/mbpo/hopper.yaml."""
    config = yaml.safe_load(CONFIG.read_text())
    agent = dict(config["model"]["init_args"])
    dynamics = dict(agent.pop("dynamics")["init_args"])
    return agent, dynamics, dict(config["data"]["init_args"])


def transitions(n: int, seed: int, obs_dim: int = 11, act_dim: int = 3) -> dict[str, torch.Tensor]:
    """``n`` synthetic Hopper-sized transitions: smooth dynamics plus noise, a reward, rare terminations."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g) * torch.linspace(0.1, 3.0, obs_dim)
    act = torch.rand(n, act_dim, generator=g) * 2 - 1
    w = torch.randn(obs_dim + act_dim, obs_dim, generator=torch.Generator().manual_seed(0)) / 4
    next_obs = obs + 0.1 * torch.tanh(torch.cat([obs, act], 1) @ w) + 0.01 * torch.randn(n, obs_dim, generator=g)
    reward = 1.0 + next_obs[:, 5] - 1e-3 * act.square().sum(1)
    return {"obs": obs, "act": act, "next_obs": next_obs, "reward": reward,
            "terminated": torch.rand(n, generator=g) < 0.002}


def run_transitions(checkpoint: str, rows: int | None = None) -> dict[str, torch.Tensor]:
    """The first ``rows`` (all: ``None``) real transitions in an MBPO run's checkpoint (its replay buffer)."""
    buffer = torch.load(checkpoint, map_location="cpu", weights_only=False)["ReplayDataModule"]["buffer"]
    n = buffer["size"] if rows is None else min(rows, buffer["size"])
    return {k: buffer[k][:n] for k in ("obs", "act", "next_obs", "reward", "terminated")}


def build(rows: int, data: dict[str, torch.Tensor] | None = None, seed: int = 0, dynamics: dict | None = None,
          **overrides) -> tuple[MBPO, ReplayDataModule]:
    """The Hopper config's agent and DataModule holding ``rows`` synthetic transitions (or ``data``, all of it), its
    weights and batch stream drawn with ``seed``; ``dynamics`` and ``overrides`` replace model and agent settings."""
    agent_args, dynamics_args, data_args = hopper_settings()
    torch.manual_seed(seed)
    dm = ReplayDataModule(**data_args)
    dm.add(transitions(rows, seed=1) if data is None else data)
    agent = MBPO(dm.obs_dim, dm.act_dim, dynamics=partial(DynamicsEnsemble, **{**dynamics_args, **(dynamics or {})}),
                 **{**agent_args, "seed": seed, **overrides})
    return agent, dm


def trainer(callbacks: list[pl.Callback], log_dir: str) -> pl.Trainer:
    return pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, log_every_n_steps=200,
                      logger=pl.loggers.TensorBoardLogger(log_dir, name="bench"), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
                      callbacks=callbacks)


class Profiled:
    """torch.profiler around a region if asked; prints the ops by self CPU time."""

    def __init__(self, enabled: bool, title: str) -> None:
        self.enabled, self.title = enabled, title

    def __enter__(self) -> Profiled:
        if self.enabled:
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.prof.__exit__(*exc)
            print(f"--- profile: {self.title}")
            print(self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


class UpdateTimer(pl.Callback):
    """Wall time of the updates from batch ``warmup`` on, in blocks of ``block``; stops the epoch (20000 batches long,
    as the config's, so that the model pool has the config's size) after ``warmup + updates`` of them."""

    def __init__(self, warmup: int, updates: int, profile: bool = False,
                 pool: dict[str, torch.Tensor] | None = None, block: int = 100) -> None:
        self.warmup, self.updates, self.profile, self.pool, self.block = warmup, updates, profile, pool, block
        self.blocks: list[float] = []  # seconds per update of each block (wall)
        self.cpu_blocks: list[float] = []  # the same in this thread's CPU time (blind to other processes' turns)
        self.seconds = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        if self.pool is not None:  # before the module sizes its pool for the epoch (it keeps the newest rows)
            module.model_buffer.resize(self.pool["obs"].shape[0])
            module.model_buffer.add(self.pool)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup and self.updates:
            self.region = Profiled(self.profile, "SAC updates in the Trainer").__enter__()
            self.start = self.block_start = time.perf_counter()
            self.cpu_start = time.thread_time()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1 - self.warmup
        if done > 0 and done % self.block == 0:
            now, cpu = time.perf_counter(), time.thread_time()
            self.blocks.append((now - self.block_start) / self.block)
            self.cpu_blocks.append((cpu - self.cpu_start) / self.block)
            self.block_start, self.cpu_start = now, cpu
        if done == self.updates:
            if self.updates:
                self.seconds = time.perf_counter() - self.start
                self.region.__exit__(None, None, None)
            trainer.should_stop = True


def ms(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1e3:.2f}"


def bench_sac(rows: int, updates: int, warmup: int, profile: bool, log_dir: str) -> None:
    agent, dm = build(rows)
    pool = 4 * 100_000  # model_retain_epochs 1: 4 rounds of 100k rollouts at L = 1
    agent.last_training_env_steps = dm.buffer.total_added  # no training due within these updates
    timer = UpdateTimer(warmup, updates, profile, transitions(pool, seed=2))
    trainer([CollectInterleaved(num_steps=1, every_n_updates=20), timer], log_dir).fit(agent, datamodule=dm)

    # the bare update on one fixed batch with the raw optimisers (what benchmarks/sac.py times)
    opts = [getattr(o, "optimizer", o) for o in agent.trainer.optimizers]
    agent.optimizers = lambda: opts
    agent.manual_backward = lambda loss: loss.backward()
    agent._trainer = None
    batch = agent.mix({k: v[0] for k, v in dm._batches[0].items()})
    for _ in range(warmup):
        agent.update(batch)
    bare, bare_cpu = [], []
    for _ in range(updates // timer.block):
        start, cpu = time.perf_counter(), time.thread_time()
        for _ in range(timer.block):
            agent._accumulate(agent.update(batch))
        bare.append((time.perf_counter() - start) / timer.block)
        bare_cpu.append((time.thread_time() - cpu) / timer.block)
    print(f"sac: real buffer {rows} rows, model pool {pool} rows, {updates} updates after {warmup}, median of blocks "
          f"of {timer.block} (wall / CPU): {ms(timer.blocks)} / {ms(timer.cpu_blocks)} ms per update in the Trainer "
          f"(collection every 20; mean wall {timer.seconds / updates * 1e3:.2f}), bare update {ms(bare)} / "
          f"{ms(bare_cpu)} ms")


class TrainModel(pl.Callback):
    """Times ``train_model`` once the Trainer has set the optimisers up, before the first update, with each epoch's
    gradient steps (``train_steps``) and held-out evaluation (``member_errors``) timed apart."""

    def __init__(self, profile: bool) -> None:
        self.profile, self.seconds, self.metrics = profile, 0.0, {}
        self.parts: dict[str, list[float]] = {"train_steps": [], "member_errors": []}
        self.cpu: dict[str, list[float]] = {"train_steps": [], "member_errors": []}

    def timed(self, fn, name: str):
        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            out = fn(*args, **kwargs)
            self.parts[name].append(time.perf_counter() - start)
            self.cpu[name].append(time.thread_time() - cpu)
            return out
        return wrapper

    def on_train_start(self, trainer, module) -> None:
        for name in self.parts:
            setattr(module, name, self.timed(getattr(module, name), name))
        with Profiled(self.profile, f"train_model on {len(module.real_buffer)} rows"):
            start = time.perf_counter()
            self.metrics = module.train_model()
            self.seconds = time.perf_counter() - start
        for name in self.parts:
            delattr(module, name)
        module.last_training_env_steps = module.real_buffer.total_added  # the update that follows trains nothing


def bench_model(rows: int, epochs: int, profile: bool, log_dir: str, train_bf16: bool = False) -> None:
    # only when asked: the code before train_bf16 existed (a worktree on PYTHONPATH) runs this part too
    dynamics = {"train_bf16": True} if train_bf16 else None
    agent, dm = build(rows, dynamics=dynamics, model_max_epochs=epochs, model_patience=10**9)
    timing = TrainModel(profile)
    trainer([CollectInterleaved(num_steps=1, every_n_updates=20), timing, UpdateTimer(1, 0)], log_dir).fit(
        agent, datamodule=dm)
    steps = math.ceil(dm.split()[0]["obs"].shape[0] / agent.hparams.model_batch_size)
    assert timing.metrics["model/epochs"] == epochs
    epoch, held_out = statistics.median(timing.parts["train_steps"]), statistics.median(timing.parts["member_errors"])
    epoch_cpu = statistics.median(timing.cpu["train_steps"])
    rest = timing.seconds - sum(timing.parts["train_steps"]) - sum(timing.parts["member_errors"])
    loss = timing.metrics["model/held_out_loss"]
    what = "model (bf16 training)" if train_bf16 else "model"
    print(f"{what}: {rows} rows, {epochs} epochs of {steps} steps (7 x 256): {timing.seconds:.2f} s; per epoch "
          f"(median) {epoch:.3f} s of steps ({epoch / steps * 1e3:.2f} ms per step, CPU "
          f"{epoch_cpu / steps * 1e3:.2f}) + "
          f"{held_out * 1e3:.0f} ms held-out evaluation; {rest * 1e3:.0f} ms outside the epochs (held-out loss "
          f"{loss:.6f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=["sac", "model"], default=["sac", "model"])
    parser.add_argument("--sac-rows", type=int, default=26_000, help="real buffer rows for the SAC part")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rows", type=int, nargs="+", default=[30_000, 100_000], help="real rows for the model part")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--train-bf16", action="store_true", help="model part: the dynamics' matmuls in bfloat16 while "
                        "training (DynamicsEnsemble(train_bf16=True)); evaluation stays float32")
    args = parser.parse_args()
    import mbrl_lightning
    precision = "model training in bf16" if args.train_bf16 else "float32"
    print(f"{datetime.date.today()}, {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{precision}, {pathlib.Path(mbrl_lightning.__file__).parent}")
    with tempfile.TemporaryDirectory() as log_dir:
        if "sac" in args.part:
            bench_sac(args.sac_rows, args.updates, args.warmup, args.profile, log_dir)
        if "model" in args.part:
            for rows in args.rows:
                bench_model(rows, args.epochs, args.profile, log_dir, args.train_bf16)


if __name__ == "__main__":
    main()
