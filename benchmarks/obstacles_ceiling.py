"""What the brief's planner can reach on ``mbrl/Obstacles-v0`` with no model error, and the env's optimum.

    python benchmarks/obstacles_ceiling.py --episodes 20

Plans with the *true* dynamics (the env's own move-or-stay rule, in torch) in place of the learned ensemble,
with the same optimizer settings as ``configs/mpc/obstacles_multi_iter.yaml`` (random shooting, K = 1000,
H = 10) and the same evaluation seeds (random starts) as ``mbrl_lightning.callbacks.Evaluate``. A learned
agent's return sits at or below this ceiling; the gap to the optimum is the planner's. The optimum is the best
return over moves on the 0.1 lattice from each episode's start (a Dijkstra search; continuous moves can do
slightly better), averaged over the same starts.
"""

from __future__ import annotations

import argparse
import heapq
import itertools

import numpy as np
import torch
from torch import Tensor

from mbrl_lightning.data import RandomPolicy, collect
from mbrl_lightning.envs import get_task, make
from mbrl_lightning.envs.obstacles import BOUNDARY, GOAL, GOAL_RADIUS, OBSTACLES, STEP_SCALE, is_valid
from mbrl_lightning.planning import CEM, MPCPolicy, RandomShooting

ENV_ID = "mbrl/Obstacles-v0"


def true_step(obs: Tensor, act: Tensor) -> Tensor:
    """The env's dynamics for any batch shape: move by clip(a) / 10 unless that leaves the open square or ends
    strictly inside an obstacle."""
    pos = obs[..., :2]
    proposal = pos + STEP_SCALE * act.clamp(-1.0, 1.0)
    box = torch.as_tensor(OBSTACLES, dtype=obs.dtype, device=obs.device)  # (x_min, x_max, y_min, y_max)
    x, y = proposal[..., None, 0], proposal[..., None, 1]
    inside = ((x > box[:, 0]) & (x < box[:, 1]) & (y > box[:, 2]) & (y < box[:, 3])).any(-1)
    blocked = inside | (proposal.abs() >= BOUNDARY).any(-1)
    new_pos = torch.where(blocked[..., None], pos, proposal)
    return torch.cat([new_pos, obs[..., 2:]], dim=-1)


def lattice_optimum(start: np.ndarray, max_steps: int = 100) -> float:
    """Best return from ``start`` over 8-neighbour moves of 0.1 (cost of a step: the distance after it)."""
    moves = [m for m in itertools.product((-1, 0, 1), repeat=2) if m != (0, 0)]
    best = {(0, 0): 0.0}
    queue = [(0.0, (0, 0))]
    while queue:
        cost, ij = heapq.heappop(queue)
        if cost > best[ij]:
            continue
        if ij != (0, 0) and np.linalg.norm(start + STEP_SCALE * np.array(ij) - GOAL) < GOAL_RADIUS:
            return -cost
        for m in moves:
            nij = (ij[0] + m[0], ij[1] + m[1])
            pos = start + STEP_SCALE * np.array(nij)
            if not is_valid(pos):
                continue
            new_cost = cost + float(np.linalg.norm(pos - GOAL))
            if new_cost < best.get(nij, np.inf):
                best[nij] = new_cost
                heapq.heappush(queue, (new_cost, nij))
    raise RuntimeError(f"goal unreachable on the lattice from {start}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12345, help="first episode seed (Evaluate's)")
    parser.add_argument("--num-sequences", type=int, default=1000)
    parser.add_argument("--horizon", type=int, nargs="+", default=[10])
    args = parser.parse_args()
    torch.manual_seed(0)
    envs = [make(ENV_ID) for _ in range(args.episodes)]
    space = envs[0].action_space
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    starts = [env.reset(seed=args.seed + i)[0][:2].astype(np.float64) for i, env in enumerate(envs)]
    optimum = np.array([lattice_optimum(p) for p in starts])
    print(f"{ENV_ID}: optimum over lattice moves {optimum.mean():.2f} ± {optimum.std():.2f} "
          f"over the {args.episodes} start states")
    rand = torch.tensor(collect(envs, RandomPolicy(low, high, seed=0), num_episodes=args.episodes, seed=args.seed,
                                progress=False).returns)
    print(f"random policy: return {rand.mean():.2f} ± {rand.std(unbiased=False):.2f}")
    for horizon in args.horizon:
        for name, optimizer in (("random shooting", RandomShooting(horizon, args.num_sequences)),
                                ("CEM, 4 iterations", CEM(horizon, args.num_sequences, num_iterations=4,
                                                          num_elites=5, alpha=1.0)),
                                ("CEM, 4 iterations, warm start", CEM(horizon, args.num_sequences, num_iterations=4,
                                                                      num_elites=5, alpha=1.0, warm_start=True))):
            torch.manual_seed(0)
            policy = MPCPolicy(true_step, 1, get_task(ENV_ID), optimizer, low, high, max_envs=args.episodes)
            returns = torch.tensor(collect(envs, policy, num_episodes=args.episodes, seed=args.seed,
                                           progress=False).returns)
            print(f"true dynamics, {name}, K={args.num_sequences}, H={horizon}: return {returns.mean():.2f} "
                  f"± {returns.std(unbiased=False):.2f} over {args.episodes} episodes "
                  f"(min {returns.min():.2f}, max {returns.max():.2f})")


if __name__ == "__main__":
    main()
