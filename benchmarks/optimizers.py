"""Return against model evaluations per action for random shooting, CEM, iCEM and MPPI on ``mbrl/Obstacles-v0``.

    python benchmarks/optimizers.py [--budgets 250 500 1000 2000 4000] [--episodes 50] [--horizon 10]

Every planner plans with the *true* dynamics (``obstacles_ceiling.true_step``, the env's move-or-stay rule), so the
return measures the optimiser alone. Each is given the same number of evaluated sequences per planned action
(``evaluations_per_plan``: K for random shooting, K x iterations for CEM and MPPI, the sum of the shrinking
populations for iCEM), H = 10 as in the brief's obstacles configs, and the same seeded random start states
(episode i is reset with seed + i, as ``mbrl_lightning.callbacks.Evaluate`` does). Prints one line per run
and a Markdown table: the mean episode return and, start by start, its gap below the best return over moves
on the 0.1 lattice (``obstacles_ceiling.lattice_optimum``), with the gap's standard error. The starts differ
a lot in how far they are from the goal; the paired gap removes that spread from the comparison.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from obstacles_ceiling import ENV_ID, lattice_optimum, true_step  # benchmarks/: the env's rule in torch

from mbrl_lightning.data import collect
from mbrl_lightning.envs import get_task, make
from mbrl_lightning.planning import CEM, ICEM, MPPI, ActionOptimizer, MPCPolicy, RandomShooting


class EpisodeReturn(gym.Wrapper):
    """Keeps the return of the env's current episode (``collect`` lists returns in the order episodes finish)."""

    def reset(self, **kwargs):
        self.episode_return = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += float(reward)
        return obs, reward, terminated, truncated, info


def icem_for_budget(budget: int, horizon: int, **kwargs) -> ICEM:
    """The iCEM with the largest first population whose decayed populations sum to at most ``budget``."""
    n = max(budget, kwargs.get("num_elites", 10))
    while n > kwargs.get("num_elites", 10) and ICEM(horizon, n, **kwargs).evaluations_per_plan > budget:
        n -= 1
    if ICEM(horizon, n, **kwargs).evaluations_per_plan > budget:
        raise ValueError(f"a budget of {budget} evaluations is too small for iCEM with {kwargs}")
    return ICEM(horizon, n, **kwargs)


def print_table(table: dict[str, dict[int, str]], budgets: list[int]) -> None:
    """A Markdown table: one row per planner, one column per budget (evaluations per action)."""
    print("| planner | " + " | ".join(f"{b}" for b in budgets) + " |")
    print("| --- |" + " --- |" * len(budgets))
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")


def planners(budget: int, horizon: int, cem_iterations: int = 4) -> dict[str, ActionOptimizer]:
    """The optimisers at ``budget`` evaluations per action; CEM as in the brief (4 iterations, 5 elites, a uniform
    first population) and with the shifted previous plan as its first mean, the warm start iCEM and MPPI use."""
    k, m = budget // cem_iterations, cem_iterations
    return {
        "random shooting": RandomShooting(horizon, budget),
        "CEM": CEM(horizon, k, num_iterations=m, num_elites=5, alpha=1.0, warm_start=False),
        "CEM, warm start": CEM(horizon, k, num_iterations=m, num_elites=5, alpha=1.0, warm_start=True),
        "iCEM": icem_for_budget(budget, horizon, num_iterations=4, num_elites=10, beta=2.0),
        "MPPI": MPPI(horizon, budget, num_iterations=1, gamma=10.0, beta=0.6, sigma=0.9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000],
                        help="model evaluations (scored sequences) per planned action")
    parser.add_argument("--episodes", type=int, default=50, help="seeded random start states")
    parser.add_argument("--seed", type=int, default=12345, help="first episode seed (Evaluate's)")
    parser.add_argument("--horizon", type=int, default=10)
    args = parser.parse_args()
    envs = [EpisodeReturn(make(ENV_ID)) for _ in range(args.episodes)]
    low, high = (torch.as_tensor(b) for b in (envs[0].action_space.low, envs[0].action_space.high))
    print(f"{ENV_ID}, true dynamics, H={args.horizon}, {args.episodes} start states from seed {args.seed}, "
          f"torch threads {torch.get_num_threads()}")
    starts = [env.reset(seed=args.seed + i)[0][:2].astype(np.float64) for i, env in enumerate(envs)]
    optimum = torch.tensor([lattice_optimum(p) for p in starts])
    print(f"optimum over 0.1-lattice moves from the same starts: {optimum.mean():.1f}")
    table: dict[str, dict[int, str]] = {}
    start = time.perf_counter()
    for budget in args.budgets:
        for name, optimizer in planners(budget, args.horizon).items():
            t0 = time.perf_counter()
            policy = MPCPolicy(true_step, 1, get_task(ENV_ID), optimizer, low, high, max_envs=args.episodes,
                               chunk_size=None)
            collect(envs, policy, num_episodes=args.episodes, seed=args.seed, progress=False)
            returns = torch.tensor([env.episode_return for env in envs])  # env i ran the episode of seed + i
            gap = optimum - returns  # paired by start state: how far below the lattice optimum
            cell = f"{returns.mean():.1f} ({gap.mean():.2f} ± {gap.std() / len(gap) ** 0.5:.2f})"
            table.setdefault(name, {})[budget] = cell
            print(f"{name:>16}, {optimizer.evaluations_per_plan:5d} evaluations per action: return (gap) {cell}, "
                  f"{time.perf_counter() - t0:.1f} s")
    print(f"total {time.perf_counter() - start:.0f} s\n")
    print("return (gap below the lattice optimum ± its standard error), by evaluations per action\n")
    print_table(table, args.budgets)
    print(f"| optimum (0.1 lattice) | {optimum.mean():.1f} |" + " |" * (len(args.budgets) - 1))


if __name__ == "__main__":
    main()
