"""Planning speed on the cheetah shapes, beside the device's measured float32 matmul throughput.

    python benchmarks/planning.py [--device cpu|cuda] [--envs 1 10] [--repeats 5] [--chunk-sizes -1 0 256 ...]

Prints, for random shooting (K=1000, H=15, E=3, 2x250 MLP) and CEM (4 iterations), seconds per planned
action, model-step evaluations per second (K x H x E x CEM iterations / time) and achieved GFLOP/s as a
fraction of the best batched-matmul GFLOP/s measured in the same run (the machine's practical limit).
``--chunk-sizes`` compares how many candidate rows are rolled out at once (-1: the device default, 0: all).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.envs import get_task
from mbrl_lightning.planning import CEM, RandomShooting

OBS, ACT, HIDDEN, E = 21, 6, 250, 3


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_limit(device: torch.device, repeats: int) -> float:
    """Best float32 GFLOP/s of a (E, N, 250) x (E, 250, 250) batched matmul over a few N."""
    best = 0.0
    for n in (256, 512, 1024, 4096, 30000):
        a = torch.randn(E, n, HIDDEN, device=device)
        w = torch.randn(E, HIDDEN, HIDDEN, device=device)
        torch.bmm(a, w)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats * 4):
            torch.bmm(a, w)
        sync(device)
        best = max(best, 2 * E * n * HIDDEN * HIDDEN * repeats * 4 / (time.perf_counter() - start) / 1e9)
    return best


def flop_per_model_step() -> int:
    """Multiply-adds x 2 of one member's MLP on one (s, a) row."""
    return 2 * ((OBS + ACT) * HIDDEN + HIDDEN * HIDDEN + HIDDEN * OBS)


def time_planner(planner, num_envs: int, device: torch.device, repeats: int, chunk_size: int | None,
                 bf16: bool = False) -> float:
    agent = MPCAgent(OBS, ACT, planner=planner, ensemble_size=E, hidden_size=HIDDEN, num_layers=2,
                     chunk_size=chunk_size, bf16=bf16).to(device).eval()
    policy = agent.mpc_policy(get_task("mbrl/Cheetah-v0"), -torch.ones(ACT), torch.ones(ACT), num_envs)
    obs = torch.randn(num_envs, OBS)
    idx = torch.arange(num_envs)
    policy.act(obs, idx)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        policy.reset(idx)  # plan from scratch every time (no warm start), as at an episode's first step
        policy.act(obs, idx)
    sync(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[-1])
    parser.add_argument("--bf16", action="store_true", help="also time bfloat16 planning (MPCAgent bf16=True)")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    limit = matmul_limit(device, args.repeats)
    print(f"measured float32 batched-matmul limit: {limit:.1f} GFLOP/s")
    print(f"{'planner':<22}{'envs':>5}{'chunk':>10}{'s/action':>10}{'model steps/s':>15}{'GFLOP/s':>9}{'of limit':>9}")
    for label, planner in (("random shooting", RandomShooting(15, 1000)),
                           ("CEM (4 iterations)", CEM(15, 1000, num_iterations=4, num_elites=5))):
        for p in args.envs:
            for chunk, bf16 in [(c, False) for c in args.chunk_sizes] + ([(-1, True)] if args.bf16 else []):
                seconds = time_planner(planner, p, device, args.repeats, None if chunk == 0 else chunk, bf16)
                steps = planner.evaluations_per_plan * planner.horizon * E * p
                gflops = steps * flop_per_model_step() / seconds / 1e9
                name = {-1: "auto", 0: "all"}.get(chunk, str(chunk)) + (" bf16" if bf16 else "")
                print(f"{label:<22}{p:>5}{name:>10}{seconds / p:>10.4f}{steps / seconds:>15.3g}{gflops:>9.1f}"
                      f"{gflops / limit:>9.0%}")


if __name__ == "__main__":
    main()
