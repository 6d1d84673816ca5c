"""Planning speed on the cheetah shapes, beside the same run's measured matmul rate on the same shapes.

    python benchmarks/planning.py [--device cpu|cuda] [--threads 1 2] [--envs 1 10] [--repeats 5]
                                  [--chunk-sizes -1 0 256 ...] [--bf16] [--before] [--profile]

For random shooting (K=1000, H=15, E=3, 2x250 MLP) and CEM (4 iterations), at each thread count
(``torch.set_num_threads``): seconds per planned action, model steps per second (K x H x E x CEM iterations /
time), achieved model GFLOP/s, and that as a fraction of the matmul rate measured on the same shapes in the same
run (the same work of the model's three layer matmuls at the rollout's chunk of rows, float32 or bf16 alike: the
practical limit of a matmul-bound rollout). Planner and matmul timings alternate; rates are the best of each and
the fraction is the median of the paired ratios, so a machine shared with other work still gives a meaningful
one. The reference is the model's unpadded shapes (27 -> 250 -> 250 -> 21) in bare ``bmm`` calls, the same code
for both precisions; the folded step's zero-padded widths (28 -> 256 -> 256 -> 21) run faster per useful FLOP
than that (more so in bfloat16), so the fraction is not capped at 100 %. ``--before`` adds rows for the unfolded step
(``predict_next``), ``--bf16`` bfloat16 rows at the same ``--chunk-sizes`` (-1: each precision's default;
emulated, hence slow, on CPUs without AVX512-BF16/AMX), ``--profile`` a torch.profiler table of one folded
random-shooting action per thread count and precision, for the largest ``--envs`` (what the time goes to besides
the matmuls).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.envs import get_task
from mbrl_lightning.planning import CEM, MPCPolicy, RandomShooting
from mbrl_lightning.planning.rollout import default_chunk_size
from mbrl_lightning.precision import cpu_has_bf16

OBS, ACT, HIDDEN, E = 21, 6, 250, 3
WIDTHS = (OBS + ACT, HIDDEN, HIDDEN, OBS)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def flop_per_model_step() -> int:
    """Multiply-adds x 2 of one member's MLP on one (s, a) row."""
    return 2 * sum(a * b for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True))


def matmul_chain(rows: int, dtype: torch.dtype, device: torch.device, calls: int = 20):
    """A function running ``calls`` times the model's bare layer matmuls (E, rows, 27 -> 250 -> 250 -> 21; no bias,
    no activation), and its FLOP: what a rollout step would cost if it were nothing but matmuls."""
    xs = [torch.randn(E, rows, w, device=device, dtype=dtype) for w in WIDTHS]
    ws = [torch.randn(E, a, b, device=device, dtype=dtype) / a**0.5 for a, b in zip(WIDTHS[:-1], WIDTHS[1:],
                                                                                     strict=True)]

    def run() -> None:
        for _ in range(calls):
            for i, w in enumerate(ws):
                torch.bmm(xs[i], w, out=xs[i + 1])

    return run, calls * E * rows * flop_per_model_step()


def best_time(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def make_policy(planner, num_envs: int, device: torch.device, chunk_size: int | None, bf16: bool,
                before: bool) -> MPCPolicy:
    agent = MPCAgent(OBS, ACT, planner=planner, ensemble_size=E, hidden_size=HIDDEN, num_layers=2,
                     chunk_size=chunk_size, bf16=bf16).to(device).eval()
    policy = agent.mpc_policy(get_task("mbrl/Cheetah-v0"), -torch.ones(ACT), torch.ones(ACT), num_envs)
    if before:  # the unfolded step: normalise, MLP, unnormalise as separate passes (predict_next)
        policy.step = agent.predict_next
    return policy


def plan_fn(policy: MPCPolicy, num_envs: int):
    obs, idx = torch.randn(num_envs, OBS, generator=torch.Generator().manual_seed(0)), torch.arange(num_envs)

    def run() -> None:
        policy.reset(idx)  # plan from scratch every time (no warm start), as at an episode's first step
        policy.act(obs, idx)

    return run


def measure_row(planner, num_envs: int, device: torch.device, repeats: int, chunk: int | None, bf16: bool,
                before: bool) -> tuple[float, float, float, float]:
    """(s per planned action, achieved GFLOP/s, same-shape matmul GFLOP/s, fraction). The planner and the same
    work of bare matmuls (the rollout's chunk of rows, as many chain calls as it makes) alternate ``repeats``
    times; rates are the best of each, the fraction the median of the paired ratios (robust to other load)."""
    policy = make_policy(planner, num_envs, device, chunk, bf16, before)
    run = plan_fn(policy, num_envs)
    n = planner.num_sequences * num_envs
    rows = default_chunk_size(device, torch.bfloat16 if bf16 else torch.float32) if chunk == -1 else chunk
    rows = n if rows is None else min(rows, n)
    calls = max(1, round(planner.evaluations_per_plan * num_envs * planner.horizon / rows))
    chain, chain_flop = matmul_chain(rows, torch.bfloat16 if bf16 else torch.float32, device, calls)
    run()  # warm-up (first calls allocate the scratch buffers)
    chain()
    plan_s, chain_s = [], []
    for _ in range(repeats):
        plan_s.append(best_time(run, device))
        chain_s.append(best_time(chain, device))
    flop = planner.evaluations_per_plan * planner.horizon * E * num_envs * flop_per_model_step()
    ratios = sorted(flop / p / (chain_flop / c) for p, c in zip(plan_s, chain_s, strict=True))
    return min(plan_s) / num_envs, flop / min(plan_s) / 1e9, chain_flop / min(chain_s) / 1e9, ratios[len(ratios) // 2]


def peak_rate(dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Best GFLOP/s of a large (E, 4096, 250) x (E, 250, 250) batched matmul: the machine's matmul peak here."""
    a = torch.randn(E, 4096, HIDDEN, device=device, dtype=dtype)
    w = torch.randn(E, HIDDEN, HIDDEN, device=device, dtype=dtype)
    out = torch.empty(E, 4096, HIDDEN, device=device, dtype=dtype)
    torch.bmm(a, w, out=out)
    seconds = min(best_time(lambda: [torch.bmm(a, w, out=out) for _ in range(4)], device) for _ in range(repeats))
    return 4 * 2 * E * 4096 * HIDDEN * HIDDEN / seconds / 1e9


def profile(device: torch.device, bf16: bool = False, num_envs: int = 1) -> None:
    """torch.profiler table of one folded random-shooting action for ``num_envs`` envs: the matmuls' share of the
    op time, and the wall time of the same action unprofiled (what the ops' self times leave is Python and
    dispatch)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    run = plan_fn(make_policy(RandomShooting(15, 1000), num_envs, device, -1, bf16, False), num_envs)
    run()
    wall = min(best_time(run, device) for _ in range(3))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        run()
        sync(device)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if "bmm" in e.key)
    print(f"profile, one folded random-shooting action for {num_envs} env(s) in {'bf16' if bf16 else 'float32'}: "
          f"{wall * 1e3:.1f} ms unprofiled; profiled, {total / 1e3:.1f} ms of op self time, {mm / total:.0%} of it "
          "in matmuls (bmm/baddbmm)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=14))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[-1], help="-1: the device default, 0: all")
    parser.add_argument("--planners", nargs="+", default=["rs", "cem"], choices=["rs", "cem"])
    parser.add_argument("--bf16", action="store_true", help="also time bfloat16 planning (MPCAgent bf16=True)")
    parser.add_argument("--before", action="store_true", help="also time the unfolded step (predict_next)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table per thread count")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"{datetime.datetime.now().isoformat(timespec='minutes')} | {device} ({name}) | torch {torch.__version__} "
          f"| CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16 {cpu_has_bf16()} "
          f"| {cores} cores usable, load average {load}")
    planners = {"rs": ("random shooting", RandomShooting(15, 1000)),
                "cem": ("CEM (4 iterations)", CEM(15, 1000, num_iterations=4, num_elites=5))}
    for threads in args.threads:
        torch.set_num_threads(threads)
        if threads > cores:
            print(f"note: {threads} threads on {cores} usable core(s): the threads share cores")
        peaks = {dt: peak_rate(dt, device, args.repeats) for dt in (torch.float32, torch.bfloat16)}
        print(f"\nthreads {threads}: large batched matmul (E, 4096, 250) x (250, 250): float32 "
              f"{peaks[torch.float32]:.1f} GFLOP/s, bf16 {peaks[torch.bfloat16]:.1f} GFLOP/s")
        print(f"{'planner':<20}{'envs':>5}{'rows':>7}{'step':>14}{'s/action':>10}{'model steps/s':>14}"
              f"{'GFLOP/s':>9}{'matmul GFLOP/s':>15}{'fraction':>9}")
        for key in args.planners:
            label, planner = planners[key]
            for p in args.envs:
                variants = [(c, False, False) for c in args.chunk_sizes]
                variants += [(-1, False, True)] if args.before else []
                variants += [(c, True, False) for c in args.chunk_sizes] if args.bf16 else []
                for chunk, bf16, before in variants:
                    chunk_arg = None if chunk == 0 else chunk
                    seconds, gflops, limit, fraction = measure_row(planner, p, device, args.repeats, chunk_arg, bf16,
                                                                   before)
                    rows = {-1: "auto", 0: "all"}.get(chunk, str(chunk))
                    step = ("predict_next" if before else "folded") + (" bf16" if bf16 else "")
                    steps = planner.evaluations_per_plan * planner.horizon * E / seconds
                    print(f"{label:<20}{p:>5}{rows:>7}{step:>14}{seconds:>10.4f}{steps:>14.3g}{gflops:>9.1f}"
                          f"{limit:>15.1f}{fraction:>9.0%}")
        if args.profile:
            for bf16 in [False, True] if args.bf16 else [False]:
                profile(device, bf16, max(args.envs))


if __name__ == "__main__":
    main()
