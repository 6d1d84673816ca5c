"""The MBRL loop of Algorithm 1: buffer growth per iteration, logged evaluation, and resume after SIGKILL."""

import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.data import RandomPolicy, ReplayDataModule, collect
from mbrl_lightning.envs import get_task
from mbrl_lightning.planning import CEM

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "obstacles.yaml"


class BufferSizes(pl.Callback):
    """Records the buffer size each epoch starts with (after the dataloader reload)."""

    def __init__(self):
        self.sizes = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.sizes.append(len(trainer.datamodule.buffer))


def test_each_iteration_adds_exactly_the_configured_steps(tmp_path):
    pl.seed_everything(0)
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=32, steps_per_epoch=10)
    model = MPCAgent(dm.obs_dim, dm.act_dim, planner=CEM(horizon=4, num_sequences=40, num_iterations=2,
                                                          num_elites=5), ensemble_size=2, hidden_size=32)
    sizes, evaluate = BufferSizes(), Evaluate(num_episodes=3, num_envs=2)
    trainer = pl.Trainer(
        max_epochs=3, logger=TensorBoardLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, reload_dataloaders_every_n_epochs=1, log_every_n_steps=1,
        callbacks=[CollectRandom(num_steps=250), evaluate, CollectOnPolicy(num_steps=70, num_envs=3), sizes],
    )
    trainer.fit(model, datamodule=dm)
    assert sizes.sizes == [250, 320, 390]  # the dataloader of each iteration saw the new data
    assert len(dm.buffer) == 390  # nothing collected after the last iteration
    assert "eval/return" in trainer.callback_metrics
    assert trainer.callback_metrics["eval/ep_len"].item() <= 100
    # the MPC agent beats random actions from the same start states (episode i resets with evaluate.seed + i)
    ret = trainer.callback_metrics["eval/return"].item()
    envs = [dm.make_env() for _ in range(3)]
    random_returns = [collect(envs, RandomPolicy(dm.action_low, dm.action_high, seed), num_episodes=3,
                              seed=evaluate.seed, progress=False).returns for seed in range(3)]
    random_mean = sum(map(sum, random_returns)) / 9
    assert ret > random_mean + 0.25 * abs(random_mean), (ret, random_mean)


def run(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(TINY),
                             "--trainer.max_epochs", "4", "--data.init_args.steps_per_epoch", "150", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def load(path):
    return torch.load(path, weights_only=True)


def assert_one_run_with_one_curve(runs, iterations):
    """A resumed run logs on into its own ``version_0``: TensorBoard shows one eval curve, one point per iteration."""
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    events = EventAccumulator(str(runs / "version_0"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("eval/return")]
    assert len(steps) == iterations and steps == sorted(set(steps)), steps


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The last checkpoint of an uninterrupted 4-iteration tiny obstacles run."""
    ref_dir = tmp_path_factory.mktemp("reference")
    ref = run([], ref_dir)
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-3000:]
    return load(ref_dir / "runs/tiny_obstacles/version_0/checkpoints/last.ckpt")


def test_resume_after_sigkill_continues_with_the_same_buffer(tmp_path, reference):
    kill_dir = tmp_path / "killed"
    kill_dir.mkdir()

    proc = run([], kill_dir)
    last = kill_dir / "runs/tiny_obstacles/version_0/checkpoints/last.ckpt"
    deadline = time.time() + 600
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # let the first checkpoint finish writing, then kill mid-run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = load(last)
    assert proc.returncode == -signal.SIGKILL and killed["epoch"] < 3, "the run ended before it could be killed"

    resumed = run(["--ckpt_path", str(last)], kill_dir)
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out[-3000:]
    final = load(last)  # the resumed run goes on in the same run folder
    assert_one_run_with_one_curve(kill_dir / "runs/tiny_obstacles", iterations=4)

    kept, now = killed["ReplayDataModule"]["buffer"], final["ReplayDataModule"]["buffer"]
    n = kept["size"]
    for field in ("obs", "act", "next_obs", "reward"):
        assert torch.equal(now[field][:n], kept[field])  # nothing collected before the kill was lost
    assert now["size"] == 300 + 3 * 100 and final["epoch"] == reference["epoch"]
    # same RNG streams and data after the resume as in the uninterrupted run
    for field in ("obs", "act", "next_obs"):
        assert torch.equal(now[field], reference["ReplayDataModule"]["buffer"][field])
    for name, value in reference["state_dict"].items():
        assert torch.allclose(final["state_dict"][name], value, atol=1e-5), name


def test_a_finished_run_extended_by_resume_collects_its_skipped_batch(tmp_path, reference):
    short = run(["--trainer.max_epochs", "2"], tmp_path)
    assert short.wait(timeout=600) == 0, short.stdout.read()[-3000:]
    last = tmp_path / "runs/tiny_obstacles/version_0/checkpoints/last.ckpt"
    assert load(last)["ReplayDataModule"]["buffer"]["size"] == 300 + 100  # its last iteration collected nothing

    longer = run(["--ckpt_path", str(last)], tmp_path)  # max_epochs 4
    out = longer.communicate(timeout=600)[0]
    assert longer.returncode == 0, out[-3000:]
    final = load(last)
    assert_one_run_with_one_curve(tmp_path / "runs/tiny_obstacles", iterations=4)
    now = final["ReplayDataModule"]["buffer"]
    assert now["size"] == 300 + 3 * 100 and final["epoch"] == reference["epoch"]
    for field in ("obs", "act", "next_obs"):  # the same data as the uninterrupted 4-iteration run
        assert torch.equal(now[field], reference["ReplayDataModule"]["buffer"][field])


def test_bf16_planning_on_a_cpu_without_bf16_warns(monkeypatch):
    import mbrl_lightning.agents.mpc as mpc_module

    task, low, high = get_task("mbrl/Obstacles-v0"), -torch.ones(2), torch.ones(2)
    monkeypatch.setattr(mpc_module, "cpu_lacks_bf16", lambda: True)
    with pytest.warns(UserWarning, match="30x slower"):
        mpc_module.MPCAgent(4, 2, bf16=True).mpc_policy(task, low, high, max_envs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mpc_module.MPCAgent(4, 2, bf16=False).mpc_policy(task, low, high, max_envs=1)
        monkeypatch.setattr(mpc_module, "cpu_lacks_bf16", lambda: False)
        mpc_module.MPCAgent(4, 2, bf16=True).mpc_policy(task, low, high, max_envs=1)
