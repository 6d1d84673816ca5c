"""Learned reward and termination: they track the true ones on gymnasium tasks with no registered reward, and the
planner, MBPO and the CLI use them where the env has no hand-written reward."""

from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch

from mbrl_lightning import envs
from mbrl_lightning.agents import MBPO, MPCAgent
from mbrl_lightning.cli import lightning_main
from mbrl_lightning.data import ReplayDataModule
from mbrl_lightning.data.buffer import ReplayBuffer
from mbrl_lightning.data.collect import RandomPolicy, collect
from mbrl_lightning.models import DynamicsEnsemble
from mbrl_lightning.models.dynamics import Prediction
from mbrl_lightning.planning import RandomShooting
from mbrl_lightning.planning.rollout import evaluate_sequences


def random_data(dm: ReplayDataModule, num_steps: int, seed: int) -> dict[str, torch.Tensor]:
    env = dm.make_env()
    policy = RandomPolicy(dm.action_low, dm.action_high, seed=seed)
    return collect([env], policy, num_steps=num_steps, seed=seed, progress=False).transitions


def fit(model, dm, tmp_path, steps):
    dm.steps_per_epoch = steps
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, reload_dataloaders_every_n_epochs=1,
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)


def test_learned_reward_tracks_pendulums_true_reward(tmp_path):
    """Pendulum-v1 has no registered task; its reward -(theta^2 + 0.1 thdot^2 + 0.001 u^2) depends on (s, a) only,
    so a model of (s, a) must predict it on held-out transitions (R^2 > 0.95; predicting the mean gives 0)."""
    assert envs.find_task("Pendulum-v1") is None
    pl.seed_everything(0)
    dm = ReplayDataModule("Pendulum-v1", batch_size=128, capacity=10_000)
    assert dm.task is None  # the data module no longer refuses an env without a reward function
    dm.add(random_data(dm, 4000, seed=1))
    model = DynamicsEnsemble(dm.obs_dim, dm.act_dim, ensemble_size=2, hidden_size=64, lr=3e-3, learn_reward=True)
    fit(model, dm, tmp_path, steps=600)
    test = random_data(dm, 1000, seed=7)  # other episodes: held out
    with torch.no_grad():
        pred = model.predict(test["obs"], test["act"])
    assert pred.reward is not None and pred.reward.shape == (2, 1000) and pred.terminated is None
    r = test["reward"]
    r2 = 1 - (pred.reward - r).pow(2).mean(1) / r.var(unbiased=False)
    assert (r2 > 0.95).all(), r2


def test_learned_termination_tracks_inverted_pendulums_falls(tmp_path):
    """InvertedPendulum-v5 (no registered task) ends when |pole angle| > 0.2: the termination head must call the
    held-out falls and non-falls right (a model that never predicts termination scores only the base rate)."""
    assert envs.find_task("InvertedPendulum-v5") is None
    pl.seed_everything(0)
    dm = ReplayDataModule("InvertedPendulum-v5", batch_size=256, capacity=20_000)
    dm.add(random_data(dm, 6000, seed=1))
    model = DynamicsEnsemble(dm.obs_dim, dm.act_dim, ensemble_size=2, hidden_size=64, lr=3e-3,
                             learn_reward=True, learn_termination=True)
    fit(model, dm, tmp_path, steps=800)
    test = random_data(dm, 3000, seed=11)
    with torch.no_grad():
        done = model.predict(test["obs"], test["act"]).terminated.float().mean(0) > 0.5
    truth = test["terminated"]
    base_rate = truth.float().mean().item()
    assert 0.03 < base_rate < 0.5  # random actions topple the pole every few steps
    recall = (done & truth).sum() / truth.sum()
    false_alarms = (done & ~truth).sum() / (~truth).sum()
    accuracy = (done == truth).float().mean().item()
    assert recall > 0.8 and false_alarms < 0.05 and accuracy > 1 - base_rate / 2, (recall, false_alarms, accuracy)


def test_rollout_sums_the_models_reward_until_its_predicted_termination():
    """With no task at all, the rollout takes reward and termination from the step's ``Prediction``: a particle
    terminated at step t keeps that step's reward and nothing after it."""
    def step(obs, act):  # state counts steps; reward 1 + t; terminates once the count reaches 2
        nxt = obs + 1
        return Prediction(nxt, (1 + obs[..., 0]).clone(), nxt[..., 0] >= 2)

    actions = torch.zeros(1, 3, 5, 1)
    ret = evaluate_sequences(step, None, torch.zeros(1, 1), actions, ensemble_size=2)
    torch.testing.assert_close(ret, torch.full((1, 3), 1.0 + 2.0))  # steps 0 and 1; step 1 terminated
    ret = evaluate_sequences(step, None, torch.zeros(1, 1), actions, ensemble_size=2, discount=0.5)
    torch.testing.assert_close(ret, torch.full((1, 3), 1.0 + 0.5 * 2.0))


def test_mpc_on_an_env_without_reward_needs_the_learned_reward():
    low, high = -torch.ones(1), torch.ones(1)
    agent = MPCAgent(3, 1, planner=RandomShooting(3, 10), ensemble_size=2, hidden_size=8)
    try:
        agent.mpc_policy(None, low, high, 1)
    except ValueError as err:
        assert "learn_reward" in str(err)
    else:
        raise AssertionError("planning without any reward function must fail")
    learned = MPCAgent(3, 1, planner=RandomShooting(3, 10), ensemble_size=2, hidden_size=8, learn_reward=True,
                      bf16=False)
    policy = learned.mpc_policy(None, low, high, 1)
    obs = torch.randn(1, 3)
    acts = torch.rand(1, 10, 3, 1) * 2 - 1
    with torch.no_grad():  # the planner's score is the model's own reward summed along its own trajectory
        want = torch.zeros(2, 10)
        state = obs.expand(2, 10, 3)
        for t in range(3):
            pred = learned.predict(state, acts[0, :, t].expand(2, 10, 1))
            want += pred.reward
            state = pred.next_obs
    torch.testing.assert_close(policy.evaluate(obs, acts), want.mean(0)[None], rtol=1e-5, atol=1e-5)


def test_mbpo_rollouts_carry_the_learned_reward_and_termination():
    torch.manual_seed(0)
    agent = MBPO(3, 1, rollout_length=3, hidden_size=8, model_sampling="random",
                 dynamics=partial(DynamicsEnsemble, ensemble_size=2, hidden_size=8, learn_reward=True,
                                  learn_termination=True))
    buffer = ReplayBuffer(100, 3, 1)
    agent.attach(None, buffer)
    with torch.no_grad():
        agent.dynamics.net[-1].bias[..., -1] = -50.0  # termination logit: never
    out = agent.rollout(torch.randn(20, 3))
    assert out["obs"].shape == (60, 3) and not out["terminated"].any()
    with torch.no_grad():
        pred = agent.dynamics.predict(out["obs"], out["act"])
    # each row's reward is one member's prediction for that very transition
    assert ((pred.reward - out["reward"]).abs().min(0).values < 1e-5).all()
    with torch.no_grad():
        agent.dynamics.net[-1].bias[..., -1] = 50.0  # termination logit: always: rollouts stop after one step
    assert agent.rollout(torch.randn(20, 3))["terminated"].all()
    try:
        MBPO(3, 1, rollout_length=1, hidden_size=8,
             dynamics=partial(DynamicsEnsemble, hidden_size=8, learn_reward=False)).attach(None, buffer)
    except ValueError as err:
        assert "learn_reward" in str(err)
    else:
        raise AssertionError("MBPO without any reward function must fail at attach")


def test_auto_learns_the_heads_only_where_the_env_has_no_reward(tmp_path):
    """``learn_reward: auto`` (the default) turns on for Pendulum-v1 and stays off for the obstacles env; a whole
    CLI run plans on the learned reward and config.yaml records the resolved choice."""
    config_file = Path(__file__).parents[1] / "configs" / "tiny" / "obstacles.yaml"
    common = ["--config", str(config_file), "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--trainer.max_epochs", "1"]
    cli = lightning_main(["fit", *common, "--data.init_args.env_id", "Pendulum-v1"], run=True)
    assert cli.model.learn_reward and cli.model.learn_termination
    assert cli.trainer.callback_metrics["eval/return"].isfinite()
    config = (tmp_path / "tiny_obstacles" / "version_0" / "config.yaml").read_text()
    assert "learn_reward: true" in config and "learn_termination: true" in config
    cli = lightning_main(common, run=False)
    assert not cli.model.learn_reward and not cli.model.learn_termination
