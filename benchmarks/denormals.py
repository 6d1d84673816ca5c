"""Planning time with denormal weights, with and without flush-to-zero (what mbrl_lightning.numerics fixes).

    python benchmarks/denormals.py [--fraction 0.07] [--repeats 3] [--checkpoint <a PETS InvertedPendulum-v5 last.ckpt>]

The PETS InvertedPendulum-v5 config's model and planner (5 probabilistic members of 3 x 200, learned reward and
termination, TS-inf with 10 particles, CEM 200 x 3, H = 15), one thread. Weight decay drives unused weights of
a trained ensemble below float32's smallest normal number; ``--fraction`` of each hidden and output layer's
weights are set to such values (±1e-39; a PETS checkpoint after four iterations had 7 % of its third layer and
4.7 % of all its weights there, so the default overstates that model's slowdown: 49x against its 20x), or
``--checkpoint`` loads a trained model as it is. Prints seconds per planned action with denormals kept (the CPU
default) and flushed (the package's setting), and the count of denormal weights.
"""

from __future__ import annotations

import argparse
import time

import torch

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.envs import find_task
from mbrl_lightning.planning import CEM

PETS_IP = dict(obs_dim=4, act_dim=1, ensemble_size=5, hidden_size=200, num_layers=3, loss="nll",
               propagation="ts_inf", num_particles=10, learn_reward=True, learn_termination=True)


def denormal_count(agent: MPCAgent) -> tuple[int, int]:
    tiny = torch.finfo(torch.float32).tiny
    weights = [p for n, p in agent.named_parameters() if n.endswith("weight")]
    return sum(int(((w != 0) & (w.abs() < tiny)).sum()) for w in weights), sum(w.numel() for w in weights)


def build(args: argparse.Namespace) -> MPCAgent:
    planner = CEM(15, 200, num_iterations=3, num_elites=20, alpha=0.1)
    if args.checkpoint:
        from planners_checkpoint import load_model

        model_args, state = load_model(args.checkpoint)
        agent = MPCAgent(planner=planner, bf16=False, **model_args)  # float32: its denormals are the point
        agent.load_state_dict(state)
        return agent.eval()
    agent = MPCAgent(planner=planner, bf16=False, **PETS_IP).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in agent.named_parameters():
            if name.endswith("weight") and name != "net.0.weight":  # the hidden and output layers
                pick = torch.rand(p.shape, generator=gen) < args.fraction
                sign = torch.where(torch.rand(p.shape, generator=gen) < 0.5, -1.0, 1.0)
                p[pick] = (1e-39 * sign)[pick]
    return agent


def seconds_per_action(agent: MPCAgent, repeats: int) -> float:
    obs_dim, act_dim = agent.obs_dim, agent.act_dim
    task = find_task("InvertedPendulum-v5")  # none registered: the learned reward and termination plan
    policy = agent.mpc_policy(task, -3 * torch.ones(act_dim), 3 * torch.ones(act_dim), 1)  # the env's action bounds
    obs = 0.1 * torch.randn(1, obs_dim, generator=torch.Generator().manual_seed(1))
    idx = torch.zeros(1, dtype=torch.long)
    policy.act(obs, idx)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        policy.reset(idx)
        start = time.perf_counter()
        policy.act(obs, idx)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.07, help="share of hidden/output weights made denormal")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="an MPCAgent checkpoint to time as it is (no weights changed)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # FTZ/DAZ is toggled on this thread only; worker threads keep the import-time flags
    torch.set_flush_denormal(False)  # to write and count denormals at all (DAZ reads them as 0)
    agent = build(args)
    count, total = denormal_count(agent)
    print(f"denormal weights: {count} of {total} ({100 * count / total:.1f} %)")
    rows = []
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        rows.append((flush, seconds_per_action(agent, args.repeats)))
    torch.set_flush_denormal(True)
    for flush, seconds in rows:
        label = "flushed (package default)" if flush else "kept (CPU default)"
        print(f"{label:<26} {seconds:.3f} s per planned action")
    print(f"slowdown from denormals: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
