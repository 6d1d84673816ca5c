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
    agent = MPCAgent(6, 6, planner=RandomShooting(5, 200), ensemble_size=2, hidden_size=64, bf16=False).eval()
    policies = [agent.mpc_policy(TASK, LOW, HIGH, 2) for _ in range(2)]
    policies[1].bf16 = True
    obs, actions = torch.randn(2, 6), torch.rand(2, 200, 5, 6) * 2 - 1
    fp32, bf16 = (p.evaluate(obs, actions) for p in policies)
    assert bf16.dtype == torch.float32
    assert not torch.equal(fp32, bf16)  # the matmuls really ran in bfloat16
    ranks = torch.corrcoef(torch.stack([fp32.flatten().argsort().argsort().float(),
                                        bf16.flatten().argsort().argsort().float()]))[0, 1]
    assert ranks > 0.99


def quadratic(target):
    """Scores (P, K, H, A) candidates by -squared distance to ``target`` (A,), summed over the horizon."""
    return lambda actions: -(actions - target).pow(2).sum((-1, -2))


def recorded(evaluate, log):
    """``evaluate`` that also keeps every population it is asked to score."""
    def wrapped(actions):
        log.append(actions.clone())
        return evaluate(actions)
    return wrapped


def elite_stats(evaluate, candidates, num_elites):
    elites = candidates[0, evaluate(candidates).topk(num_elites, dim=1).indices[0]]
    return elites.mean(0), elites.std(0, unbiased=False)


def test_cem_alpha_smooths_the_refit_of_mean_and_std():
    # wide bounds, so no candidate is clipped and a population's spread is the Gaussian's own std
    low, high = torch.full((2,), -100.0), torch.full((2,), 100.0)
    evaluate, alpha, elites, log = quadratic(torch.tensor([3.0, -4.0])), 0.3, 50, []
    cem = CEM(horizon=1, num_sequences=4000, num_iterations=3, num_elites=elites, alpha=alpha)
    plan = cem.optimize(recorded(evaluate, log), low, high, 1, generator=torch.Generator().manual_seed(0))
    m1, s1 = elite_stats(evaluate, log[0], elites)  # the first (uniform) population sets the Gaussian
    e2_mean, e2_std = elite_stats(evaluate, log[1], elites)
    m2, s2 = alpha * e2_mean + (1 - alpha) * m1, alpha * e2_std + (1 - alpha) * s1
    e3_mean, _ = elite_stats(evaluate, log[2], elites)
    assert torch.allclose(plan[0], alpha * e3_mean + (1 - alpha) * m2, atol=1e-4)  # the plan is the smoothed mean
    spread = log[2][0].std(0, unbiased=False)  # the third population is drawn with the smoothed std
    assert torch.allclose(spread, s2, rtol=0.05), (spread, s2, e2_std)
    assert (e2_std < 0.5 * s2).all()  # (the unsmoothed std would differ a lot)


def test_cem_without_warm_start_ignores_the_previous_plan():
    evaluate = quadratic(torch.tensor([0.2, -0.4]))
    cem = CEM(horizon=4, num_sequences=300, num_iterations=2, num_elites=10, warm_start=False)
    plans = [cem.optimize(evaluate, -torch.ones(2), torch.ones(2), 2, init_mean=init,
                          generator=torch.Generator().manual_seed(0))
             for init in (None, torch.full((2, 4, 2), 0.3), torch.full((2, 4, 2), -0.3))]
    assert torch.equal(plans[0], plans[1]) and torch.equal(plans[0], plans[2])
    for warm_start, centre in ((False, 0.0), (True, 0.3)):  # first population: uniform, or around the warm start
        log = []
        cem.warm_start = warm_start
        cem.optimize(recorded(evaluate, log), -torch.ones(2), torch.ones(2), 2, init_mean=torch.full((2, 4, 2), 0.3),
                     generator=torch.Generator().manual_seed(1))
        assert (log[0].mean((1, 2, 3)) - centre).abs().max() < 0.05, (warm_start, log[0].mean())


BOX_LOW, BOX_HIGH = torch.tensor([0.0, -3.0, 2.0]), torch.tensor([1.0, -1.0, 5.0])


def test_candidates_and_plans_stay_inside_bounds_that_are_not_unit():
    evaluate = quadratic(BOX_HIGH + 2.0)  # the best actions lie outside the box: the search presses on its walls
    gen = torch.Generator().manual_seed(0)
    for planner in (RandomShooting(6, 200), CEM(6, 200, num_iterations=3, num_elites=10),
                    CEM(6, 200, num_iterations=3, num_elites=10, warm_start=True)):
        log = []
        init = torch.stack([BOX_LOW, BOX_HIGH, (BOX_LOW + BOX_HIGH) / 2])[None].repeat(2, 2, 1)  # (2, 6, 3)
        plan = planner.optimize(recorded(evaluate, log), BOX_LOW, BOX_HIGH, 2, init_mean=init, generator=gen)
        for population in [*log, plan]:
            assert ((population >= BOX_LOW) & (population <= BOX_HIGH)).all(), type(planner).__name__
        if isinstance(planner, CEM):  # its Gaussian proposals went past the walls and were clipped onto them
            assert (log[-1] == BOX_HIGH).any((0, 1, 2)).all()
    policy = MPCPolicy(lambda o, a: o + 0.1 * a, 1, Task(reward=lambda o, a, n: -(n - 10.0).pow(2).sum(-1)),
                       CEM(4, 100, num_iterations=2, num_elites=10, warm_start=True), BOX_LOW, BOX_HIGH, max_envs=2)
    obs = torch.zeros(2, 3)
    for _ in range(5):
        action = policy.act(obs, torch.arange(2))
        assert ((action >= BOX_LOW) & (action <= BOX_HIGH)).all()
        obs = obs + 0.1 * action


class RecordingCEM(CEM):
    """CEM that keeps the warm start (``init_mean``) of every call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inits = []

    def optimize(self, evaluate, low, high, num_envs, init_mean=None, generator=None):
        self.inits.append((num_envs, None if init_mean is None else init_mean.clone()))
        return super().optimize(evaluate, low, high, num_envs, init_mean=init_mean, generator=generator)


def test_mpc_keeps_the_warm_start_of_envs_that_did_not_reset():
    cem = RecordingCEM(5, 100, num_iterations=2, num_elites=10, warm_start=True)
    policy = MPCPolicy(true_step, 1, TASK, cem, LOW, HIGH, max_envs=3)
    obs, envs = torch.zeros(3, 6), torch.arange(3)
    policy.reset(envs)
    for _ in range(2):
        obs = true_step(obs, policy.act(obs, envs))
    previous = policy.plans.clone()
    shifted = torch.cat([previous[:, 1:], torch.zeros(3, 1, 6)], dim=1)  # the warm start: plan moved one step on
    policy.reset(torch.tensor([1]))  # env 1's episode ends and a new one starts; envs 0 and 2 go on
    cem.inits.clear()
    policy.act(obs, envs)
    warm = [row for n, init in cem.inits if init is not None for row in init]
    assert sum(n for n, _ in cem.inits) == 3  # every env planned once
    assert len(warm) == 2 and torch.equal(warm[0], shifted[0]) and torch.equal(warm[1], shifted[2])
