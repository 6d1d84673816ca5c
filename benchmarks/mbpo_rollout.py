"""Wall time of MBPO's branched model rollouts at the Hopper config's size (configs/mbpo/hopper.yaml: 7 members of
4 x 200 SiLU, nll, learned reward, 5 elites, one random elite per transition), untrained weights.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/mbpo_rollout.py --starts 100000 --length 1 3

Prints seconds per rollout round and model rows per second (one row = one transition of one start).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from mbrl_lightning.agents import MBPO
from mbrl_lightning.models import DynamicsEnsemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=100_000)
    parser.add_argument("--length", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    obs_dim, act_dim = 11, 3  # Hopper-v5
    dynamics = partial(DynamicsEnsemble, ensemble_size=7, hidden_size=200, num_layers=4, activation="silu",
                       loss="nll", learn_reward=True)
    agent = MBPO(obs_dim, act_dim, dynamics=dynamics, model_sampling="random", num_elites=5, hidden_size=256,
                 num_layers=2).eval()
    starts = torch.randn(args.starts, obs_dim) * 0.1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.starts} starts")
    for length in args.length:
        agent.rollout(starts[:1000], length)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rows = agent.rollout(starts, length)["obs"].shape[0]
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(f"L={length}: {best:.2f} s per round (best of {args.repeats}), {rows} rows, {rows / best:,.0f} rows/s")


if __name__ == "__main__":
    main()
