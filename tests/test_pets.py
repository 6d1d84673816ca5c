"""PETS trajectory sampling (Chua et al. 2018): P particles per candidate, TS-inf binds each to one member for the
whole horizon, TS1 moves it to a random member at every step; the planner then optimises the particle mean."""

import pytest
import pytorch_lightning as pl
import torch

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.envs import Task
from mbrl_lightning.planning import CEM
from mbrl_lightning.planning.rollout import evaluate_sequences

OFFSET = torch.tensor([0.0, 1.0]).view(2, 1, 1)  # member e moves the state by e
SQUARE = Task(reward=lambda obs, act, nxt: nxt[..., 0] ** 2)


def offset_step(obs, act):
    return obs + OFFSET


def test_ts_inf_keeps_each_particle_on_its_member():
    """From s = 0 over two steps: member 0 stays at 0 (return 0), member 1 goes 1, 2 (return 1 + 4): every
    candidate's mean is 2.5, however many particles."""
    ret = evaluate_sequences(offset_step, SQUARE, torch.zeros(1, 1), torch.zeros(1, 50, 2, 1), 2, particles=3)
    torch.testing.assert_close(ret, torch.full((1, 50), 2.5))


def test_ts1_moves_particles_between_members_every_step():
    """With one particle per member, TS1 either keeps the pair apart (0, 2: return (0 + 5) / 2 = 2.5) or
    swaps them at the second step (1, 1: return (1 + 2) / 2 = 1.5), each with probability 1/2."""
    gen = torch.Generator().manual_seed(0)
    ret = evaluate_sequences(offset_step, SQUARE, torch.zeros(1, 1), torch.zeros(1, 400, 2, 1), 2,
                             resample_members=True, generator=gen)
    assert set(ret.flatten().tolist()) == {1.5, 2.5}
    assert abs((ret == 1.5).float().mean().item() - 0.5) < 0.1


def test_particles_average_more_samples():
    """A sampled (nll) model's return estimate for one candidate: its spread shrinks like 1/sqrt(P)."""
    torch.manual_seed(0)
    task = Task(reward=lambda obs, act, nxt: nxt.sum(-1))
    acts = torch.zeros(1, 1, 5, 2).expand(1, 300, 5, 2)  # 300 copies of the same candidate
    agents = {p: MPCAgent(3, 2, ensemble_size=2, hidden_size=16, loss="nll", propagation="ts_inf", num_particles=p)
              for p in (2, 16)}
    agents[16].load_state_dict(agents[2].state_dict())  # the same model, more particles
    spread = {}
    for p, agent in agents.items():
        policy = agent.mpc_policy(task, -torch.ones(2), torch.ones(2), 1, seed=1)
        spread[p] = policy.evaluate(torch.zeros(1, 3), acts).std().item()
    ratio = spread[16] / spread[2]  # sqrt(2 / 16) = 0.35 expected
    assert 0.25 < ratio < 0.5, spread


def test_pets_finds_the_optimum_with_a_learned_noisy_model(tmp_path):
    """s' = s + 0.5 a + noise, reward -(s' - 0.4)^2: a PETS agent (nll ensemble, TS-inf, 10 particles, CEM) trained
    on random data must plan a = 0.8 from s = 0 (the noise does not move the optimum)."""
    pl.seed_everything(0)
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(3000, 1, generator=g) * 2 - 1
    act = torch.rand(3000, 1, generator=g) * 2 - 1
    nxt = obs + 0.5 * act + 0.05 * torch.randn(3000, 1, generator=g)
    batch = {"obs": obs, "act": act, "next_obs": nxt}
    agent = MPCAgent(1, 1, planner=CEM(horizon=1, num_sequences=200, num_iterations=5, num_elites=20),
                     ensemble_size=5, hidden_size=32, loss="nll", propagation="ts_inf", num_particles=10, lr=3e-3)
    agent.fit_normalizers(batch)
    opt = torch.optim.Adam(agent.parameters(), lr=3e-3)
    for _ in range(400):
        idx = torch.randint(3000, (5, 256), generator=g)
        loss = agent.member_losses({k: v[idx] for k, v in batch.items()})[0].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    task = Task(reward=lambda o, a, n: -(n[..., 0] - 0.4) ** 2)
    policy = agent.mpc_policy(task, -torch.ones(1), torch.ones(1), 1, seed=0)
    action = policy.act(torch.zeros(1, 1), torch.arange(1))
    assert abs(action.item() - 0.8) < 0.08, action


@pytest.mark.parametrize("kwargs, message", [
    ({"propagation": "ts_inf", "loss": "nll", "num_particles": 5}, "multiple of ensemble_size"),
    ({"propagation": "mean", "num_particles": 6}, "identical copies"),
    ({"propagation": "ts_inf", "loss": "mse", "num_particles": 6}, "identical copies"),
    ({"propagation": "sample"}, "propagation must be"),
])
def test_bad_particle_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MPCAgent(3, 2, ensemble_size=3, hidden_size=8, **kwargs)


def test_ts1_with_a_deterministic_ensemble_is_allowed_and_differs_from_the_mean():
    """DE-TS1 (deterministic members, particles switch members): several particles per member make sense."""
    torch.manual_seed(0)
    agent = MPCAgent(3, 2, ensemble_size=3, hidden_size=16, propagation="ts1", num_particles=6)
    mean = MPCAgent(3, 2, ensemble_size=3, hidden_size=16)
    mean.load_state_dict(agent.state_dict())
    task = Task(reward=lambda obs, act, nxt: nxt.pow(2).sum(-1))
    acts = torch.rand(1, 20, 6, 2, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ts1 = agent.mpc_policy(task, -torch.ones(2), torch.ones(2), 1).evaluate(torch.zeros(1, 3), acts)
    ref = mean.mpc_policy(task, -torch.ones(2), torch.ones(2), 1).evaluate(torch.zeros(1, 3), acts)
    assert ts1.shape == ref.shape == (1, 20)
    assert not torch.allclose(ts1, ref, atol=1e-4)


def test_per_layer_weight_decay_reaches_each_layers_weights_only():
    """A list: PETS/MBPO decay each layer's weights by its own L2 factor; biases and log-variance bounds are not."""
    decays = [2.5e-5, 5e-5, 7.5e-5, 1e-4]
    agent = MPCAgent(3, 2, ensemble_size=2, hidden_size=8, num_layers=3, loss="nll", weight_decay=decays)
    groups = agent.configure_optimizers().param_groups
    layers = [m for m in agent.net if hasattr(m, "weight")]
    for layer, d, group in zip(layers, decays, groups, strict=False):
        assert group["params"] == [layer.weight] and group["weight_decay"] == d
    rest = groups[-1]
    assert rest["weight_decay"] == 0.0
    assert {id(p) for p in rest["params"]} == {id(p) for p in agent.parameters()} - {id(m.weight) for m in layers}
    assert len(groups) == len(decays) + 1
    with pytest.raises(ValueError, match="one value per layer"):
        MPCAgent(3, 2, ensemble_size=2, hidden_size=8, num_layers=3, weight_decay=[1e-4, 1e-4])
    # one number: one group over every parameter, as before per-layer decay (older checkpoints' optimisers load)
    one = MPCAgent(3, 2, ensemble_size=2, hidden_size=8, num_layers=1, weight_decay=1e-3).configure_optimizers()
    assert [g["weight_decay"] for g in one.param_groups] == [1e-3]


def test_particle_rows_line_up_with_candidates_for_any_chunk_size():
    """Distinct candidates, particles = 3, chunks that split a candidate's particles: the same scores."""
    def step(obs, act):  # deterministic, depends on the action and the member
        return obs + act[..., :1] + OFFSET
    acts = torch.rand(2, 7, 4, 1, generator=torch.Generator().manual_seed(3)) * 2 - 1
    obs = torch.tensor([[0.0], [0.5]])
    scores = [evaluate_sequences(step, SQUARE, obs, acts, 2, particles=3, chunk_size=c) for c in (None, 4, 5, 13)]
    for other in scores[1:]:
        torch.testing.assert_close(other, scores[0])
    single = evaluate_sequences(step, SQUARE, obs, acts, 2)  # identical particles: the mean of one
    torch.testing.assert_close(scores[0], single)
    assert scores[0].std() > 0.1  # the candidates really differ
