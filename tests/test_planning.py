"""Planners on problems with a known optimum, using the true dynamics in place of a learned model."""

import torch

from mbrl_lightning.envs import Task
from mbrl_lightning.planning import CEM, MPCPolicy, RandomShooting, evaluate_sequences

GOAL = torch.tensor([0.8, -0.6, 0.5, 0.3, -0.7, 0.2])


def true_step(obs, act):
    """Point mass: s' = s + 0.1 a (every member identical: the true dynamics)."""
    return obs + 0.1 * act


def reward(obs, act, next_obs):
    return -(next_obs - GOAL.to(next_obs)).pow(2).sum(-1)


TASK = Task(reward=reward)
LOW, HIGH = -torch.ones(6), torch.ones(6)


def optimum_return(horizon):
    """Known optimum: the goal is within reach of full-speed moves, so head straight to it then stay."""
    s, total = torch.zeros(6), 0.0
    for _ in range(horizon):
        s = s + 0.1 * torch.clamp((GOAL - s) / 0.1, -1, 1)
        total += reward(s, None, s).item()
    return total


def score(plan, horizon):
    return evaluate_sequences(true_step, TASK, torch.zeros(1, 6), plan[:, None], ensemble_size=1).item()


def test_evaluate_sequences_keeps_members_apart():
    gains = torch.tensor([1.0, 2.0, 3.0])

    def step(obs, act):  # member e moves (e+1) times as far: three different trajectories
        return obs + 0.1 * gains[:, None, None] * act

    actions = torch.rand(2, 4, 3, 6) * 2 - 1  # P=2 envs, K=4 candidates, H=3
    obs = torch.randn(2, 6)
    got = evaluate_sequences(step, TASK, obs, actions, ensemble_size=3, discount=0.9)
    want = torch.zeros(2, 4)
    for p in range(2):
        for k in range(4):
            per_member = []
            for g in gains:
                s, tot = obs[p], 0.0
                for t in range(3):
                    nxt = s + 0.1 * g * actions[p, k, t]
                    tot += 0.9**t * reward(s, None, nxt).item()
                    s = nxt
                per_member.append(tot)
            want[p, k] = sum(per_member) / 3
    assert torch.allclose(got, want, atol=1e-4)


def test_termination_stops_the_sum():
    task = Task(reward=lambda o, a, n: torch.ones(n.shape[:-1]), terminated=lambda o, a, n: n[..., 0] > 0.25)
    actions = torch.ones(1, 1, 10, 6)  # x grows by 0.1 per step: passes 0.25 on the 3rd step
    ret = evaluate_sequences(true_step, task, torch.zeros(1, 6), actions, ensemble_size=2)
    assert ret.item() == 3.0


def test_random_shooting_and_cem_find_near_optimal_plans():
    horizon, gen = 8, torch.Generator().manual_seed(0)
    best = optimum_return(horizon)
    random_plans = torch.rand(200, horizon, 6, generator=gen) * 2 - 1
    random_mean = evaluate_sequences(true_step, TASK, torch.zeros(1, 6), random_plans[None], 1).mean().item()

    def evaluate(actions):
        return evaluate_sequences(true_step, TASK, torch.zeros(1, 6), actions, 1)

    rs = RandomShooting(horizon, 2000).optimize(evaluate, LOW, HIGH, 1, generator=gen)
    cem = CEM(horizon, 500, num_iterations=4, num_elites=20).optimize(evaluate, LOW, HIGH, 1, generator=gen)
    rs_ret, cem_ret = score(rs, horizon), score(cem, horizon)
    gap = best - random_mean
    assert rs_ret > random_mean + 0.4 * gap  # much better than a random sequence
    assert cem_ret > best - 0.25 * gap, (cem_ret, rs_ret, best, random_mean)  # near the known optimum
    assert cem_ret > rs_ret  # at equal budget (2000 evaluated sequences each)


def test_mpc_policy_drives_point_mass_to_goal():
    policy = MPCPolicy(true_step, 1, TASK, CEM(5, 200, num_iterations=3, num_elites=10), LOW, HIGH, max_envs=3)
    obs = torch.zeros(3, 6)
    obs[1] = 0.5
    policy.reset(torch.arange(3))
    for _ in range(15):
        obs = true_step(obs, policy.act(obs, torch.arange(3)))
    assert (obs - GOAL).norm(dim=-1).max() < 0.1
    assert policy.planned_actions == 45


def test_chunk_size_changes_speed_not_scores():
    actions = torch.rand(3, 50, 4, 6) * 2 - 1
    obs = torch.randn(3, 6)
    scores = [evaluate_sequences(true_step, TASK, obs, actions, 2, 0.95, chunk_size=c) for c in (None, 7, 64, -1)]
    for s in scores[1:]:
        assert torch.allclose(s, scores[0], atol=1e-5)


def test_bf16_planning_ranks_candidates_like_float32():
    from mbrl_lightning.agents import MPCAgent

    torch.manual_seed(0)
    agent = MPCAgent(6, 6, planner=RandomShooting(5, 200), ensemble_size=2, hidden_size=64).eval()
    policies = [agent.mpc_policy(TASK, LOW, HIGH, 2) for _ in range(2)]
    policies[1].bf16 = True
    obs, actions = torch.randn(2, 6), torch.rand(2, 200, 5, 6) * 2 - 1
    fp32, bf16 = (p.evaluate(obs, actions) for p in policies)
    assert bf16.dtype == torch.float32
    assert not torch.equal(fp32, bf16)  # the matmuls really ran in bfloat16
    ranks = torch.corrcoef(torch.stack([fp32.flatten().argsort().argsort().float(),
                                        bf16.flatten().argsort().argsort().float()]))[0, 1]
    assert ranks > 0.99
