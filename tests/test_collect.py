"""Real-environment collection: the agent's own policy fills the buffer, episode ends are stored as the env
reports them, and on-policy collection follows the run's real end (max_epochs, max_steps, a stop signal)."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.data import RandomPolicy, ReplayBuffer, ReplayDataModule, collect
from mbrl_lightning.envs import make

pytestmark = pytest.mark.usefixtures("one_thread")

ACTION = torch.tensor([0.3, -0.6])  # inside the obstacles env's action box


class ConstantPolicy:
    def act(self, obs, env_idx):
        return ACTION.expand(obs.shape[0], -1)

    def reset(self, env_idx):
        pass


class ConstantAgent(pl.LightningModule):
    """The smallest acting module: one trained scalar and a policy that always outputs ``ACTION``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch["reward"].mean()).square()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def acting_policy(self, datamodule, max_envs, seed=0, evaluation=False):
        return ConstantPolicy()


class BufferSizes(pl.Callback):
    """The buffer size each epoch trains on (after the dataloader reload)."""

    def __init__(self):
        self.sizes = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.sizes.append(len(trainer.datamodule.buffer))


class StopAfter(pl.Callback):
    """Sets ``trainer.should_stop`` at a given global step, as max_time's Timer does when the time is up."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def fit(tmp_path, callbacks, ckpt_path=None, **limits):
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=8, steps_per_epoch=2)
    sizes = BufferSizes()
    checkpointing = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = pl.Trainer(logger=False, enable_checkpointing=checkpointing, enable_progress_bar=False,
                         enable_model_summary=False, reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path,
                         callbacks=[CollectRandom(60), CollectOnPolicy(40, num_envs=2), *callbacks, sizes], **limits)
    trainer.fit(ConstantAgent(), datamodule=dm, ckpt_path=ckpt_path)
    return dm, trainer, sizes.sizes


def test_collect_on_policy_acts_with_the_agents_policy(tmp_path):
    dm, _, _ = fit(tmp_path, [], max_epochs=3)
    act = dm.buffer.all()["act"]
    assert act.shape[0] == 60 + 2 * 40
    assert torch.equal(act[60:], ACTION.expand(80, -1))  # every on-policy step carries the policy's action
    assert not (act[:60] == ACTION).all(-1).any()  # (the random steps do not)


@pytest.mark.parametrize("limits", [{"max_epochs": 3}, {"max_epochs": -1, "max_steps": 6}, {"max_steps": 6},
                                    {"max_steps": 5}], ids=["max_epochs", "max_epochs=-1", "max_steps", "mid-epoch"])
def test_on_policy_collection_follows_the_runs_real_end(tmp_path, limits):
    _, trainer, sizes = fit(tmp_path, [], **limits)
    assert trainer.current_epoch == 3
    assert sizes == [60, 100, 140]  # each iteration but the last collected its batch


def test_a_stop_signal_ends_collection_like_a_limit(tmp_path):
    _, trainer, sizes = fit(tmp_path, [StopAfter(step=3)], max_epochs=-1)  # stops during the second iteration
    assert trainer.current_epoch == 2 and sizes == [60, 100]
    assert len(trainer.datamodule.buffer) == 100  # nothing collected after the last iteration


def test_a_run_ended_by_max_steps_and_resumed_collects_its_skipped_batch(tmp_path):
    dm, trainer, _ = fit(tmp_path, [ModelCheckpoint(tmp_path, save_last=True)], max_steps=4)
    assert len(dm.buffer) == 100
    dm, trainer, sizes = fit(tmp_path, [], ckpt_path=tmp_path / "last.ckpt", max_steps=6)
    assert sizes == [140]  # the batch iteration 2 skipped, collected once, before iteration 3 trains
    assert len(dm.buffer) == 140 and trainer.global_step == 6


def test_evaluation_every_n_iterations_follows_the_runs_real_end(tmp_path):
    logger = CSVLogger(tmp_path)
    dm = ReplayDataModule("mbrl/Obstacles-v0", batch_size=8, steps_per_epoch=2)
    trainer = pl.Trainer(max_steps=10, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
                         callbacks=[CollectRandom(60), Evaluate(num_episodes=1, every_n_iters=2)])
    trainer.fit(ConstantAgent(), datamodule=dm)
    logger.save()
    lines = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("eval/iteration")
    iterations = [float(row.split(",")[column]) for row in lines[1:] if row.split(",")[column]]
    assert iterations == [2.0, 4.0, 5.0]  # every second iteration, and the last one


def test_time_limit_truncation_is_stored_as_not_terminated():
    envs = [make("mbrl/Cheetah-v0", max_episode_steps=10)]  # never terminates: every episode end is the limit
    result = collect(envs, RandomPolicy(-torch.ones(6), torch.ones(6), seed=0), num_steps=35, progress=False)
    assert result.lengths == [10, 10, 10]
    buffer = ReplayBuffer(100, envs[0].observation_space.shape[0], 6)
    buffer.add(result.transitions)
    assert not buffer.all()["terminated"].any()


def test_real_termination_is_stored_as_terminated():
    envs = [make("InvertedPendulum-v5")]  # random actions drop the pole within a few dozen steps
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (envs[0].action_space.low, envs[0].action_space.high))
    result = collect(envs, RandomPolicy(low, high, seed=0), num_episodes=4, progress=False)
    ends = torch.tensor(result.lengths).cumsum(0) - 1
    assert max(result.lengths) < 1000  # every episode ended by termination, not by the time limit
    buffer = ReplayBuffer(5000, 4, 1)
    buffer.add(result.transitions)
    expected = torch.zeros(len(buffer), dtype=torch.bool)
    expected[ends] = True
    assert torch.equal(buffer.all()["terminated"], expected)  # exactly the last step of each episode
    assert (buffer.all()["next_obs"][ends, 1].abs() > 0.2).all()  # where the pole had fallen
