"""Returns of the two policies any learned agent must beat: uniform random actions and all-zero actions.

    python benchmarks/baselines.py --env mbrl/Reacher7DOF-v0 --episodes 10

Uses the same episode seeds as ``mbrl_lightning.callbacks.Evaluate`` (12345 + i), so the numbers sit
beside a run's eval/return on the same start states.
"""

from __future__ import annotations

import argparse

import torch

from mbrl_lightning.data import RandomPolicy, collect
from mbrl_lightning.envs import make


class ZeroPolicy:
    def __init__(self, act_dim: int) -> None:
        self.act_dim = act_dim

    def act(self, obs: torch.Tensor, env_idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], self.act_dim)

    def reset(self, env_idx: torch.Tensor) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mbrl/Reacher7DOF-v0")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    envs = [make(args.env) for _ in range(args.episodes)]
    space = envs[0].action_space
    low, high = torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
    for name, policy in (("random", RandomPolicy(low, high, seed=args.seed)), ("zero", ZeroPolicy(low.shape[0]))):
        returns = torch.tensor(collect(envs, policy, num_episodes=args.episodes, seed=args.seed,
                                       progress=False).returns)
        print(f"{args.env} {name:>6} policy over {args.episodes} episodes: return {returns.mean():.1f} "
              f"± {returns.std(unbiased=False):.1f} (min {returns.min():.1f}, max {returns.max():.1f})")


if __name__ == "__main__":
    main()
