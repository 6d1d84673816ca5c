"""MBPO: model rollouts (counts, termination, no real env steps), data mixing, L=0 is SAC, configs and the CLI."""

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import gymnasium as gym
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_lightning.agents import MBPO, SAC
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.data import ReplayBuffer, ReplayDataModule
from mbrl_lightning.envs import Task
from mbrl_lightning.models import DynamicsEnsemble

ROOT = Path(__file__).resolve().parents[1]
CHEETAH = "mbrl/Cheetah-v0"  # never terminates: rollouts have exactly L steps


pytestmark = pytest.mark.usefixtures("one_thread")


class CountSteps(gym.Wrapper):
    """Counts every ``step`` call on the real environment (class-wide, over all instances)."""

    calls = 0

    def step(self, action):
        CountSteps.calls += 1
        return self.env.step(action)


class CountingDataModule(ReplayDataModule):
    """The usual DataModule whose environments count their steps."""

    def make_env(self, **kwargs):
        return CountSteps(super().make_env(**kwargs))


def small_mbpo(dm, **kwargs):
    settings = dict(rollout_length=3, rollout_batch_size=8, rollout_every=5, model_train_steps=10,
                    model_batch_size=32, dynamics=partial(DynamicsEnsemble, ensemble_size=2, hidden_size=32),
                    hidden_size=32, model_buffer_capacity=10_000)
    settings.update(kwargs)
    return MBPO(dm.obs_dim, dm.act_dim, **settings)


def trainer_for(tmp_path, max_epochs, callbacks):
    return pl.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path,
                      callbacks=callbacks)


def test_rollouts_add_starts_times_length_and_never_step_the_real_env(tmp_path):
    CountSteps.calls = 0
    dm = CountingDataModule(CHEETAH, env_kwargs={"max_episode_steps": 50}, capacity=5000, batch_size=32,
                            steps_per_epoch=12)
    pl.seed_everything(0)
    mbpo = small_mbpo(dm)
    trainer = trainer_for(tmp_path, 2, [CollectRandom(200), Evaluate(num_episodes=2), CollectOnPolicy(100)])
    trainer.fit(mbpo, datamodule=dm)

    # rounds at updates 0, 5, 10 of each of 2 epochs, 8 starts each, 3 model steps each
    assert len(mbpo.model_buffer) == mbpo.model_buffer.total_added == 2 * 3 * 8 * 3
    # real steps: random data + one iteration of policy data + 2 evaluations of 2 x 50 steps; none from rollouts
    assert dm.buffer.total_added == 200 + 100
    assert CountSteps.calls == 200 + 100 + 2 * 2 * 50
    assert mbpo.model_trained_steps == 2 * 10

    calls = CountSteps.calls
    starts = dm.buffer.sample(40, torch.Generator().manual_seed(0))["obs"]
    rollout = mbpo.rollout(starts, length=4)
    assert CountSteps.calls == calls
    assert rollout["obs"].shape == (40 * 4, dm.obs_dim) and not rollout["terminated"].any()
    # step-major layout: step t+1 continues from step t's predicted state, which is the ensemble mean
    assert torch.equal(rollout["obs"][:40], starts)
    assert torch.equal(rollout["obs"][40:80], rollout["next_obs"][:40])
    with torch.no_grad():
        mean_next = mbpo.dynamics.predict_next(rollout["obs"], rollout["act"]).mean(0)
    assert torch.allclose(rollout["next_obs"], mean_next, atol=1e-5)
    assert torch.allclose(rollout["reward"], dm.task.reward(rollout["obs"], rollout["act"], rollout["next_obs"]))
    assert ((rollout["act"] >= dm.action_low) & (rollout["act"] <= dm.action_high)).all()


class ModelBufferAtEpochEnd(pl.Callback):
    """Records the model buffer's (capacity, size) after every iteration's updates."""

    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, module):
        self.seen.append((module.model_buffer.capacity, len(module.model_buffer)))


@pytest.mark.parametrize("retain", [1, 2])
def test_model_retain_epochs_holds_that_many_iterations_of_rollouts(tmp_path, retain):
    # MBPO's model pool: retain x (rounds per iteration x starts x L) rows, regrown as the schedule lengthens L
    dm = ReplayDataModule(CHEETAH, env_kwargs={"max_episode_steps": 50}, capacity=5000, batch_size=32,
                          steps_per_epoch=12)
    pl.seed_everything(0)
    mbpo = small_mbpo(dm, rollout_schedule=[0, 2, 1, 3], model_retain_epochs=retain)  # L = 1, 2, 3
    seen = ModelBufferAtEpochEnd()
    trainer_for(tmp_path, 3, [CollectRandom(200), CollectOnPolicy(50), seen]).fit(mbpo, datamodule=dm)
    rows = [3 * 8 * length for length in (1, 2, 3)]  # rounds at updates 0, 5, 10; 8 starts; never terminates
    if retain == 1:  # only this iteration's rollouts: the older ones made room
        assert seen.seen == [(rows[0], rows[0]), (rows[1], rows[1]), (rows[2], rows[2])]
    else:  # two iterations' worth at the current L: all 24 + 48 + 72 rows fit in the last 2 x 72
        assert seen.seen == [(2 * rows[0], rows[0]), (2 * rows[1], rows[0] + rows[1]),
                             (2 * rows[2], rows[0] + rows[1] + rows[2])]
    assert mbpo.model_buffer.total_added == sum(rows)


def test_resume_without_model_rollouts_refills_them_before_the_first_update(tmp_path):
    # checkpoint_model_buffer false: the checkpoint drops the rollouts, the resumed iteration rebuilds them
    def fit(max_epochs, ckpt_path=None):
        dm = ReplayDataModule(CHEETAH, env_kwargs={"max_episode_steps": 50}, capacity=5000, batch_size=32,
                              steps_per_epoch=12)
        pl.seed_everything(0)
        mbpo = small_mbpo(dm, model_retain_epochs=1, checkpoint_model_buffer=False)
        seen = ModelBufferAtEpochEnd()
        first_update = []

        class AtFirstUpdate(pl.Callback):
            """(dynamics steps taken, rows ever added) before and after an iteration's first update."""

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if batch_idx == 0:
                    first_update.append((module.model_trained_steps, module.model_buffer.total_added))

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if batch_idx == 0:
                    first_update.append(module.model_buffer.total_added)

        trainer = pl.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
                             default_root_dir=tmp_path, callbacks=[
                                 CollectRandom(200), CollectOnPolicy(50), seen, AtFirstUpdate(),
                                 ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_epochs=1)])
        trainer.fit(mbpo, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        return mbpo, seen.seen, first_update

    mbpo, seen, first_update = fit(1)
    one_round, one_iteration = 8 * 3, 3 * 8 * 3  # starts x L; rounds x starts x L
    assert seen == [(one_iteration, one_iteration)] and first_update == [(10, 0), one_round]
    path = tmp_path / "ckpt" / "last.ckpt"  # ModelCheckpoint's epoch-end save, as the configs resume from
    ckpt = torch.load(path, weights_only=True)
    assert "model_buffer" not in ckpt["mbpo"] and ckpt["ReplayDataModule"]["buffer"]["size"] == 200

    resumed, seen, first_update = fit(2, ckpt_path=path)
    # the resumed iteration trained the model (10 more steps), then its first update refilled one iteration's
    # rounds before its own first round: nothing was in the pool before, a full pool plus a round after
    assert first_update == [(2 * 10, 0), one_iteration + one_round]
    assert seen == [(one_iteration, one_iteration)]  # the iteration's own rounds then replaced the refill
    assert resumed.model_buffer.total_added == 2 * one_iteration
    assert resumed.model_trained_steps == 2 * 10 and resumed.num_updates == 2 * 12


@pytest.mark.parametrize("model_sampling", ["mean", "random"])
def test_rollouts_stop_at_predicted_termination(model_sampling):
    torch.manual_seed(0)
    obs_dim, act_dim, n, length = 4, 2, 64, 5
    mbpo = MBPO(obs_dim, act_dim, rollout_length=length, model_sampling=model_sampling,
                dynamics=partial(DynamicsEnsemble, hidden_size=16), hidden_size=16, model_buffer_capacity=1000)
    real = ReplayBuffer(500, obs_dim, act_dim)
    real.add({"obs": torch.randn(500, obs_dim), "act": torch.rand(500, act_dim) * 2 - 1,
              "next_obs": torch.randn(500, obs_dim), "reward": torch.zeros(500),
              "terminated": torch.zeros(500, dtype=torch.bool)})
    task = Task(reward=lambda o, a, o2: o2[..., 0], terminated=lambda o, a, o2: o2[..., 0] > o[..., 0])
    mbpo.attach(task, real)
    added = mbpo.generate_rollouts(n)
    data = mbpo.model_buffer.all()
    assert added == len(mbpo.model_buffer) < n * length
    assert data["terminated"].any()
    # walk the step-major blocks: the next step continues exactly the rollouts that did not terminate
    start, size = 0, n
    while start < added:
        block = slice(start, start + size)
        alive = ~data["terminated"][block]
        nxt = slice(start + size, start + size + int(alive.sum()))
        if start + size < added:
            assert torch.equal(data["obs"][nxt], data["next_obs"][block][alive])
        start, size = start + size, int(alive.sum())
    assert start == added and size <= n


def test_real_ratio_mixing():
    torch.manual_seed(0)
    mbpo = MBPO(3, 1, rollout_length=1, hidden_size=8, dynamics=partial(DynamicsEnsemble, hidden_size=8),
                model_buffer_capacity=1000)
    real = ReplayBuffer(1000, 3, 1)
    real.add({"obs": torch.zeros(300, 3), "act": torch.zeros(300, 1), "next_obs": torch.zeros(300, 3),
              "reward": torch.zeros(300), "terminated": torch.zeros(300, dtype=torch.bool)})
    mbpo.attach(Task(reward=lambda o, a, o2: o2.sum(-1)), real)
    batch = real.sample(200)
    assert mbpo.mix(batch) is batch  # no model data yet: the real batch as it is
    mbpo.model_buffer.add({"obs": torch.ones(100, 3), "act": torch.ones(100, 1), "next_obs": torch.ones(100, 3),
                           "reward": torch.ones(100), "terminated": torch.zeros(100, dtype=torch.bool)})
    # real_ratio=None: uniform over real + model data, i.e. one shared buffer: 100 / 400 model rows on average
    shares = torch.tensor([mbpo.mix(real.sample(200))["reward"].mean() for _ in range(200)])
    assert abs(shares.mean().item() - 0.25) < 0.01
    mixed = mbpo.mix(real.sample(200))
    assert torch.equal(mixed["obs"].sum(-1), 3 * mixed["reward"])  # rows are whole transitions from one source
    mbpo.real_ratio = 0.05  # the MBPO paper's share of real data
    assert mbpo.mix(real.sample(200))["reward"].sum().item() == 190


def test_zero_rollout_length_is_plain_sac(tmp_path):
    def run(make):
        dm = ReplayDataModule(CHEETAH, env_kwargs={"max_episode_steps": 40}, capacity=2000, batch_size=32,
                              steps_per_epoch=10)
        pl.seed_everything(0)
        agent = make(dm)  # SAC's parts come first, so they start equal; MBPO then builds an unused model
        before = {k: v.clone() for k, v in agent.state_dict().items()}
        pl.seed_everything(0)
        trainer = trainer_for(tmp_path, 2, [CollectRandom(120), Evaluate(num_episodes=1), CollectOnPolicy(40)])
        trainer.fit(agent, datamodule=dm)
        return agent, before, trainer

    mbpo, before, trainer = run(lambda dm: small_mbpo(dm, rollout_length=0))
    assert len(mbpo.model_buffer) == 0 and mbpo.model_trained_steps == 0
    for name, value in mbpo.dynamics.state_dict().items():
        assert torch.equal(value, before[f"dynamics.{name}"]), name  # no model training at all
    assert trainer.optimizers[mbpo._opt_index["dynamics"]].state_dict()["state"] == {}
    assert not torch.equal(mbpo.actor[0].weight, before["actor.0.weight"])

    sac, _, _ = run(lambda dm: SAC(dm.obs_dim, dm.act_dim, hidden_size=32))
    for name, value in sac.state_dict().items():  # same seed, same data, same updates: the same weights
        assert torch.equal(value, mbpo.state_dict()[name]), name


@pytest.mark.parametrize("name,length", [("halfcheetah_sac", 0), ("halfcheetah_dyna", 1), ("halfcheetah_mbpo", 10)])
def test_halfcheetah_configs_parse(name, length, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mbrl_lightning"])  # LightningCLI parses `args`, not pytest's command line
    cli = MBRLCLI(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
                  run=False, args=["--config", str(ROOT / "configs" / "mbpo" / f"{name}.yaml"),
                                   "--data.init_args.capacity", "1000", "--model.init_args.model_buffer_capacity",
                                   "1000", "--trainer.logger", "false"])
    model, dm = cli.model, cli.datamodule
    assert isinstance(model, MBPO) and model.rollout_length == length
    assert dm.env_id == CHEETAH and dm.steps_per_epoch == 5000 and cli.trainer.max_epochs == 10
    assert model.backup == "min" and model.discount == 0.99 and model.tau == 0.005
    assert model.temperature.item() == pytest.approx(0.05)
    assert model.dynamics.ensemble_size == 3 and model.hparams.model_train_steps == 1500


def test_tiny_config_runs_end_to_end(tmp_path):
    config = ROOT / "configs" / "mbpo" / "tiny.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: see one_thread
    proc = subprocess.run([sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iteration 2/2" in proc.stdout and "eval return" in proc.stdout and "fit finished in" in proc.stdout
    run = tmp_path / "runs" / "tiny_mbpo" / "version_0"
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"eval/return", "eval/return_std", "eval/ep_len", "data/env_steps", "sac/critic_loss", "sac/actor_loss",
            "sac/q_mean", "sac/entropy", "sac/temperature", "sac/critic_loss_epoch", "model/loss",
            "mbpo/model_buffer_size"} <= tags
    assert len(events.Scalars("eval/return")) == 2
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # plain tensors only
    assert ckpt["ReplayDataModule"]["buffer"]["size"] == 300 + 100
    assert ckpt["mbpo"]["model_buffer"]["size"] == 2 * 3 * 10 * 3  # 2 iterations x 3 rounds x 10 starts x L=3
    assert len(ckpt["optimizer_states"]) == 3  # actor, critics, dynamics


def two_regime_transitions(n: int) -> dict:
    """Obstacles-shaped data whose first half (y > 0.5) moves x by +0.5 and second half (y < -0.5) by -0.5."""
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(n, 4, generator=gen) * 2 - 1
    obs[: n // 2, 1] = 0.5 + 0.5 * obs[: n // 2, 1].abs()
    obs[n // 2:, 1] = -0.5 - 0.5 * obs[n // 2:, 1].abs()
    obs[:, 2:] = torch.tensor([0.7, -0.8])
    next_obs = obs.clone()
    next_obs[:, 0] += torch.where(obs[:, 1] > 0, 0.5, -0.5)
    return {"obs": obs, "act": torch.rand(n, 2, generator=gen) * 2 - 1, "next_obs": next_obs,
            "reward": torch.zeros(n), "terminated": torch.zeros(n, dtype=torch.bool)}


@pytest.fixture(scope="module")
def two_regime_run(tmp_path_factory):
    """One MBPO iteration on a real buffer holding the two regimes in its two halves (no env steps at all)."""
    torch.set_num_threads(1)
    dm = ReplayDataModule("mbrl/Obstacles-v0", capacity=2000, batch_size=32, steps_per_epoch=1)
    dm.add(two_regime_transitions(1000))
    pl.seed_everything(0)
    mbpo = MBPO(dm.obs_dim, dm.act_dim, rollout_length=1, rollout_batch_size=200, rollout_every=1,
                model_train_steps=300, model_batch_size=64,
                dynamics=partial(DynamicsEnsemble, ensemble_size=2, hidden_size=32, lr=3e-3), hidden_size=16,
                model_buffer_capacity=1000)
    trainer_for(tmp_path_factory.mktemp("mbpo"), 1, []).fit(mbpo, datamodule=dm)
    return dm, mbpo


def test_rollouts_start_from_states_across_the_real_buffer(two_regime_run):
    dm, mbpo = two_regime_run
    real = dm.buffer.all()["obs"]
    starts = mbpo.model_buffer.all()["obs"][:200]  # L = 1: one model step per start, in start order
    match = (starts[:, None] == real[None]).all(-1)  # (starts, real rows)
    assert match.any(1).all()  # every start is a state of the real buffer
    rows = match.float().argmax(1)
    assert (rows < 500).sum() > 50 and (rows >= 500).sum() > 50  # drawn from both halves, not a fixed slice


def test_model_trains_on_samples_across_the_whole_real_buffer(two_regime_run):
    dm, mbpo = two_regime_run
    data = dm.buffer.all()
    with torch.no_grad():
        dx = (mbpo.dynamics.predict_next(data["obs"], data["act"]).mean(0) - data["obs"])[:, 0]
    error = (dx - (data["next_obs"] - data["obs"])[:, 0]).abs()
    # each half's dynamics is learned only from that half's rows (a model of one half predicts +-0.5 wrong by 1)
    assert error[:500].mean() < 0.15 and error[500:].mean() < 0.15, (error[:500].mean(), error[500:].mean())
