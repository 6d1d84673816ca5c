"""Planners and PETS propagation on a *learned* model of ``mbrl/Obstacles-v0``, at equal sequences per action.

    python benchmarks/planners_learned.py [--budget 1000] [--episodes 10] [--data 5000] [--train-steps 2000]

One probabilistic ensemble (``loss: nll``, 5 members, 2 x 128) is trained on random transitions (seeded); then
every planner plans with it on the same seeded start states (episode i from seed + i, as ``Evaluate``):
random shooting, CEM (the brief's: 4 iterations, 5 elites, uniform first population), iCEM and MPPI, all with
mean propagation (each member steps its mean), and CEM with PETS' TS-inf and TS1 (10 particles, 2 per member,
sampled from the learned Gaussians). Every planner scores ``--budget`` sequences per action; PETS' particles cost
P / E times the model steps of one sequence, printed beside. Also printed: the share of moves the env rejected
(into an obstacle or out of the square: the position stays), which shows a planner exploiting walls the model
has not learned. Prints one line per planner and a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch
from optimizers import EpisodeReturn, icem_for_budget  # benchmarks/

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.data import RandomPolicy, collect
from mbrl_lightning.envs import get_task, make
from mbrl_lightning.planning import CEM, MPPI, RandomShooting

ENV_ID = "mbrl/Obstacles-v0"


def train(data: dict[str, torch.Tensor], steps: int, seed: int) -> MPCAgent:
    """The shared model: Adam on independent member minibatches of the random data, as the DataModule does."""
    g = torch.Generator().manual_seed(seed)
    agent = MPCAgent(4, 2, ensemble_size=5, hidden_size=128, num_layers=2, loss="nll", lr=1e-3)
    agent.fit_normalizers(data)
    opt = agent.configure_optimizers()
    n = data["obs"].shape[0]
    for _ in range(steps):
        idx = torch.randint(n, (5, 256), generator=g)
        loss = agent.member_losses({k: v[idx] for k, v in data.items()})[0].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return agent.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=1000, help="scored sequences per planned action")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12345, help="first episode seed (Evaluate's)")
    parser.add_argument("--data", type=int, default=5000, help="random transitions to train on")
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--horizon", type=int, default=10)
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)
    env = make(ENV_ID)
    low, high = (torch.as_tensor(b) for b in (env.action_space.low, env.action_space.high))
    t0 = time.perf_counter()
    data = collect([env], RandomPolicy(low, high, seed=1), num_steps=args.data, seed=1, progress=False).transitions
    model = train(data, args.train_steps, seed=2)
    print(f"{ENV_ID}: nll ensemble 5 x (2 x 128) trained {args.train_steps} steps on {args.data} random transitions "
          f"({time.perf_counter() - t0:.0f} s); H={args.horizon}, {args.budget} sequences per action, "
          f"{args.episodes} start states from seed {args.seed}, torch threads {torch.get_num_threads()}")
    h, b = args.horizon, args.budget
    cem = CEM(h, b // 4, num_iterations=4, num_elites=5, alpha=1.0, warm_start=False)
    runs = {
        "random shooting": (RandomShooting(h, b), "mean", None),
        "CEM": (cem, "mean", None),
        "iCEM": (icem_for_budget(b, h, num_iterations=4, num_elites=10, beta=2.0), "mean", None),
        "MPPI": (MPPI(h, b, num_iterations=1, gamma=10.0, beta=0.6, sigma=0.9), "mean", None),
        "CEM + PETS TS-inf (P = 10)": (cem, "ts_inf", 10),
        "CEM + PETS TS1 (P = 10)": (cem, "ts1", 10),
    }
    envs = [EpisodeReturn(make(ENV_ID)) for _ in range(args.episodes)]
    rows = []
    for name, (planner, propagation, particles) in runs.items():
        agent = MPCAgent(4, 2, planner=planner, ensemble_size=5, hidden_size=128, num_layers=2, loss="nll",
                         propagation=propagation, num_particles=particles, bf16=False)  # float32, as docs/ quotes it
        agent.load_state_dict(model.state_dict())
        agent.eval()
        policy = agent.mpc_policy(get_task(ENV_ID), low, high, max_envs=args.episodes, seed=0)
        t0 = time.perf_counter()
        moves = collect(envs, policy, num_episodes=args.episodes, seed=args.seed, progress=False).transitions
        returns = torch.tensor([e.episode_return for e in envs])
        # a move the env rejected (into a wall or out of the square) leaves the position as it was
        stuck = (moves["next_obs"][:, :2] == moves["obs"][:, :2]).all(-1).float().mean().item()
        steps = planner.evaluations_per_plan * h * (particles or 5)  # member model steps per planned action
        cell = f"{returns.mean():.1f} ± {returns.std() / len(returns) ** 0.5:.1f}"
        rows.append((name, planner.evaluations_per_plan, steps, cell, stuck))
        print(f"{name:>28}: return {cell} (± standard error), {planner.evaluations_per_plan} sequences and {steps} "
              f"member steps per action, {100 * stuck:.0f} % of moves rejected, {time.perf_counter() - t0:.0f} s")
    print("\n| planner | sequences per action | member model steps per action | return ± s.e. | moves rejected |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seqs, steps, cell, stuck in rows:
        print(f"| {name} | {seqs} | {steps} | {cell} | {100 * stuck:.0f} % |")


if __name__ == "__main__":
    main()
