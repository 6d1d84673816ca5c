"""SAC update speed on the cheetah shapes, beside the same run's measured matmul rate on the update's own shapes.

    python benchmarks/sac.py [--threads 1 2] [--repeats 5] [--updates 50] [--compile] [--bf16]

For SAC at batch 256 with 2 x 256 MLPs and the brief's config (batch 1500, 3 x 128 MLPs), both with 2 critics
and a learned temperature, at each thread count (``torch.set_num_threads``): milliseconds per full update
(critics, actor, temperature, Polyak, metric bookkeeping: what ``training_step`` runs per batch), its achieved
GFLOP/s (the update's matmul FLOP, counted below), and that as a fraction of the rate of the same matmuls run
bare in the same run (every forward, weight-gradient and input-gradient matmul of the update, at its shape: the
practical limit of a matmul-bound update). Updates and bare matmuls alternate; rates are the best of each and the
fraction is the median of the paired ratios, so a machine shared with other work still gives a meaningful one.
``--compile`` runs the update's forward pieces (critic target, Q values, action sampling) through
``torch.compile`` (inductor), the fusion of the elementwise work that the eager update cannot do. ``--bf16`` also
times ``SAC(bf16=True)`` (the hidden layers' matmuls in bfloat16, output layers, losses, weights and Adam in
float32), alternating with the float32 update, and prints both (worth it only on a CPU with native bf16).
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from planning import cpu_model  # benchmarks/planning.py: this script's folder is first on sys.path

from mbrl_lightning.agents import SAC
from mbrl_lightning.precision import cpu_has_bf16

OBS, ACT, CRITICS = 21, 6, 2  # mbrl/Cheetah-v0
CONFIGS = {"batch 256, 2 x 256": (256, 256, 2), "brief: batch 1500, 3 x 128": (1500, 128, 3)}

Matmul = tuple[int, int, int, int]  # (members, m, k, n): members x (m, k) @ (k, n)


def mlp_matmuls(members: int, rows: int, widths: list[int], forward: bool, weight_grads: bool,
                input_grads: str) -> list[Matmul]:
    """The matmuls of an MLP's forward and backward passes; ``input_grads``: "all", "hidden" (not the first
    layer's, whose input needs no gradient) or "none"."""
    out: list[Matmul] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if forward:
            out.append((members, rows, a, b))
        if weight_grads:
            out.append((members, a, rows, b))  # X^T dY
        if input_grads == "all" or (input_grads == "hidden" and i > 0):
            out.append((members, rows, b, a))  # dY W^T
    return out


def update_matmuls(batch: int, hidden: int, layers: int) -> list[Matmul]:
    """Every matmul of one SAC update: target (actor + target critics), critic step, actor step."""
    actor, critic = [OBS] + [hidden] * layers + [2 * ACT], [OBS + ACT] + [hidden] * layers + [1]
    return (mlp_matmuls(1, batch, actor, True, False, "none")  # a' ~ pi(s')
            + mlp_matmuls(CRITICS, batch, critic, True, False, "none")  # target Q(s', a')
            + mlp_matmuls(CRITICS, batch, critic, True, True, "hidden")  # critic loss and its gradients
            + mlp_matmuls(1, batch, actor, True, True, "hidden")  # a ~ pi(s) and the actor's gradients
            + mlp_matmuls(CRITICS, batch, critic, True, False, "all"))  # Q(s, a) and dQ/da (critics held fixed)


def flop(matmuls: list[Matmul]) -> int:
    return sum(2 * e * m * k * n for e, m, k, n in matmuls)


def matmul_fn(matmuls: list[Matmul], updates: int):
    """``updates`` times the update's matmuls, bare, into preallocated outputs (mm for the actor, bmm for critics)."""
    ops = []
    for e, m, k, n in matmuls:
        a, b, c = torch.randn(e, m, k), torch.randn(e, k, n) / k**0.5, torch.empty(e, m, n)
        ops.append((torch.mm, a[0], b[0], c[0]) if e == 1 else (torch.bmm, a, b, c))

    def run() -> None:
        for _ in range(updates):
            for fn, a, b, c in ops:
                fn(a, b, out=c)

    return run


def update_fn(batch_size: int, hidden: int, layers: int, updates: int, compile: bool = False, bf16: bool = False):
    """``updates`` full SAC updates as ``training_step`` runs them, on a bare module (its raw optimisers);
    ``bf16``: ``SAC(bf16=True)``, the hidden layers' matmuls in bfloat16."""
    sac = SAC(OBS, ACT, hidden_size=hidden, num_layers=layers, num_critics=CRITICS, learn_temperature=True, bf16=bf16)
    if compile:  # the pieces with autograd through them; the optimiser steps stay eager (fused Adam)
        for name in ("critic_target", "q_values", "sample_action"):
            setattr(sac, name, torch.compile(getattr(sac, name), dynamic=False))
    opts = sac.configure_optimizers()
    sac.optimizers = lambda: opts
    sac.manual_backward = lambda loss: loss.backward()
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(batch_size, OBS, generator=g), "act": torch.rand(batch_size, ACT, generator=g) * 2 - 1,
             "next_obs": torch.randn(batch_size, OBS, generator=g), "reward": torch.randn(batch_size, generator=g),
             "terminated": torch.rand(batch_size, generator=g) < 0.01}

    def run() -> None:
        for _ in range(updates):
            sac._accumulate(sac.update(batch))

    return run


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bf16_versus_float32(args: argparse.Namespace) -> None:
    """ms per update in float32 and under bf16 autocast, alternating, best of ``repeats`` each."""
    print(f"{datetime.date.today()}, {cpu_model()}, native bf16: {cpu_has_bf16()}, torch {torch.__version__}, "
          f"{OBS}-d obs, {ACT}-d actions, {CRITICS} critics, learned temperature")
    print(f"{'threads':>7} {'config':<28} {'float32 ms':>10} {'bf16 ms':>8} {'bf16 / float32':>14}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (batch, hidden, layers) in CONFIGS.items():
            fns = [update_fn(batch, hidden, layers, args.updates, bf16=bf16) for bf16 in (False, True)]
            for fn in fns:
                fn()  # warm-up
            times = [[seconds(fn) for fn in fns] for _ in range(args.repeats)]
            fp32, bf16 = (min(t[i] for t in times) / args.updates * 1e3 for i in (0, 1))
            print(f"{threads:>7} {name:<28} {fp32:>10.2f} {bf16:>8.2f} {bf16 / fp32:>14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--updates", type=int, default=50, help="updates per timed repeat")
    parser.add_argument("--compile", action="store_true", help="torch.compile the update's forward pieces")
    parser.add_argument("--bf16", action="store_true", help="also time the update under bf16 autocast")
    args = parser.parse_args()
    if args.bf16:
        if args.compile:
            parser.error("--bf16 times the eager update: leave --compile out")
        bf16_versus_float32(args)
        return
    print(f"{datetime.date.today()}, {cpu_model()}, torch {torch.__version__}, float32, {OBS}-d obs, {ACT}-d actions, "
          f"{CRITICS} critics, learned temperature{', torch.compile' if args.compile else ''}")
    print(f"{'threads':>7} {'config':<28} {'ms/update':>9} {'GFLOP/s':>8} {'matmul GFLOP/s':>14} {'fraction':>8}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (batch, hidden, layers) in CONFIGS.items():
            update, bare = update_fn(batch, hidden, layers, args.updates, args.compile), matmul_fn(
                update_matmuls(batch, hidden, layers), args.updates)
            work = flop(update_matmuls(batch, hidden, layers)) * args.updates
            update(), bare()  # warm-up (optimiser state, allocator, compilation)
            pairs = [(seconds(update), seconds(bare)) for _ in range(args.repeats)]
            ratios = sorted(b / u for u, b in pairs)
            best_u, best_b = min(u for u, _ in pairs), min(b for _, b in pairs)
            print(f"{threads:>7} {name:<28} {best_u / args.updates * 1e3:>9.2f} {work / best_u / 1e9:>8.1f} "
                  f"{work / best_b / 1e9:>14.1f} {ratios[len(ratios) // 2]:>8.0%}")


if __name__ == "__main__":
    main()
