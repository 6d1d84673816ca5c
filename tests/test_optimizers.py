"""iCEM and MPPI on problems with a known optimum (true dynamics, no model), against random shooting."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbrl_lightning.envs import Task
from mbrl_lightning.planning import ICEM, MPPI, MPCPolicy, RandomShooting, evaluate_sequences
from mbrl_lightning.planning.optimizers import colored_noise

ROOT = Path(__file__).resolve().parents[1]
H = 10
LOW, HIGH = torch.tensor([-2.0, 0.0]), torch.tensor([3.0, 0.5])  # deliberately not [-1, 1]
HALF = (HIGH - LOW) / 2


def smooth_targets() -> torch.Tensor:
    """Two environments' optimal sequences (2, H, 2): slow curves strictly inside the bounds."""
    t = torch.linspace(0, 1, H)[:, None]
    return torch.stack([LOW + (HIGH - LOW) * (0.5 + 0.3 * torch.sin(3 * t + torch.tensor([0.0, 1.0]))),
                        LOW + (HIGH - LOW) * (0.4 + 0.35 * torch.cos(2 * t + torch.tensor([0.5, 2.0])))])


def quadratic(targets):
    """Return of (P, K, H, A) candidates: minus the scaled squared distance to env p's target; optimum 0."""
    return lambda actions: -((actions - targets[:, None]) / HALF).pow(2).sum((-1, -2))


def planners():
    return [ICEM(H, 700, num_iterations=4, num_elites=10), ICEM(H, 700, num_iterations=4, return_mean=True),
            MPPI(H, 500, num_iterations=4, gamma=3.0, beta=0.3)]


PLANNER_IDS = ["icem", "icem_mean", "mppi"]


@pytest.mark.parametrize("planner", planners(), ids=PLANNER_IDS)
def test_quadratic_optimum_found_where_random_shooting_misses_it(planner):
    targets = smooth_targets()
    evaluate = quadratic(targets)
    gen = torch.Generator().manual_seed(0)
    plan = planner.optimize(evaluate, LOW, HIGH, 2, generator=gen)
    rs = RandomShooting(H, planner.evaluations_per_plan).optimize(evaluate, LOW, HIGH, 2, generator=gen)
    got, rs_got = evaluate(plan[:, None]).squeeze(1), evaluate(rs[:, None]).squeeze(1)
    assert plan.shape == (2, H, 2)
    assert (got > -0.5).all(), got  # both environments, each near its own optimum
    assert (rs_got < -0.5).all(), rs_got  # same evaluations, tolerance not reached
    assert ((plan - targets) / (HIGH - LOW)).abs().max() < 0.25


# Point mass s' = s + 0.1 a in 3-D with asymmetric bounds; reward -||s' - goal||^2 per step.
PM_LOW, PM_HIGH = torch.tensor([-1.0, -0.5, -2.0]), torch.tensor([0.5, 1.5, 1.0])
PM_GOAL = torch.tensor([0.3, 0.6, -0.9])
PM_TASK = Task(reward=lambda obs, act, nxt: -(nxt - PM_GOAL).pow(2).sum(-1))


def pm_step(obs, act):
    return obs + 0.1 * act


def pm_best_return(start: torch.Tensor, horizon: int) -> float:
    """Known optimum: the cost is separable per axis, so move each axis at its bound towards the goal, then stay."""
    s, total = start.clone(), 0.0
    for _ in range(horizon):
        s = s + 0.1 * torch.clamp((PM_GOAL - s) / 0.1, PM_LOW, PM_HIGH)
        total -= (s - PM_GOAL).pow(2).sum().item()
    return total


@pytest.mark.parametrize("planner", planners(), ids=PLANNER_IDS)
def test_point_mass_best_sequence_found_where_random_shooting_misses_it(planner):
    starts = torch.tensor([[0.0, 0.0, 0.0], [-0.4, 1.0, 0.2]])

    def evaluate(actions):
        return evaluate_sequences(pm_step, PM_TASK, starts, actions, ensemble_size=1)

    gen = torch.Generator().manual_seed(1)
    plan = planner.optimize(evaluate, PM_LOW, PM_HIGH, 2, generator=gen)
    rs = RandomShooting(H, planner.evaluations_per_plan).optimize(evaluate, PM_LOW, PM_HIGH, 2, generator=gen)
    best = torch.tensor([pm_best_return(s, H) for s in starts])
    random_mean = evaluate(PM_LOW + torch.rand(2, 500, H, 3, generator=gen) * (PM_HIGH - PM_LOW)).mean(1)
    got, rs_got = evaluate(plan[:, None]).squeeze(1), evaluate(rs[:, None]).squeeze(1)
    tolerance = 0.12 * (best - random_mean)  # of the way from a random sequence to the optimum
    assert (got <= best + 1e-4).all()  # nothing beats the optimum: the reference value is right
    assert (got > best - tolerance).all(), (got, best)
    assert (rs_got < best - tolerance).all(), (rs_got, best)


def spectrum(beta: float, horizon: int = 32) -> torch.Tensor:
    x = colored_noise(beta, (4000, 2), horizon, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2, horizon)
    assert torch.allclose(x.std(dim=(0, 1)), torch.ones(horizon), atol=0.06)  # unit variance at every step
    return torch.fft.rfft(x).abs().pow(2).mean((0, 1))  # power per frequency, 0 .. horizon / 2


def test_white_noise_has_flat_spectrum():
    power = spectrum(0.0)[1:]
    assert 0.85 < power[:8].sum() / power[8:].sum() < 1.15


def test_beta_two_puts_power_at_low_frequencies():
    power = spectrum(2.0)[1:]
    assert power[:8].sum() / power[8:].sum() > 10.0
    white = spectrum(0.0)[1:]
    assert power[:2].sum() / power.sum() > 4 * white[:2].sum() / white.sum()


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0])
def test_log_power_slope_is_minus_beta(beta):
    power = spectrum(beta)[1:-1]  # the Nyquist bin is real-only: leave it out
    freqs = torch.fft.rfftfreq(32)[1:-1]
    x, y = freqs.log(), power.log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum()
    assert abs(slope + beta) < 0.15, slope


def recording(evaluate, seen):
    def wrapped(actions):
        seen.append(actions.clone())
        return evaluate(actions)
    return wrapped


@pytest.mark.parametrize("gamma,pick", [(1e4, "argmax"), (1e-6, "mean")])
def test_mppi_weighting_between_argmax_and_plain_mean(gamma, pick):
    seen = []
    evaluate = quadratic(smooth_targets())
    plan = MPPI(H, 64, gamma=gamma).optimize(recording(evaluate, seen), LOW, HIGH, 2,
                                              generator=torch.Generator().manual_seed(0))
    (candidates,) = seen
    if pick == "argmax":
        want = candidates[torch.arange(2), evaluate(candidates).argmax(1)]
    else:
        want = candidates.mean(1)
    assert torch.allclose(plan, want, atol=1e-4)
    assert not torch.allclose(candidates.mean(1), candidates[torch.arange(2), evaluate(candidates).argmax(1)],
                              atol=1e-2)  # the two limits are far apart, so the check above tells them apart


@pytest.mark.parametrize("beta", [0.3, 1.0])
def test_mppi_noise_is_smoothed_by_beta(beta):
    seen, wide = [], torch.tensor([100.0])  # bounds far from the samples: nothing is clipped
    MPPI(H, 4000, beta=beta, sigma=0.01).optimize(recording(lambda a: a.sum((-1, -2)), seen), -wide, wide, 1,
                                                 generator=torch.Generator().manual_seed(0))
    noise = seen[0][0, :, :, 0]  # (K, H) around a zero mean
    lag1 = torch.corrcoef(torch.stack([noise[:, 4:-1].flatten(), noise[:, 5:].flatten()]))[0, 1]
    # n_t = beta u_t + (1 - beta) n_{t-1}: the lag-1 correlation tends to 1 - beta along the horizon
    assert abs(lag1 - (1 - beta)) < 0.05, lag1


def test_icem_plan_is_best_sequence_seen():
    seen, targets = [], smooth_targets()

    def evaluate(actions):  # later iterations score worse, so the best sequence seen is from the first
        return quadratic(targets)(actions) - 10.0 * len(seen)

    plan = ICEM(H, 100, num_iterations=3).optimize(recording(evaluate, seen), LOW, HIGH, 2,
                                                  generator=torch.Generator().manual_seed(0))
    first = seen[0]
    assert torch.equal(plan, first[torch.arange(2), quadratic(targets)(first).argmax(1)])


@pytest.mark.parametrize("planner", planners() + [MPPI(H, 200, sigma=3.0)], ids=PLANNER_IDS + ["mppi_wide"])
def test_candidates_and_plans_stay_inside_bounds(planner):
    seen = []

    def evaluate(actions):  # grows without limit above HIGH on axis 0 and below LOW on axis 1
        return ((actions - LOW) / (HIGH - LOW) * torch.tensor([10.0, -10.0])).sum((-1, -2))

    plan = planner.optimize(recording(evaluate, seen), LOW, HIGH, 3, generator=torch.Generator().manual_seed(0))
    for actions in [*seen, plan]:
        assert (actions >= LOW).all() and (actions <= HIGH).all()
    position = ((plan - LOW) / (HIGH - LOW)).mean(1)  # (P, A), 0 = at LOW, 1 = at HIGH
    assert (position[:, 0] > 0.7).all() and (position[:, 1] < 0.3).all(), position  # pushed to those edges


@pytest.mark.parametrize("planner", planners(), ids=PLANNER_IDS)
def test_same_seed_same_plan(planner):
    evaluate = quadratic(smooth_targets())
    plans = [planner.optimize(evaluate, LOW, HIGH, 2, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(plans[0], plans[1])
    assert not torch.equal(plans[0], plans[2])


def test_icem_population_decays_and_is_counted():
    seen = []
    evaluate = quadratic(smooth_targets())
    for planner, sizes in [(ICEM(H, 100, num_iterations=3, num_elites=10, decay=2.0), [100, 50, 25]),
                           (ICEM(H, 100, num_iterations=3, num_elites=20, decay=2.0), [100, 50, 40])]:
        seen.clear()
        planner.optimize(recording(evaluate, seen), LOW, HIGH, 2, generator=torch.Generator().manual_seed(0))
        assert [a.shape[1] for a in seen] == sizes  # decayed by 2 per iteration, never below 2 x num_elites
        assert planner.evaluations_per_plan == sum(sizes)


def test_icem_keeps_elites_between_iterations():
    seen = []
    evaluate = quadratic(smooth_targets())
    ICEM(H, 100, num_iterations=2, num_elites=10, keep_elites=0.3).optimize(
        recording(evaluate, seen), LOW, HIGH, 2, generator=torch.Generator().manual_seed(0))
    first, second = seen
    elites = first[torch.arange(2)[:, None], evaluate(first).topk(10, dim=1).indices]
    assert torch.equal(second[:, :3], elites[:, :3])  # the best 30 % of the elites, re-scored with the rest


def test_icem_warm_start_from_init_mean():
    targets = smooth_targets()
    evaluate = quadratic(targets)
    gen = torch.Generator().manual_seed(0)
    warm = ICEM(H, 50, num_iterations=1).optimize(evaluate, LOW, HIGH, 2, init_mean=targets, generator=gen)
    assert torch.allclose(warm, targets)  # the last iteration scores the mean itself: here the optimum
    cold = ICEM(H, 50, num_iterations=1, warm_start=False).optimize(evaluate, LOW, HIGH, 2, init_mean=targets,
                                                                   generator=gen)
    assert not torch.allclose(cold, targets, atol=0.05)


@pytest.mark.parametrize("kwargs,name", [
    ({"num_iterations": 0}, "num_iterations"), ({"num_elites": 0}, "num_elites"), ({"beta": -1.0}, "beta"),
    ({"decay": 0.9}, "decay"), ({"keep_elites": 1.5}, "keep_elites"), ({"momentum": 1.0}, "momentum"),
    ({"init_std": 0.0}, "init_std"), ({"horizon": 0}, "horizon"),
])
def test_icem_rejects_bad_arguments_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ICEM(**kwargs)


@pytest.mark.parametrize("kwargs,name", [
    ({"num_iterations": 0}, "num_iterations"), ({"gamma": 0.0}, "gamma"), ({"beta": 0.0}, "beta"),
    ({"beta": 1.5}, "beta"), ({"sigma": -1.0}, "sigma"), ({"num_sequences": 0}, "num_sequences"),
])
def test_mppi_rejects_bad_arguments_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MPPI(**kwargs)


@pytest.mark.parametrize("planner", [ICEM(5, 100, num_iterations=3, num_elites=10),
                                     MPPI(5, 200, gamma=100.0, beta=0.5, sigma=0.5)], ids=["icem", "mppi"])
def test_mpc_policy_drives_point_mass_to_goal(planner):
    """Closed loop with the shifted previous plan as each step's warm start, three environments at once."""
    policy = MPCPolicy(pm_step, 1, PM_TASK, planner, PM_LOW, PM_HIGH, max_envs=3)
    obs = torch.tensor([[0.0, 0.0, 0.0], [-0.4, 1.0, 0.2], [0.5, -0.5, 0.5]])
    policy.reset(torch.arange(3))
    for _ in range(25):
        obs = pm_step(obs, policy.act(obs, torch.arange(3)))
    assert (obs - PM_GOAL).norm(dim=-1).max() < 0.1  # from 1.1 to 2.0 away


@pytest.mark.parametrize("name,class_path", [("halfcheetah_icem", "mbrl_lightning.planning.ICEM"),
                                             ("halfcheetah_mppi", "mbrl_lightning.planning.MPPI")])
def test_planner_configs_parse(name, class_path, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mbrl_lightning", "fit", "--config",
                           str(ROOT / "configs" / "mpc" / f"{name}.yaml"), "--print_config"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"class_path: {class_path}" in proc.stdout and "env_id: mbrl/Cheetah-v0" in proc.stdout
