"""SAC: the squashed-Gaussian density, the critic backups, learning a standard task, checkpoint round trips."""

import copy
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from mbrl_lightning.agents import SAC
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.data import RandomPolicy, ReplayDataModule, collect
from mbrl_lightning.envs import register_task
from mbrl_lightning.envs import tasks as tasks_mod

IP = "InvertedPendulum-v5"


def inverted_pendulum_terminated(obs, act, next_obs):
    """InvertedPendulum-v5 ends when the pole angle leaves [-0.2, 0.2] (or the state is not finite)."""
    return ~torch.isfinite(next_obs).all(-1) | (next_obs[..., 1].abs() > 0.2)


def inverted_pendulum_reward(obs, act, next_obs):
    """+1 for every step that does not terminate (gymnasium's v5 reward)."""
    return (~inverted_pendulum_terminated(obs, act, next_obs)).to(next_obs.dtype)


@pytest.fixture(scope="module", autouse=True)
def inverted_pendulum_task():
    """This module's tests use a hand-written InvertedPendulum-v5 task; other modules see the env without one
    (as shipped: its models learn reward and termination)."""
    register_task(IP, inverted_pendulum_reward, inverted_pendulum_terminated)
    yield
    tasks_mod._TASKS.pop(IP, None)


pytestmark = pytest.mark.usefixtures("one_thread")


def trainer_for(tmp_path, max_epochs, callbacks, **kwargs):
    return pl.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      reload_dataloaders_every_n_epochs=1, default_root_dir=tmp_path, callbacks=callbacks,
                      **kwargs)


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    sac = SAC(obs_dim=5, act_dim=3, hidden_size=16)
    obs = torch.randn(64, 5)
    gen = torch.Generator().manual_seed(1)
    action, log_prob = sac.sample_action(obs, gen)
    mean, log_std = sac.actor_dist(obs)
    assert (log_std >= sac.hparams.log_std_min).all() and (log_std <= sac.hparams.log_std_max).all()
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    u = mean + log_std.exp() * eps
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    assert torch.allclose(action, torch.tanh(u))
    assert torch.allclose(log_prob, reference.log_prob(torch.tanh(u)).sum(-1), atol=1e-4)
    # deterministic evaluation action: the mean through tanh, rescaled to the env bounds
    sac.set_action_bounds(torch.tensor([-2.0, 0.0, -1.0]), torch.tensor([2.0, 1.0, 3.0]))
    assert torch.allclose(sac.act(obs, deterministic=True), sac.to_env_action(torch.tanh(mean)))
    assert torch.allclose(sac.from_env_action(sac.to_env_action(action)), action, atol=1e-6)


@pytest.mark.parametrize("num_critics", [2, 3])
@pytest.mark.parametrize("backup", ["min", "mean", "doubleq"])
def test_critic_backups(backup, num_critics):
    torch.manual_seed(0)
    n = num_critics
    sac = SAC(obs_dim=4, act_dim=2, hidden_size=16, num_critics=n, backup=backup, discount=0.9, temperature=0.2)
    B = 32
    batch = {"obs": torch.randn(B, 4), "act": torch.rand(B, 2) * 2 - 1, "next_obs": torch.randn(B, 4),
             "reward": torch.randn(B), "terminated": torch.arange(B) % 4 == 0}
    torch.manual_seed(5)
    target = sac.critic_target(batch)
    torch.manual_seed(5)
    with torch.no_grad():
        next_action, next_log_prob = sac.sample_action(batch["next_obs"])
        q = sac.q_values(batch["next_obs"], next_action, target=True)  # (N, B)
    # doubleq: critic i bootstraps from target critic i + 1 (the last one from the first)
    expected_q = {"min": q.min(0).values.expand(n, B), "mean": q.mean(0).expand(n, B),
                  "doubleq": torch.stack([q[(i + 1) % n] for i in range(n)])}[backup]
    expected = batch["reward"] + 0.9 * (~batch["terminated"]) * (expected_q - 0.2 * next_log_prob)
    assert torch.allclose(target.expand(n, B), expected, atol=1e-6)
    # terminal transitions do not bootstrap
    done = batch["terminated"]
    assert torch.allclose(target[:, done], batch["reward"][done].expand(target.shape[0], -1))


def bare_updates(sac):
    """Let ``sac.update`` step its raw optimisers without a Trainer."""
    opts = sac.configure_optimizers()
    sac.optimizers = lambda: opts
    sac.manual_backward = lambda loss: loss.backward()


@pytest.mark.parametrize("log_std,moves", [(-5.0, "up"), (0.0, "down")])
def test_temperature_rises_below_the_target_entropy_and_falls_above_it(log_std, moves):
    torch.manual_seed(0)
    act_dim = 3
    sac = SAC(obs_dim=4, act_dim=act_dim, hidden_size=16, learn_temperature=True, temperature=0.1)
    assert sac.target_entropy == -act_dim  # the default target: -|A|
    out = sac.actor[-1]  # a state-independent policy: mean 0, the given log-std
    lo, hi = sac.hparams.log_std_min, sac.hparams.log_std_max
    with torch.no_grad():
        out.weight.zero_()
        out.bias[:act_dim] = 0.0
        out.bias[act_dim:] = math.atanh(2 * (log_std - lo) / (hi - lo) - 1) if log_std > lo else -20.0
    bare_updates(sac)
    batch = {"obs": torch.randn(256, 4), "act": torch.rand(256, act_dim) * 2 - 1, "next_obs": torch.randn(256, 4),
             "reward": torch.randn(256), "terminated": torch.zeros(256, dtype=torch.bool)}
    alpha = sac.temperature.item()
    entropy = sac.update(batch)["sac/entropy"].item()
    # log-std -5: entropy far below -|A| = -3; log-std 0 (std 1, nearly uniform after tanh): above it
    assert (entropy < -act_dim - 2) if moves == "up" else (entropy > -act_dim + 2), entropy
    assert (sac.temperature.item() > alpha) if moves == "up" else (sac.temperature.item() < alpha)


def test_default_target_entropy_is_minus_the_action_dimension():
    assert SAC(obs_dim=5, act_dim=4).target_entropy == -4.0
    assert SAC(obs_dim=5, act_dim=4, target_entropy=-1.5).target_entropy == -1.5


def test_update_moves_targets_by_polyak_average():
    torch.manual_seed(0)
    sac = SAC(obs_dim=3, act_dim=1, hidden_size=16, tau=0.1, learn_temperature=True)
    opts = sac.configure_optimizers()
    sac.optimizers = lambda: opts  # a bare module (no Trainer): step the raw optimisers
    sac.manual_backward = lambda loss: loss.backward()
    batch = {"obs": torch.randn(8, 3), "act": torch.rand(8, 1) * 2 - 1, "next_obs": torch.randn(8, 3),
             "reward": torch.randn(8), "terminated": torch.zeros(8, dtype=torch.bool)}
    old_target = [p.clone() for p in sac.critics_target.parameters()]
    alpha = sac.temperature.item()
    metrics = sac.update(batch)
    for old, new, online in zip(old_target, sac.critics_target.parameters(), sac.critics.parameters(), strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * online, atol=1e-6)
    assert sac.temperature.item() != alpha  # learned temperature took a step
    assert set(metrics) >= {"sac/critic_loss", "sac/actor_loss", "sac/q_mean", "sac/entropy", "sac/temperature"}


def test_one_backward_of_the_summed_losses_steps_as_one_backward_per_loss():
    """``step_optimizers`` backwards the actor and temperature losses together: the weights, optimiser states and
    metrics after several updates are bit for bit those of a zero_grad and a backward per optimiser."""

    def one_backward_per_loss(self, *steps):  # the reference: what step_optimizers did before
        for opt, _ in steps:
            opt.zero_grad(set_to_none=True)
        for _, loss in steps:
            loss.backward()
        for opt, _ in steps:
            opt.step()

    torch.manual_seed(0)
    sac = SAC(obs_dim=5, act_dim=2, hidden_size=32, learn_temperature=True)
    reference = copy.deepcopy(sac)
    reference.step_optimizers = one_backward_per_loss.__get__(reference)
    g = torch.Generator().manual_seed(1)
    batches = [{"obs": torch.randn(64, 5, generator=g), "act": torch.rand(64, 2, generator=g) * 2 - 1,
                "next_obs": torch.randn(64, 5, generator=g), "reward": torch.randn(64, generator=g),
                "terminated": torch.rand(64, generator=g) < 0.1} for _ in range(5)]
    results = []
    for agent in (sac, reference):
        bare_updates(agent)
        torch.manual_seed(2)  # the actions the updates sample
        metrics = [agent.update(batch) for batch in batches]
        results.append((agent.state_dict(), [opt.state_dict()["state"] for opt in agent.optimizers()], metrics))
    (weights, states, metrics), (ref_weights, ref_states, ref_metrics) = results
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    for state, ref_state in zip(states, ref_states, strict=True):
        for i in ref_state:
            assert all(torch.equal(state[i][k], ref_state[i][k]) for k in ref_state[i])
    assert all(torch.equal(m[k], r[k]) for m, r in zip(metrics, ref_metrics, strict=True) for k in r)
    assert not torch.equal(weights["log_alpha"], torch.tensor(math.log(0.05)))  # the temperature did move


def test_bf16_updates_round_the_hidden_layers_only(monkeypatch):
    """``bf16``: an update's hidden-layer matmuls run in bfloat16, the output layers in float32 (a Q of 300.1 stays
    300.1, where bfloat16 would give 300), so losses and metrics are float32 and the weights end near float32's."""
    import mbrl_lightning.precision as precision

    torch.manual_seed(0)
    sac = SAC(obs_dim=5, act_dim=2, hidden_size=32, learn_temperature=True, bf16=True)
    assert sac.update_bf16() and not SAC(5, 2).update_bf16()  # float32 unless asked
    reference = copy.deepcopy(sac)
    reference.hparams.bf16 = False
    with torch.no_grad():
        sac.critics[-1].bias.fill_(300.1)
        reference.critics[-1].bias.fill_(300.1)
    obs, act = torch.randn(16, 5), torch.rand(16, 2) * 2 - 1
    with sac.update_precision():
        q = sac.q_values(obs, act)
        mean, log_std = sac.actor_dist(obs)
    assert q.dtype == mean.dtype == log_std.dtype == torch.float32
    plain = reference.q_values(obs, act)
    gap = (q - plain).abs().max()
    assert 0 < gap < 0.5, gap  # rounded hidden layers, not a bfloat16 output (spacing 2 at 300)
    assert not torch.equal(q, q.to(torch.bfloat16).float())

    g = torch.Generator().manual_seed(1)
    batch = {"obs": torch.randn(64, 5, generator=g), "act": torch.rand(64, 2, generator=g) * 2 - 1,
             "next_obs": torch.randn(64, 5, generator=g), "reward": torch.randn(64, generator=g),
             "terminated": torch.rand(64, generator=g) < 0.1}
    for agent in (sac, reference):
        bare_updates(agent)
        torch.manual_seed(2)
        metrics = agent.update(batch)
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in metrics.values())
    for name, p in sac.named_parameters():
        ref = dict(reference.named_parameters())[name]
        assert p.dtype == torch.float32
        assert torch.allclose(p, ref, atol=2e-3), name  # one Adam step of lr 3e-4: the rounding moves it a little
    assert not all(torch.equal(p, dict(reference.named_parameters())[n]) for n, p in sac.named_parameters())

    monkeypatch.setattr(precision, "device_has_bf16", lambda device: False)
    assert SAC(5, 2, bf16="auto").update_bf16() is False
    monkeypatch.setattr(precision, "device_has_bf16", lambda device: True)
    assert SAC(5, 2, bf16="auto").update_bf16() is True
    monkeypatch.setattr(precision, "cpu_lacks_bf16", lambda: True)
    with pytest.warns(UserWarning, match="emulated"):
        SAC(5, 2, bf16=True).update_precision()


def test_sac_learns_inverted_pendulum_beyond_any_random_return(tmp_path):
    """Model-free SAC through the Trainer loop: 1200 real steps, 1200 updates.

    The bar is measured here: the best return of 300 random-policy episodes (about 20; mean about 5).
    """
    dm = ReplayDataModule(IP, capacity=5000, batch_size=256, steps_per_epoch=300, seed=0)
    envs = [dm.make_env() for _ in range(10)]
    random_returns = collect(envs, RandomPolicy(dm.action_low, dm.action_high, seed=3), num_episodes=300,
                             seed=10_000, progress=False).returns
    best_random = max(random_returns)
    pl.seed_everything(0)
    sac = SAC(dm.obs_dim, dm.act_dim, hidden_size=64, temperature=0.1, learn_temperature=True,
              actor_lr=1e-3, critic_lr=1e-3, temperature_lr=1e-3)
    trainer = trainer_for(tmp_path, 4, [CollectRandom(300), Evaluate(num_episodes=10, every_n_iters=4),
                                        CollectOnPolicy(num_steps=300)], enable_checkpointing=False)
    trainer.fit(sac, datamodule=dm)
    assert dm.buffer.total_added == 300 + 3 * 300
    eval_return = float(trainer.callback_metrics["eval/return"])
    assert eval_return > 1.5 * best_random, (eval_return, best_random, float(np.mean(random_returns)))


def test_checkpoint_round_trip(tmp_path):
    dm = ReplayDataModule(IP, capacity=2000, batch_size=32, steps_per_epoch=15, seed=0)
    pl.seed_everything(0)
    sac = SAC(dm.obs_dim, dm.act_dim, hidden_size=16, learn_temperature=True, temperature=0.3)
    trainer = trainer_for(tmp_path, 1, [CollectRandom(100)], enable_checkpointing=False)
    trainer.fit(sac, datamodule=dm)
    path = tmp_path / "sac.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # tensors and plain types only

    state = ckpt["state_dict"]
    for prefix in ("actor.", "critics.", "critics_target.", "log_alpha", "action_low", "action_high"):
        assert any(k.startswith(prefix) for k in state), prefix
    assert torch.allclose(state["action_high"], torch.tensor([3.0]))
    assert not math.isclose(float(state["log_alpha"]), math.log(0.3))  # the learned temperature moved
    # optimiser states: actor, critics, temperature, each with 15 Adam steps taken
    assert len(ckpt["optimizer_states"]) == 3
    for saved, live in zip(ckpt["optimizer_states"], trainer.optimizers, strict=True):
        live_state = live.state_dict()
        assert saved["state"].keys() == live_state["state"].keys()
        for k, v in saved["state"].items():
            assert float(v["step"]) == 15
            assert torch.equal(v["exp_avg"], live_state["state"][k]["exp_avg"])
    assert ckpt["sac"]["num_updates"] == 15

    restored = SAC.load_from_checkpoint(path, weights_only=True)
    for (name, a), (_, b) in zip(sac.state_dict().items(), restored.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert restored.hparams.learn_temperature and restored.num_updates == 15
    assert not torch.equal(restored.critics_target[0].weight, restored.critics[0].weight)

    # resuming continues from the saved optimiser states and update count
    dm2 = ReplayDataModule(IP, capacity=2000, batch_size=32, steps_per_epoch=15, seed=0)
    resumed = SAC(dm.obs_dim, dm.act_dim, hidden_size=16, learn_temperature=True, temperature=0.3)
    trainer2 = trainer_for(tmp_path, 2, [CollectRandom(100)], enable_checkpointing=False)
    trainer2.fit(resumed, datamodule=dm2, ckpt_path=path, weights_only=True)
    assert resumed.num_updates == 30
    assert all(float(s["step"]) == 30 for opt in trainer2.optimizers for s in opt.state_dict()["state"].values())
    assert len(dm2.buffer) == 100  # the buffer came back from the checkpoint: no second random collection


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="backup"):
        SAC(3, 1, backup="max")
    with pytest.raises(ValueError, match="num_critics"):
        SAC(3, 1, num_critics=1, backup="min")
    with pytest.raises(ValueError, match="temperature"):
        SAC(3, 1, temperature=0.0)
    with pytest.raises(ValueError, match="finite action bounds"):
        SAC(3, 1).set_action_bounds(torch.tensor([-float("inf")]), torch.tensor([1.0]))
    with pytest.raises(FloatingPointError, match="sac/critic_loss"):
        SAC(3, 1)._check_finite({"sac/critic_loss": float("nan"), "sac/actor_loss": 0.0})
