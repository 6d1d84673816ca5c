"""MBPO's paper settings (Janner et al. 2019): a rollout-length schedule and elite members picked on held-out data."""

from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from mbrl_lightning.agents import MBPO
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom
from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.models import DynamicsEnsemble

CHEETAH = "mbrl/Cheetah-v0"  # never terminates: a round of rollouts adds exactly starts x L rows
pytestmark = pytest.mark.usefixtures("one_thread")


def small(dm, **kwargs):
    settings = dict(rollout_batch_size=8, rollout_every=100, model_train_steps=10, model_batch_size=32,
                    dynamics=partial(DynamicsEnsemble, ensemble_size=3, hidden_size=16), hidden_size=16,
                    model_buffer_capacity=10_000)
    return MBPO(dm.obs_dim, dm.act_dim, **{**settings, **kwargs})


def test_schedule_is_the_papers_linear_ramp():
    """Hopper's [20, 100, 1, 15]: L = 1 up to iteration 20, then linear (rounded down) to 15 at iteration 100."""
    agent = MBPO(4, 2, rollout_schedule=[20, 100, 1, 15], hidden_size=8,
                 dynamics=partial(DynamicsEnsemble, hidden_size=8))
    assert agent.rollout_length == 1
    assert [agent.scheduled_rollout_length(i) for i in (0, 20, 40, 60, 99, 100, 300)] == [1, 1, 4, 8, 14, 15, 15]
    with pytest.raises(ValueError, match="a < b"):
        MBPO(4, 2, rollout_schedule=[5, 5, 1, 3])


class RoundRows(pl.Callback):
    """Model-buffer rows added in each iteration (one rollout round per iteration here)."""

    def __init__(self):
        self.rows, self.seen = [], 0

    def on_train_epoch_end(self, trainer, module):
        self.rows.append(module.model_buffer.total_added - self.seen)
        self.seen = module.model_buffer.total_added


def test_rollouts_follow_the_schedule_in_a_run(tmp_path):
    pl.seed_everything(0)
    dm = ReplayDataModule(CHEETAH, env_kwargs={"max_episode_steps": 50}, capacity=5000, batch_size=32,
                          steps_per_epoch=5)
    agent = small(dm, rollout_schedule=[0, 2, 1, 3])
    rows = RoundRows()
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path,
                         callbacks=[CollectRandom(200), CollectOnPolicy(50), rows])
    trainer.fit(agent, datamodule=dm)
    assert rows.rows == [8 * 1, 8 * 2, 8 * 3, 8 * 3]  # L = 1, 2, 3, then held at 3


def test_elites_are_the_best_members_on_held_out_data_and_only_they_roll_out(tmp_path):
    pl.seed_everything(0)
    dm = ReplayDataModule(CHEETAH, env_kwargs={"max_episode_steps": 50}, capacity=4000, batch_size=32,
                          steps_per_epoch=5, val_fraction=0.25)
    agent = small(dm, rollout_length=1, num_elites=2, model_train_steps=30)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path,
                         num_sanity_val_steps=0, callbacks=[CollectRandom(400)])
    seen = []
    losses = agent.dynamics.member_losses

    def recording(batch):  # every batch the dynamics sees, in order
        seen.append(batch["obs"][0])
        return losses(batch)

    agent.dynamics.member_losses = recording
    trainer.fit(agent, datamodule=dm)
    train, held_out = dm.split()
    train_rows = {tuple(r) for r in train["obs"].tolist()}
    held_rows = {tuple(r) for r in held_out["obs"].tolist()}
    assert len(seen) == 30 + 1  # 30 training batches, then one ranking pass
    assert all(tuple(r) in train_rows for batch in seen[:30] for r in batch.tolist())
    assert {tuple(r) for r in seen[30].tolist()} == held_rows  # the ranking used the held-out rows, all of them

    agent.dynamics.member_losses = losses
    with torch.no_grad():  # ruin member 0: it must leave the elites
        agent.dynamics.net[-1].weight[0].mul_(100.0)
    mse = agent.rank_elites(held_out)
    assert 0 not in agent.elites.tolist() and len(agent.elites) == 2
    assert set(agent.elites.tolist()) == set(mse.argsort()[:2].tolist())
    obs, act = held_out["obs"][:5], held_out["act"][:5]
    with torch.no_grad():
        want = agent.dynamics.predict_next(obs, act)[agent.elites].mean(0)
        torch.testing.assert_close(agent.model_step(obs, act).next_obs, want)
    with pytest.raises(ValueError, match="exceeds"):
        small(dm, num_elites=4)


def test_random_sampling_runs_each_row_through_one_uniform_elite_only():
    """The paper's rollouts: each transition uses one elite drawn uniformly, sampling its Gaussian. model_step
    runs each row through its own elite only; the output must be exactly that elite's prediction for that row."""
    torch.manual_seed(0)
    agent = MBPO(4, 2, model_sampling="random", num_elites=3, hidden_size=8,
                 dynamics=partial(DynamicsEnsemble, ensemble_size=5, hidden_size=16, loss="nll", learn_reward=True,
                                  learn_termination=True))
    agent.elites.copy_(torch.tensor([4, 0, 2]))
    with torch.no_grad():  # members' rewards far apart (output columns: mean, log-variance, reward, termination)
        agent.dynamics.net[-1].bias[:, 0, -2] += 10.0 * torch.arange(5.0)  # so each row's reward names its member
    n = 6000
    obs, act = torch.randn(n, 4), torch.rand(n, 2) * 2 - 1
    with torch.no_grad():
        full = agent.dynamics.predict(obs, act)  # every member's mean step, (5, n, ...)
        _, logvar, _, _ = agent.dynamics.heads(obs.expand(5, n, 4), act.expand(5, n, 2))
        step = agent.model_step(obs, act)
    rows = torch.arange(n)
    member = (step.reward[None] - full.reward).abs().argmin(0)  # which member's reward each row carries
    torch.testing.assert_close(step.reward, full.reward[member, rows])
    assert set(member.unique().tolist()) == {4, 0, 2}  # elites only, every elite used
    counts = torch.bincount(member, minlength=5)[[4, 0, 2]].float()
    assert ((counts - n / 3).abs() < 4 * (n * (1 / 3) * (2 / 3)) ** 0.5).all()  # uniform: within 4 sigma
    assert torch.equal(step.terminated, full.terminated[member, rows])  # termination from the same member
    # the next state is a draw from that member's Gaussian: z-scores are standard normal
    std = agent.dynamics.delta_norm.std
    z = (step.next_obs - full.next_obs[member, rows]) / (std * (0.5 * logvar[member, rows]).exp())
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
    mean_agent = MBPO(4, 2, model_sampling="mean", num_elites=3, hidden_size=8,
                      dynamics=partial(DynamicsEnsemble, ensemble_size=5, hidden_size=16, loss="nll"))
    mean_agent.elites.copy_(torch.tensor([4, 0, 2]))
    with torch.no_grad():  # "mean" averages the elites' mean steps, and only theirs
        want = mean_agent.dynamics.predict_next(obs, act)[[4, 0, 2]].mean(0)
        torch.testing.assert_close(mean_agent.model_step(obs, act).next_obs, want)


def test_elites_and_scheduled_length_survive_a_checkpoint():
    dynamics = partial(DynamicsEnsemble, ensemble_size=4, hidden_size=8)
    agent = MBPO(4, 2, rollout_schedule=[0, 4, 1, 5], dynamics=dynamics, num_elites=2, hidden_size=8)
    agent.elites.copy_(torch.tensor([3, 1]))
    agent.rollout_length = 4
    checkpoint = {}
    agent.on_save_checkpoint(checkpoint)
    again = MBPO(4, 2, rollout_schedule=[0, 4, 1, 5], dynamics=dynamics, num_elites=2, hidden_size=8)
    again.on_load_checkpoint(checkpoint)
    assert again.elites.tolist() == [3, 1] and again.rollout_length == 4
    other = MBPO(4, 2, dynamics=dynamics, num_elites=3, rollout_length=2, hidden_size=8)
    other.on_load_checkpoint(checkpoint)  # another elite count or no schedule now: the config wins
    assert other.elites.tolist() == [0, 1, 2] and other.rollout_length == 2
    del checkpoint["mbpo"]["elites"], checkpoint["mbpo"]["rollout_length"]  # as saved before elites existed
    MBPO(4, 2, dynamics=dynamics, hidden_size=8).on_load_checkpoint(checkpoint)
