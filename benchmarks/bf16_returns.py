"""bf16's effect on the return, paired: each trained model plans the same start states in float32 and in bf16.

    python benchmarks/bf16_returns.py --runs runs/obstacles_multi_iter/version_0 runs/obstacles_multi_iter/version_1 \
        [--episodes 20] [--seed 12345] [--threads 1]

Each ``--runs`` folder is a finished MPC run (its ``config.yaml`` and ``checkpoints/last.ckpt``). Its model, with the
run's own planner and env, plans ``--episodes`` seeded start states (episode i from ``--seed`` + i, as
``Evaluate``) once with float32 matmuls and once with bfloat16 ones (``MPCAgent`` ``bf16``), with the same planner
seed, so the two precisions differ only in their arithmetic. Per run: both mean returns and the paired difference
(bf16 - float32 on the same start) ± its standard error; then all runs pooled. This is what decides whether
``bf16: auto`` can be the default (issue 32): a difference inside its noise costs nothing measurable.
It also prints seconds per planned action of each precision. Time it on a CPU with native bf16 (AVX512-BF16/AMX):
elsewhere bf16 is emulated and some 30x slower.
"""

from __future__ import annotations

import argparse
import importlib
import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from optimizers import EpisodeReturn  # benchmarks/
from planners_checkpoint import load_model  # benchmarks/

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.data import collect
from mbrl_lightning.envs import find_task, make
from mbrl_lightning.planning.optimizers import ActionOptimizer
from mbrl_lightning.precision import cpu_has_bf16

PRECISIONS = ("float32", "bf16")


def run_settings(run: Path) -> tuple[str, dict, ActionOptimizer]:
    """The run's env id, env keyword arguments and planner, as its ``config.yaml`` gives them."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    data = config["data"]["init_args"]
    spec = config["model"]["init_args"].get("planner")
    if spec is None:
        raise ValueError(f"{run}/config.yaml names no planner: is it an MPC run?")
    module, name = spec["class_path"].rsplit(".", 1)
    planner = getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))
    return data["env_id"], data.get("env_kwargs") or {}, planner


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else math.nan


def evaluate(run: Path, precision: str, episodes: int, seed: int) -> tuple[torch.Tensor, float]:
    """Returns of the ``episodes`` seeded starts (in seed order) and seconds per planned action (env step)."""
    env_id, env_kwargs, planner = run_settings(run)
    model_args, state = load_model(str(run / "checkpoints" / "last.ckpt"))
    agent = MPCAgent(planner=planner, bf16=precision == "bf16", **model_args)
    agent.load_state_dict(state)
    envs = [EpisodeReturn(make(env_id, **env_kwargs)) for _ in range(episodes)]
    low, high = (torch.as_tensor(b) for b in (envs[0].action_space.low, envs[0].action_space.high))
    policy = agent.eval().mpc_policy(find_task(env_id), low, high, max_envs=episodes, seed=0)
    t0 = time.perf_counter()
    rollouts = collect(envs, policy, num_episodes=episodes, seed=seed, progress=False)
    seconds = (time.perf_counter() - t0) / max(rollouts.num_steps, 1)  # the envs act in one batch: per env step
    return torch.tensor([env.episode_return for env in envs]), seconds  # env i ran the episode of seed + i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="finished MPC run folders")
    parser.add_argument("--episodes", type=int, default=20, help="seeded start states per run")
    parser.add_argument("--seed", type=int, default=12345, help="first episode seed (Evaluate's)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    print(f"{len(args.runs)} runs, {args.episodes} start states each from seed {args.seed}, {args.threads} thread(s), "
          f"torch {torch.__version__}, native bf16: {cpu_has_bf16()}")
    rows, diffs = [], []
    for run in args.runs:
        returns, seconds = {}, {}
        for precision in PRECISIONS:
            returns[precision], seconds[precision] = evaluate(run, precision, args.episodes, args.seed)
        diff = returns["bf16"] - returns["float32"]
        diffs.append(diff)
        cells = [f"{mean_se(returns[p])[0]:.2f}" for p in PRECISIONS] + ["{:+.2f} ± {:.2f}".format(*mean_se(diff))]
        cells += [f"{seconds[p]:.4f}" for p in PRECISIONS]
        rows.append((str(run), cells))
        for precision in PRECISIONS:
            print(f"{run} {precision}: {[round(r, 2) for r in returns[precision].tolist()]}", flush=True)
    pooled = torch.cat(diffs)
    per_run = torch.stack([d.mean() for d in diffs])
    print("\n| run | float32 return | bf16 return | bf16 - float32 (paired, ± s.e.) | s / action float32 | "
          "s / action bf16 |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, cells in rows:
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    print("\npooled over {} runs x {} starts: bf16 - float32 = {:+.2f} ± {:.2f} (s.e. over all pairs); "
          "over run means {:+.2f} ± {:.2f}".format(len(diffs), args.episodes, *mean_se(pooled), *mean_se(per_run)))


if __name__ == "__main__":
    main()
