"""MBPO as its authors run it: real env steps interleaved with the updates (``CollectInterleaved``), the model
trained every ``model_train_freq`` env steps to early stopping, and a tiny run of that mode end to end."""

from functools import partial

import gymnasium as gym
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_lightning.agents import MBPO, SAC
from mbrl_lightning.callbacks import CollectInterleaved, CollectRandom, Evaluate
from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.models import DynamicsEnsemble

pytestmark = pytest.mark.usefixtures("one_thread")
CHEETAH = "mbrl/Cheetah-v0"  # never terminates: episodes end only at max_episode_steps


class CountResets(gym.Wrapper):
    """Counts ``reset`` and ``step`` calls on the real environment (class-wide)."""

    resets = steps = 0

    def reset(self, **kwargs):
        CountResets.resets += 1
        return self.env.reset(**kwargs)

    def step(self, action):
        CountResets.steps += 1
        return self.env.step(action)


class CountingDataModule(ReplayDataModule):
    def make_env(self, **kwargs):
        return CountResets(super().make_env(**kwargs))


def trainer_for(tmp_path, max_epochs, callbacks, logger=False):
    return pl.Trainer(max_epochs=max_epochs, logger=logger, enable_checkpointing=any(
        isinstance(c, ModelCheckpoint) for c in callbacks), enable_progress_bar=False, enable_model_summary=False,
        reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path, callbacks=callbacks, log_every_n_steps=5)


def cheetah_dm(steps_per_epoch, episode_steps=1000, cls=ReplayDataModule, **kwargs):
    return cls(CHEETAH, env_kwargs={"max_episode_steps": episode_steps}, capacity=5000, batch_size=32,
               steps_per_epoch=steps_per_epoch, **kwargs)


def test_k_updates_per_env_step_are_counted_exactly_across_epochs(tmp_path):
    """Two env steps before every third update, the count running on over the epoch boundary: 20 updates in two
    epochs step the env before updates 0, 3, ..., 18, i.e. 7 x 2 = 14 real steps after the random warm-up."""
    dm = cheetah_dm(10, cls=CountingDataModule)
    agent = SAC(dm.obs_dim, dm.act_dim, hidden_size=16)
    collect = CollectInterleaved(num_steps=2, every_n_updates=3)
    trainer = trainer_for(tmp_path, 2, [CollectRandom(num_steps=50), collect])
    trainer.fit(agent, datamodule=dm)
    assert agent.num_updates == 20 and collect.updates == 20
    assert dm.buffer.total_added == 50 + 14
    assert collect.env_steps_per_epoch(trainer) == 4 * 2  # an epoch's nominal share: ceil(10 / 3) x 2


def test_an_episode_runs_on_across_iterations_and_updates_see_its_steps(tmp_path):
    """One env step per update, 3 iterations of 8 updates, episodes of 20 steps: the 24 steps are one episode
    carried over both epoch boundaries (then a second one), not one reset per iteration; each transition starts where
    the last one ended; the batches of an epoch draw on steps taken within it."""
    dm = cheetah_dm(8, episode_steps=20, cls=CountingDataModule)
    agent = SAC(dm.obs_dim, dm.act_dim, hidden_size=16)
    seen_sizes, resets_at_start = [], []

    class RecordBatches(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            resets_at_start.append(CountResets.resets)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen_sizes.append(len(dm.buffer))

    collect = CollectInterleaved(num_steps=1, every_n_updates=1)
    trainer_for(tmp_path, 3, [CollectRandom(num_steps=40), collect, RecordBatches()]).fit(agent, datamodule=dm)
    real = {k: v[40:] for k, v in dm.buffer.all().items()}
    assert real["obs"].shape[0] == 24
    # in training: the first episode (reset at fit start) ends after 20 steps, the second is reset once
    assert CountResets.resets - resets_at_start[0] == 1 and collect.episodes == 2
    chained = torch.isclose(real["obs"][1:], real["next_obs"][:-1]).all(-1)
    assert chained[:19].all() and not chained[19] and chained[20:].all()  # the boundaries at steps 8, 16 hold
    assert seen_sizes == list(range(41, 65))  # the buffer grows inside each iteration


def test_a_resumed_run_restarts_the_running_episode_with_a_seeded_reset(tmp_path):
    """As documented: the checkpoint holds the episode count, not the simulator, so the first step after a resume
    starts a fresh episode (reset seeded by that count) and the step counts go on exactly."""
    def run(max_epochs, ckpt_path=None):
        dm = cheetah_dm(6, episode_steps=100)
        agent = SAC(dm.obs_dim, dm.act_dim, hidden_size=16)
        collect = CollectInterleaved(num_steps=1, every_n_updates=2)
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_epochs=1)
        trainer = trainer_for(tmp_path, max_epochs, [CollectRandom(num_steps=30), collect, checkpoint])
        trainer.fit(agent, datamodule=dm, ckpt_path=ckpt_path)
        return dm, collect, trainer

    first, collect, _ = run(1)
    assert first.buffer.total_added == 30 + 3 and collect.episodes == 1
    resumed, collect, trainer = run(2, tmp_path / "ckpt" / "last.ckpt")
    assert resumed.buffer.total_added == 30 + 6 and collect.updates == 12 and collect.episodes == 2
    real = {k: v[30:] for k, v in resumed.buffer.all().items()}
    assert torch.equal(real["obs"][:3], first.buffer.all()["obs"][30:33])  # the first iteration's steps kept
    assert not torch.isclose(real["obs"][3], real["next_obs"][2]).all()  # the episode was restarted ...
    reset_obs, _ = resumed.make_env().reset(seed=collect._seed(trainer) + 1)  # ... by the second seeded reset
    torch.testing.assert_close(real["obs"][3], torch.as_tensor(reset_obs, dtype=torch.float32))


def small_mbpo(dm, **kwargs):
    settings = dict(dynamics=partial(DynamicsEnsemble, ensemble_size=3, hidden_size=32, loss="nll"), num_elites=2,
                    model_batch_size=32, rollout_length=2, rollout_batch_size=16, model_sampling="random",
                    real_ratio=0.5, hidden_size=16, model_buffer_capacity=5000)
    settings.update(kwargs)
    return MBPO(dm.obs_dim, dm.act_dim, **settings)


def test_the_model_trains_every_model_train_freq_env_steps_each_time_followed_by_a_rollout_round(tmp_path):
    """One env step every second update, model_train_freq 5: trainings at the first update, then whenever 5 more
    env steps have come in; each is followed by one rollout round, and no other round runs."""
    dm = cheetah_dm(12, val_fraction=0.2)
    agent = small_mbpo(dm, model_train_freq=5, model_train_steps=4)
    at = []
    train_model, generate = agent.train_model, agent.generate_rollouts
    agent.train_model = lambda steps=None: at.append(("train", dm.buffer.total_added)) or train_model(steps)
    agent.generate_rollouts = lambda n: at.append(("roll", dm.buffer.total_added)) or generate(n)
    trainer_for(tmp_path, 2, [CollectRandom(num_steps=60), CollectInterleaved(num_steps=1, every_n_updates=2)]).fit(
        agent, datamodule=dm)
    # env steps before updates 0, 2, 4, ...: the buffer holds 61 at the first update, 61 + j // 2 before update j
    assert at == [("train", 61), ("roll", 61), ("train", 66), ("roll", 66), ("train", 71), ("roll", 71)]
    assert agent.model_trainings == 3 and agent.model_trained_steps == 3 * 4
    assert agent.last_training_env_steps == 71


def early_stopping(tmp_path, **kwargs):
    """Train a fresh model once (inside a real fit, before its first update) and report what happened."""
    dm = cheetah_dm(1, val_fraction=0.2)
    agent = small_mbpo(dm, rollout_length=0, model_train_steps=None, **kwargs)  # L = 0: no training of its own
    out = {}

    class TrainOnce(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            train, held_out = dm.split()
            out["held"] = held = pl_module.held_out_sample(held_out)
            pl_module.dynamics.fit_normalizers(train)  # as train_model will: the errors compare
            out["before"] = [p.detach().clone() for p in pl_module.dynamics.net.parameters()]
            out["start_error"] = pl_module.member_errors(held)
            out["metrics"] = pl_module.train_model()
            out["end_error"] = pl_module.member_errors(held)
            out["steps_per_epoch"] = -(-train["obs"].shape[0] // 32)

    trainer_for(tmp_path, 1, [CollectRandom(num_steps=400), TrainOnce()]).fit(agent, datamodule=dm)
    return agent, out


def test_training_to_early_stopping_stops_and_keeps_each_members_best_weights(tmp_path):
    """With no improvement possible (a relative drop > 100 %), training stops after ``model_patience`` epochs and
    every member gets its starting weights back; with any drop counting, ``model_max_epochs`` caps it; with the
    defaults it stops by itself, the held-out error falls and the elites are the best members."""
    agent, out = early_stopping(tmp_path, model_patience=3, model_improvement=1.5)
    assert out["metrics"]["model/epochs"] == 3
    assert agent.model_trained_steps == 3 * out["steps_per_epoch"]
    assert all(torch.equal(b, p) for b, p in zip(out["before"], agent.dynamics.net.parameters(), strict=True))

    agent, out = early_stopping(tmp_path, model_max_epochs=2, model_improvement=0.0, model_patience=100)
    assert out["metrics"]["model/epochs"] == 2

    agent, out = early_stopping(tmp_path, model_patience=2)
    assert 3 <= out["metrics"]["model/epochs"] < 300
    assert (out["end_error"] < 0.5 * out["start_error"]).all()
    assert torch.equal(agent.elites, out["end_error"].argsort()[:2])


def test_train_bf16_trains_in_bfloat16_and_stops_and_ranks_on_float32_errors(tmp_path):
    """``train_bf16``: the gradient steps round (the weights end elsewhere than float32's from the same seed), the
    held-out errors that stop training and rank the elites do not depend on the flag, and the logs say bf16."""
    weights, errors = {}, {}
    for bf16 in (False, True):
        pl.seed_everything(0)
        dynamics = partial(DynamicsEnsemble, ensemble_size=3, hidden_size=32, loss="nll", train_bf16=bf16)
        agent, out = early_stopping(tmp_path, dynamics=dynamics, model_max_epochs=3, model_improvement=0.0,
                                    model_patience=100)
        assert out["metrics"]["model/bf16"] == float(bf16) and out["metrics"]["model/epochs"] == 3
        weights[bf16] = [p.detach().clone() for p in agent.dynamics.net.parameters()]
        errors[bf16] = agent.member_errors(out["held"])
        agent.dynamics.hparams.train_bf16 = not bf16  # evaluation is float32 whatever the flag says
        assert torch.equal(agent.member_errors(out["held"]), errors[bf16])
        assert torch.equal(agent.elites, out["end_error"].argsort()[:2])
    assert not all(torch.equal(a, b) for a, b in zip(weights[False], weights[True], strict=True))
    assert (errors[True] < 2 * errors[False]).all(), errors


def test_early_stopping_needs_a_held_out_split(tmp_path):
    dm = cheetah_dm(4)  # val_fraction 0
    agent = small_mbpo(dm, model_train_freq=5, model_train_steps=None)
    with pytest.raises(ValueError, match="val_fraction"):
        trainer_for(tmp_path, 1, [CollectRandom(num_steps=60), CollectInterleaved()]).fit(agent, datamodule=dm)


def test_tiny_mbpo_run_in_the_authors_mode_end_to_end(tmp_path):
    """Hopper-v5 on gymnasium's 11-number observation with a learned reward: interleaved env steps, trainings to
    early stopping every 10 env steps, rollouts into a pool sized by model_retain_epochs; real event files."""
    dm = ReplayDataModule("Hopper-v5", env_kwargs={"exclude_current_positions_from_observation": True},
                          capacity=5000, batch_size=32, steps_per_epoch=40, val_fraction=0.2)
    assert dm.obs_dim == 11
    agent = small_mbpo(dm, dynamics=partial(DynamicsEnsemble, ensemble_size=3, hidden_size=32, loss="nll",
                                            learn_reward=True), model_train_freq=10, model_train_steps=None,
                       model_patience=2, model_max_epochs=5, model_retain_epochs=1, rollout_batch_size=20,
                       learn_temperature=True, target_entropy=-1.0)
    logger = pl.loggers.TensorBoardLogger(tmp_path, name="tiny", version=0)
    trainer_for(tmp_path, 2, [CollectRandom(num_steps=300), CollectInterleaved(num_steps=1, every_n_updates=4),
                              Evaluate(num_episodes=1)], logger=logger).fit(agent, datamodule=dm)
    assert dm.buffer.total_added == 300 + 2 * 10
    assert agent.model_trainings == 2  # at 301 and 311 env steps (the run ends at 320)
    # the pool holds one iteration: ceil(10 / 10) round x 20 starts x L = 2
    assert agent.model_buffer.capacity == 1 * 20 * 2 and len(agent.model_buffer) > 0
    assert agent.target_entropy == -1.0
    events = EventAccumulator(str(tmp_path / "tiny" / "version_0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"model/epochs", "model/held_out_loss", "eval/return", "data/env_steps", "model/trainings"} <= tags
    assert [e.value for e in events.Scalars("data/env_steps")] == [300.0, 310.0, 320.0]
    assert all(1 <= e.value <= 5 for e in events.Scalars("model/epochs"))
    assert [e.value for e in events.Scalars("model/bf16")] == [0.0] * len(events.Scalars("model/epochs"))  # float32


def test_batches_from_the_live_buffer_are_the_ones_drawn_from_the_training_split():
    """The brief's runs are unchanged by live sampling: with no data added during an epoch, batch i holds exactly
    the rows that indexing the held-out-free split with batch i's seeded draw gives (the sampling before it)."""
    dm = cheetah_dm(5, val_fraction=0.2)
    dm.add({"obs": torch.randn(333, dm.obs_dim), "act": torch.rand(333, dm.act_dim),
            "next_obs": torch.randn(333, dm.obs_dim), "reward": torch.randn(333),
            "terminated": torch.zeros(333, dtype=torch.bool)})
    dm.trainer = None
    loader = dm.train_dataloader()
    train, _ = dm.split()
    seed = loader.dataset.seed
    for i, batch in enumerate(loader):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        idx = torch.randint(train["obs"].shape[0], (1, 32), generator=gen)
        for k, v in train.items():
            assert torch.equal(batch[k], v[idx]), (i, k)
    assert i == 4
