"""Stable-Baselines3's SAC with the settings of ``configs/mbpo/hopper_sac.yaml``: the reference that tells whether
our SAC or the published SAC curve's setup explains the gap to that curve (issue 29; docs/standard_tasks.md).

    pip install stable-baselines3==2.9.0   # it needs a recent torch: a venv with --system-site-packages keeps ours
    OMP_NUM_THREADS=1 python benchmarks/sb3_sac.py --seed 0 --steps 60000
    OMP_NUM_THREADS=1 python benchmarks/sb3_sac.py --seed 0 --steps 50000 --block

The settings are ours, not SB3's zoo's: gymnasium's own observation (11 numbers on Hopper-v5, as both Hopper
configs), 5000 uniform random steps first, batch 256, 2 x 256 networks, lr 3e-4 for actor, critics and temperature,
learned temperature from 1.0 with target entropy -act_dim, tau 0.005, discount 0.99, a buffer of 1e6. Updates: one
per env step (SAC's usual schedule), or with ``--block`` 1000 updates after each 1000 env steps, the first 1000 on
the random steps alone, as our block collection (``CollectOnPolicy``) does. Evaluation as ``Evaluate`` does it:
the deterministic policy on ``--episodes`` whole episodes with reset seeds 12345 + i, every ``--eval-every`` env
steps, once the updates on those steps are done. What still differs from our SAC: SB3 clamps the actor's log-std to
[-20, 2] (ours squashes it smoothly into [-5, 2]) and halves its critic loss, and its episodes run on across blocks
where ``CollectOnPolicy`` starts fresh ones each iteration. Prints one line per evaluation and a table at the end;
``--csv`` saves it.
"""

from __future__ import annotations

import argparse
import csv
import time

import gymnasium as gym
import numpy as np
import torch

EVAL_SEED = 12345  # mbrl_lightning.callbacks.Evaluate's default: episode i starts from reset(seed=12345 + i)


def evaluate(policy, env_id: str, episodes: int) -> tuple[float, float]:
    """Mean and std (over episodes) of the deterministic policy's return."""
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        done, total = False, 0.0
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60000, help="env steps in all, the random ones included")
    parser.add_argument("--random-steps", type=int, default=5000)
    parser.add_argument("--block", action="store_true", help="collect 1000 env steps, then update 1000 times")
    parser.add_argument("--eval-every", type=int, default=10000)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default=None, help="write env steps, mean and std of the return here")
    args = parser.parse_args()
    if args.eval_every <= 0 or args.steps <= args.random_steps:
        parser.error("--eval-every must be positive and --steps larger than --random-steps")
    if args.block and (args.eval_every % 1000 or args.steps % 1000 or args.random_steps % 1000):
        parser.error("--block updates after every 1000 env steps: --eval-every, --steps and --random-steps must be "
                     "multiples of 1000")
    try:
        from stable_baselines3 import SAC
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError as e:
        raise SystemExit("this benchmark needs Stable-Baselines3: pip install stable-baselines3==2.9.0") from e
    import stable_baselines3

    torch.set_num_threads(args.threads)
    rows: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    class EvalAfterUpdates(BaseCallback):
        """Evaluates when a rollout starts, i.e. after the updates on every env step collected so far."""

        def _on_rollout_end(self) -> None:
            # SB3 first trains once num_timesteps > learning_starts, so in blocks the 1000 updates on the random
            # steps alone would be skipped: ours makes them (its first iteration), so make them here
            if args.block and self.num_timesteps == args.random_steps:
                self.model.train(gradient_steps=1000, batch_size=self.model.batch_size)

        def _on_rollout_start(self) -> None:
            n = self.num_timesteps
            if n > args.random_steps and n % args.eval_every == 0 and (not rows or rows[-1][0] != n):
                rows.append((n, *evaluate(self.model, args.env, args.episodes)))
                print(f"env steps {n} | eval return {rows[-1][1]:.1f} ± {rows[-1][2]:.1f} | "
                      f"{time.perf_counter() - start:.0f} s", flush=True)

        def _on_step(self) -> bool:
            return True

    every = (1000, "step") if args.block else 1
    sac = SAC("MlpPolicy", gym.make(args.env), learning_rate=3e-4, buffer_size=1_000_000,
              learning_starts=args.random_steps, batch_size=256, tau=0.005, gamma=0.99, train_freq=every,
              gradient_steps=1000 if args.block else 1, ent_coef="auto_1.0", target_entropy="auto",
              policy_kwargs={"net_arch": [256, 256]}, seed=args.seed, device="cpu", verbose=0)
    callback = EvalAfterUpdates()
    sac.learn(total_timesteps=args.steps, callback=callback)
    callback._on_rollout_start()  # the updates on the last steps are done: the last evaluation
    mode = "1000 env steps then 1000 updates" if args.block else "one update per env step"
    print(f"\nStable-Baselines3 {stable_baselines3.__version__} SAC on {args.env}, seed {args.seed}, {mode}, "
          f"{args.episodes} deterministic episodes per evaluation, {time.perf_counter() - start:.0f} s, "
          f"{args.threads} thread(s)\n")
    print("| env steps | return |\n| ---: | ---: |")
    for n, mean, std in rows:
        print(f"| {n} | {mean:.1f} ± {std:.1f} |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([("env_steps", "return_mean", "return_std"), *rows])


if __name__ == "__main__":
    main()
