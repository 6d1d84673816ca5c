"""Return against model evaluations per action for every planner, on the model of a finished MPC run.

    python benchmarks/planners_checkpoint.py \
        --checkpoint results/halfcheetah_multi_iter/version_0/checkpoints/last.ckpt \
        [--env mbrl/Cheetah-v0] [--budgets 250 1000] [--episodes 5] [--horizon 15] [--precisions float32 bf16]

The checkpoint's ensemble (weights and normalisers, as ``fit`` saved them: run the run's config first, e.g.
``configs/mpc/halfcheetah_multi_iter.yaml``) plans for random shooting, CEM (the brief's: 4 iterations, 5 elites,
a uniform first population), CEM with a warm start, iCEM and MPPI (``benchmarks/optimizers.planners``), each at
the same number of scored sequences per planned action, with the run's propagation (e.g. PETS' TS-inf) and
learned reward/termination where it had them, on the same seeded start states
(episode i from ``--seed`` + i, as ``Evaluate``). The model is fixed: this compares the optimisers on one learned
model, not the runs that each planner would have produced. ``--precisions float32 bf16`` plans each in both
precisions on the same starts: bf16's effect on the return. Prints one line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import pytorch_lightning as pl
import torch
from optimizers import EpisodeReturn, planners, print_table  # benchmarks/

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.data import collect
from mbrl_lightning.envs import find_task, make

MODEL_ARGS = ("obs_dim", "act_dim", "ensemble_size", "hidden_size", "num_layers", "activation", "loss",
              "learn_reward", "learn_termination", "propagation", "num_particles", "discount")


def load_model(path: str) -> tuple[dict, dict]:
    """The checkpoint's model arguments (those that shape the network) and its state dict."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "planner" not in ckpt:  # MPCAgent.on_save_checkpoint writes it; MBPO/SAC/model-only checkpoints lack it
        raise ValueError(f"{path} is not an MPCAgent checkpoint (no planner state); this benchmark needs one")
    hp = ckpt["hyper_parameters"]
    args = {k: hp[k] for k in MODEL_ARGS if k in hp}
    args.setdefault("learn_reward", False)  # checkpoints from before the learned heads had none
    args.setdefault("learn_termination", False)
    return args, ckpt["state_dict"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an MPCAgent checkpoint (e.g. a run's last.ckpt)")
    parser.add_argument("--env", default="mbrl/Cheetah-v0", help="the env the checkpoint's run trained on")
    parser.add_argument("--budgets", type=int, nargs="+", default=[250, 1000],
                        help="model evaluations (scored sequences) per planned action")
    parser.add_argument("--episodes", type=int, default=5, help="seeded start states")
    parser.add_argument("--seed", type=int, default=12345, help="first episode seed (Evaluate's)")
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--cem-iterations", type=int, default=4,
                        help="CEM's iterations; each scores budget / iterations sequences (the brief: 4, or 2)")
    parser.add_argument("--planners", nargs="+", help="only these (names as printed, e.g. 'random shooting')")
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=["float32", "bf16"],
                        help="plan in each (MPCAgent bf16): 'float32 bf16' measures bf16's effect on the return")
    parser.add_argument("--env-kwargs", type=json.loads, default={},
                        help='JSON keyword arguments of the env, e.g. \'{"fixed_target": [0.1, 0.1, 0.1]}\'')
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)
    model_args, state = load_model(args.checkpoint)
    envs = [EpisodeReturn(make(args.env, **args.env_kwargs)) for _ in range(args.episodes)]
    low, high = (torch.as_tensor(b) for b in (envs[0].action_space.low, envs[0].action_space.high))
    print(f"{args.env} {args.env_kwargs or ''}: model of {args.checkpoint} ({model_args}); H={args.horizon}, "
          f"{args.episodes} start states from seed {args.seed}, CEM {args.cem_iterations} iterations, "
          f"torch threads {torch.get_num_threads()}")
    table: dict[str, dict[int, str]] = {}
    start = time.perf_counter()
    for budget in args.budgets:
        for (name, optimizer), precision in itertools.product(
                planners(budget, args.horizon, args.cem_iterations).items(), args.precisions):
            if args.planners and name not in args.planners:
                continue
            if len(args.precisions) > 1:
                name = f"{name}, {precision}"
            agent = MPCAgent(planner=optimizer, bf16=precision == "bf16", **model_args)
            agent.load_state_dict(state)
            policy = agent.eval().mpc_policy(find_task(args.env), low, high, max_envs=args.episodes, seed=0)
            t0 = time.perf_counter()
            collect(envs, policy, num_episodes=args.episodes, seed=args.seed, progress=False)
            returns = torch.tensor([env.episode_return for env in envs])  # env i ran the episode of seed + i
            cell = f"{returns.mean():.1f} ± {returns.std() / len(returns) ** 0.5:.1f}"
            table.setdefault(name, {})[budget] = cell
            print(f"{name:>16}, {optimizer.evaluations_per_plan:5d} evaluations per action: return {cell} "
                  f"(± standard error; episodes {[round(r, 1) for r in returns.tolist()]}), "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s\n")
    print("return ± standard error, by evaluations per action\n")
    print_table(table, args.budgets)


if __name__ == "__main__":
    main()
