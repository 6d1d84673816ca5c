"""Long runs that survive what ends them: ``--ckpt_path last`` resumes the run's own folder, a broken checkpoint is
named with the one to use instead, a kill during a save leaves the previous checkpoint loadable, and an env that
returns NaN loses only its bad steps (counted in TensorBoard) unless it returns nothing finite at all."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_collect import ConstantAgent  # the smallest acting module, shared with the collection tests
from torch import nn

from mbrl_lightning.callbacks import CollectInterleaved, CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.checkpoints import PARTIAL_SUFFIX, AtomicCheckpointIO, CheckpointError, check_checkpoint
from mbrl_lightning.data import RandomPolicy, ReplayDataModule, collect
from mbrl_lightning.data.collect import NonFiniteEnvError
from mbrl_lightning.envs import get_task, make, register_task

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "obstacles.yaml"
RUN = Path("runs") / "tiny_obstacles"  # the tiny config's <save_dir>/<name>, relative to the run's folder

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")]


def fit_cli(cwd, *args):
    """``python -m mbrl_lightning fit`` on the tiny config (one thread, as the suite runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(TINY), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def scalars(log_dir, tag):
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A one-iteration tiny run started with ``--ckpt_path last`` before any checkpoint exists; its folder."""
    cwd = tmp_path_factory.mktemp("first_run")
    proc = fit_cli(cwd, "--trainer.max_epochs", "1", "--ckpt_path", "last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, proc.stdout + proc.stderr


def copy_of(first_run, tmp_path):
    shutil.copytree(first_run[0], tmp_path, dirs_exist_ok=True)
    return tmp_path


# -- --ckpt_path last ---------------------------------------------------------------------------------------------
def test_ckpt_path_last_starts_fresh_then_resumes_its_own_version_folder(first_run, tmp_path):
    cwd = copy_of(first_run, tmp_path)
    (cwd / RUN / "version_1").mkdir()  # a later run that died before its first checkpoint: not the one to resume
    proc = fit_cli(cwd, "--trainer.max_epochs", "2", "--ckpt_path", "last")  # the same command, requeued
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = cwd / RUN / "version_0" / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in (cwd / RUN).iterdir()) == ["version_0", "version_1"]  # no new version folder
    assert list((cwd / RUN / "version_1").iterdir()) == []
    assert [step for step, _ in scalars(cwd / RUN / "version_0", "eval/return")] == [19, 39]  # one curve, continued
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 40 and ckpt["ReplayDataModule"]["buffer"]["size"] == 300 + 100
    assert f"--ckpt_path last: resuming {RUN / 'version_0' / 'checkpoints' / 'last.ckpt'}" in proc.stdout + proc.stderr
    assert not list(cwd.rglob(f"*{PARTIAL_SUFFIX}"))  # the CLI's atomic saves left no temporary file
    assert (f"--ckpt_path last: no checkpoint yet ({RUN / 'version_*' / 'checkpoints' / 'last.ckpt'}): starting the "
            "run from scratch") in first_run[1]


# -- broken checkpoints -------------------------------------------------------------------------------------------
def test_a_truncated_checkpoint_is_named_with_the_earlier_one_to_use(first_run, tmp_path):
    cwd = copy_of(first_run, tmp_path)
    folder = cwd / RUN / "version_0" / "checkpoints"
    last = folder / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a kill during a non-atomic save leaves
    proc = fit_cli(cwd, "--ckpt_path", str(last))
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: --ckpt_path {last}: this file is truncated"), proc.stderr[-3000:]
    assert f"--ckpt_path {folder / 'epoch=0-step=20.ckpt'}" in message  # the earlier checkpoint, loadable
    assert "Traceback" not in proc.stderr and "central directory" not in proc.stderr


def test_foreign_checkpoints_are_named(first_run, tmp_path, monkeypatch):
    from mbrl_lightning.cli import lightning_main

    cwd = copy_of(first_run, tmp_path)
    monkeypatch.chdir(cwd)
    last = RUN / "version_0" / "checkpoints" / "last.ckpt"
    text, weights = cwd / "notes.ckpt", cwd / "weights.ckpt"
    text.write_text("not a checkpoint\n")
    torch.save(nn.Linear(2, 2).state_dict(), weights)  # a bare state_dict: no Lightning checkpoint
    for path, args, problem in [
            (text, [], "this file is not a PyTorch checkpoint"),
            (weights, [], "this file is not a Lightning checkpoint (it lacks ['state_dict', 'epoch'"),
            (last, ["--data.init_args.env_id", "mbrl/Reacher7DOF-v0"],
             "was saved by a run on env 'mbrl/Obstacles-v0', but this run's env is 'mbrl/Reacher7DOF-v0'")]:
        with pytest.raises(CheckpointError) as err:
            lightning_main(["fit", "--config", str(TINY), "--ckpt_path", str(path), *args])
        assert str(err.value).startswith(f"--ckpt_path {path}: ") and problem in str(err.value), str(err.value)
    with pytest.raises(CheckpointError, match="holds a mbrl_lightning.agents.MPCAgent, but this run's model is "):
        check_checkpoint(last, model_class="mbrl_lightning.agents.SAC")
    check_checkpoint(last, env_id="mbrl/Obstacles-v0", model_class="mbrl_lightning.agents.mpc.MPCAgent")  # same class


# -- atomic saves -------------------------------------------------------------------------------------------------
KILLED_SAVE = textwrap.dedent('''
    """A real run whose checkpoints take long enough to write that a kill can land inside one."""
    import sys
    from pathlib import Path

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint

    from mbrl_lightning.checkpoints import AtomicCheckpointIO

    folder = Path(sys.argv[1])


    class Ballast(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.register_buffer("ballast", torch.ones(32_000_000))  # 128 MB per checkpoint

        def training_step(self, batch, batch_idx):
            return (self.w - batch).square().sum()

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.ones(1, 1))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def on_save_checkpoint(self, checkpoint):
            (folder / f"saving-{self.current_epoch}").touch()  # this epoch's save is about to be written


    trainer = pl.Trainer(max_epochs=1000, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ModelCheckpoint(folder / "checkpoints", save_last=True)],
                         plugins=[AtomicCheckpointIO()])
    trainer.fit(Ballast())
''')


def listing(folder):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()} if folder.is_dir() else {}


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    """SIGKILL lands while the second checkpoint is being written (the folder has begun to change)."""
    script = tmp_path / "killed_save.py"
    script.write_text(KILLED_SAVE)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    folder = tmp_path / "checkpoints"
    try:
        deadline = time.time() + 120
        while not (tmp_path / "saving-1").exists():  # epoch 0's last.ckpt is complete; epoch 1's save begins
            assert proc.poll() is None and time.time() < deadline, "the run ended before its second save"
            time.sleep(0.001)
        before = listing(folder)
        while listing(folder) == before:  # the first byte of the new checkpoint reaches the folder
            assert proc.poll() is None and time.time() < deadline, "the second save never began"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for path in folder.glob("*.ckpt"):  # no half-written checkpoint under a checkpoint's name
        check_checkpoint(path)  # (what --ckpt_path checks)
    ckpt = torch.load(folder / "last.ckpt", weights_only=True, mmap=True)  # the previous checkpoint, whole
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 1
    assert [p.name for p in folder.glob(f"*{PARTIAL_SUFFIX}")], "the kill did not land inside the save"


class Poison:
    def __reduce__(self):
        raise RuntimeError("no space left on device")  # a save that fails half-way, after the file was opened


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path):
    class OneStep(ConstantAgent):
        poison = False

        def on_save_checkpoint(self, checkpoint):
            if self.poison:
                checkpoint["poison"] = Poison()

    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=8, steps_per_epoch=1)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path / "root", callbacks=[CollectRandom(20)],
                         plugins=[AtomicCheckpointIO()])
    model = OneStep()
    trainer.fit(model, datamodule=dm)
    folder = tmp_path / "checkpoints"
    trainer.save_checkpoint(folder / "last.ckpt")
    before = (folder / "last.ckpt").read_bytes()
    model.poison = True
    with pytest.raises(RuntimeError, match="no space left"):
        trainer.save_checkpoint(folder / "last.ckpt")
    assert (folder / "last.ckpt").read_bytes() == before  # the previous checkpoint, untouched
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]  # and the failed save's temporary file is gone


def test_the_cli_saves_checkpoints_atomically_by_default(tmp_path, monkeypatch):
    from mbrl_lightning.cli import lightning_main

    monkeypatch.chdir(tmp_path)
    cli = lightning_main(["--config", str(TINY)], run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO


# -- non-finite env output ----------------------------------------------------------------------------------------
class NonFiniteAt(gym.Wrapper):
    """A user's env that blows up: steps ``first`` .. ``first + count - 1`` of this instance (counted over its
    episodes, from 1) return ``value`` in the observation (``field="obs"``) or as the reward; its first
    ``bad_resets`` resets return a NaN observation."""

    def __init__(self, env, first=10**9, count=1, field="obs", value=float("nan"), bad_resets=0):
        super().__init__(env)
        self.first, self.count, self.field, self.value, self.steps = first, count, field, value, 0
        self.bad_resets = bad_resets

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.bad_resets > 0:
            self.bad_resets -= 1
            obs = np.full_like(obs, np.nan)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.first <= self.steps < self.first + self.count:
            if self.field == "obs":
                obs = np.full_like(obs, self.value)
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info


BLOWS_UP = "mbrl_test/BlowsUp-v0"


def make_blows_up(**kwargs):
    return NonFiniteAt(make("mbrl/Obstacles-v0"), **kwargs)


@pytest.fixture(scope="module", autouse=True)
def blows_up():
    """The user's env registered with gymnasium and its task (the obstacles' reward), for this module only."""
    from mbrl_lightning.envs import tasks

    gym.register(BLOWS_UP, entry_point=make_blows_up)
    obstacles = get_task("mbrl/Obstacles-v0")
    register_task(BLOWS_UP, obstacles.reward, obstacles.terminated)
    yield
    gym.registry.pop(BLOWS_UP, None)
    tasks._TASKS.pop(BLOWS_UP, None)


def fit(tmp_path, env_kwargs, callbacks, steps_per_epoch=2, max_epochs=2):
    dm = ReplayDataModule(BLOWS_UP, env_kwargs=env_kwargs, batch_size=8, steps_per_epoch=steps_per_epoch)
    trainer = pl.Trainer(max_epochs=max_epochs, logger=TensorBoardLogger(tmp_path), log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         reload_dataloaders_every_n_epochs=1, callbacks=callbacks)
    trainer.fit(ConstantAgent(), datamodule=dm)
    return dm, trainer


@pytest.mark.parametrize("field,value", [("obs", float("nan")), ("reward", float("inf"))])
def test_nonfinite_steps_are_skipped_counted_and_logged(tmp_path, field, value):
    """Every env instance blows up at its 10th step: the random data (1 env), the policy's data (2 envs) and each
    evaluation (2 envs of 100-step episodes) lose one step per env, and the run finishes."""
    dm, trainer = fit(tmp_path, {"first": 10, "field": field, "value": value},
                      [CollectRandom(60), CollectOnPolicy(40, num_envs=2), Evaluate(num_episodes=2)])
    assert trainer.current_epoch == 2 and len(dm.buffer) == 59 + 38
    assert all(torch.isfinite(x.float()).all() for x in dm.buffer.all().values())
    log_dir = tmp_path / "lightning_logs" / "version_0"
    assert scalars(log_dir, "collect/nonfinite_steps") == [(0, 1.0), (1, 2.0)]  # random data; iteration 1's
    assert [v for _, v in scalars(log_dir, "eval/nonfinite_steps")] == [2.0, 2.0]
    assert [v for _, v in scalars(log_dir, "eval/ep_len")] == [9.0, 9.0]  # each episode ended at its bad step


def test_a_reset_with_a_nonfinite_observation_is_skipped_like_a_step():
    envs = [make(BLOWS_UP, bad_resets=2), make(BLOWS_UP)]
    result = collect(envs, RandomPolicy(-torch.ones(2), torch.ones(2)), num_steps=30, seed=3, progress=False)
    assert result.nonfinite_steps == 2 and result.num_steps == 28  # both count as steps of the 30
    assert torch.isfinite(result.transitions["obs"]).all()


def test_a_collection_with_no_finite_step_stops_naming_the_env(tmp_path):
    with pytest.raises(NonFiniteEnvError, match=f"^{BLOWS_UP}: all 60 steps of random data returned a NaN"):
        fit(tmp_path, {"first": 1, "count": 10**9}, [CollectRandom(60)])


def test_interleaved_collection_skips_and_counts_nonfinite_steps(tmp_path):
    dm, trainer = fit(tmp_path, {"first": 5}, [CollectRandom(20), CollectInterleaved()], steps_per_epoch=10)
    # the random data's env and the interleaved one (20 steps over 2 iterations) each lose their 5th step
    assert trainer.current_epoch == 2 and len(dm.buffer) == 19 + 19
    log_dir = tmp_path / "lightning_logs" / "version_0"
    assert [v for _, v in scalars(log_dir, "collect/nonfinite_steps")] == [1.0, 1.0, 0.0]  # random data; iterations


def test_interleaved_collection_with_no_finite_step_stops_naming_the_env(tmp_path):
    """The interleaved env blows up for good at its 31st step: iteration 2 gets nothing finite."""
    with pytest.raises(NonFiniteEnvError, match=f"^{BLOWS_UP}: all 30 steps of iteration 2's interleaved collection"):
        fit(tmp_path, {"first": 31, "count": 10**9}, [CollectRandom(30), CollectInterleaved()], steps_per_epoch=30,
            max_epochs=3)


# -- checkpoint on signal, logs consistent with checkpoints (issue 31, items 1 and 3) ------------------------------
MBPO_TINY = ROOT / "configs" / "mbpo" / "tiny.yaml"  # SAC updates + model rollouts: global and own random streams
MBPO_RUN = Path("runs") / "tiny_mbpo" / "version_0"
PROBE = '''
import time
from pathlib import Path
from pytorch_lightning.callbacks import Checkpoint

from mbrl_lightning.callbacks import CheckpointOnSignal


class PauseAt(Checkpoint):
    """Touches ``paused`` at a chosen moment and waits there (up to 60 s) for a signal. A ``Checkpoint`` listed
    after ModelCheckpoint, so its epoch-end hook runs right after that checkpoint is written."""

    def __init__(self, epoch: int, batch: int | None = None):
        self.epoch, self.batch = epoch, batch

    def _pause(self, trainer):
        Path("paused").touch()
        receiver = next(c for c in trainer.callbacks if isinstance(c, CheckpointOnSignal))
        for _ in range(1200):
            if receiver.signum is not None:
                return
            time.sleep(0.05)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self._pause(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and self.batch is None:
            self._pause(trainer)
'''


def mbpo_cli(cwd, *args, probe=None):
    """The tiny MBPO config for 3 iterations (``probe``: ``PauseAt``'s init_args), started in the background."""
    (cwd / "probe.py").write_text(PROBE)
    extra = ["--trainer.callbacks+=probe.PauseAt", *[f"--trainer.callbacks.init_args.{k}={v}"
                                                    for k, v in (probe or {}).items()]] if probe else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(MBPO_TINY),
                             "--trainer.max_epochs", "3", *extra, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(proc, code=0):
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == code, out[-3000:]
    return out


def raw_scalars(run_dir):
    """{tag: [(step, value), ...]} of every scalar event in the run's event files, in the order written."""
    from tensorboard.compat.proto import event_pb2

    from mbrl_lightning.report.runs import _records, _scalar_value

    out = {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if (scalar := _scalar_value(value)) is not None:
                    out.setdefault(value.tag, []).append((int(event.step), scalar))
    return out


def series(run_dir):
    """Every scalar series as the report reads it (one value per step, the last one written), wall times left
    out (``*seconds*``, ``time/*``: they differ between any two runs)."""
    merged = {tag: dict(points) for tag, points in raw_scalars(run_dir).items()
              if "seconds" not in tag and not tag.startswith("time/")}
    return {tag: sorted(points.items()) for tag, points in merged.items()}


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    finished(mbpo_cli(cwd))
    return cwd / MBPO_RUN


def paused(cwd, proc):
    for _ in range(1200):
        if (cwd / "paused").exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None and (cwd / "paused").exists(), proc.communicate()[0][-3000:]


def assert_same_run(run_dir, reference):
    ours, theirs = weights(run_dir), weights(reference)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
    got, want = series(run_dir), series(reference)
    assert got.keys() == want.keys()
    for tag in want:
        assert got[tag] == want[tag], tag  # no hole, no other value


def test_sigterm_mid_iteration_saves_and_a_resume_continues_exactly(uninterrupted, tmp_path):
    proc = mbpo_cli(tmp_path, probe={"epoch": 1, "batch": 11})
    paused(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    out = finished(proc, 128 + signal.SIGTERM)
    assert "Received SIGTERM: saving a checkpoint at the next safe point" in out
    ckpt = torch.load(tmp_path / MBPO_RUN / "checkpoints" / "last.ckpt", weights_only=True)
    progress = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert ckpt["epoch"] == 1 and progress["processed"] == 13, "saved after the batch the signal came in"
    assert "position" in ckpt["ReplayDataModule"]  # the dataloader's place in the epoch
    logged = raw_scalars(tmp_path / MBPO_RUN)

    finished(mbpo_cli(tmp_path, "--ckpt_path", "last"))
    assert_same_run(tmp_path / MBPO_RUN, uninterrupted)
    for tag, points in raw_scalars(tmp_path / MBPO_RUN).items():  # nothing logged twice
        if tag.startswith("time/") or tag == "hp_metric":
            continue  # time/fit_start, Lightning's hp_metric placeholder: each start of the run logs its own
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps)), (tag, steps)
        assert points[:len(logged.get(tag, []))] == logged.get(tag, []), tag


@pytest.mark.parametrize("probe", [{"epoch": 1}, {"epoch": 1, "batch": 7}],
                         ids=["right-after-a-checkpoint-write", "mid-iteration"])
def test_sigkill_then_resume_from_last_ends_as_the_uninterrupted_run(uninterrupted, tmp_path, probe):
    proc = mbpo_cli(tmp_path, probe=probe)
    paused(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    finished(proc, -signal.SIGKILL)
    assert torch.load(tmp_path / MBPO_RUN / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    finished(mbpo_cli(tmp_path, "--ckpt_path", "last"))
    assert_same_run(tmp_path / MBPO_RUN, uninterrupted)
