"""One planned action of mbrl-lib 0.2.0 and of ours, on the same shape, in the same run, one thread each.

    python benchmarks/mbrl_lib_side_by_side.py --mbrl-python /root/mbrllib_venv/bin/python
                                               [--repeats 7] [--iterations 4] [--no-bf16]

mbrl-lib 0.2.0 needs gymnasium 0.26 and we need gymnasium >= 1.0 (our package registers its envs on import), so
the two cannot share a Python. This script, run with our Python, starts itself as a worker under
``--mbrl-python`` (a Python with mbrl-lib installed, see docs/performance.md "Against mbrl-lib"), builds both
planners, and then alternates: one timed action of mbrl-lib in the worker, one of ours in float32, one of ours
in bfloat16 (only where the CPU has native bf16 matmuls), and again, ``--repeats`` times after one untimed
warm-up round. Only one of the two processes computes at any time (the other waits on a pipe), both inherit
the same CPU affinity and run with ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``. Each side times its
own action with ``time.perf_counter`` (the pipe round-trip is outside the timed window); the figure is the
median of the repeats, the ratio mbrl-lib's median over ours.

The shape, identical on both sides:

- our ``mbrl/Cheetah-v0`` sizes: 21 observation and 6 action dimensions, actions in [-1, 1];
- an ensemble of E = 5 members, each 27 -> 250 -> 250 -> 21 with ReLU, random initialisation (untrained);
  deterministic members (mbrl-lib: ``GaussianMLP(deterministic=True)``, ours: ``loss="mse"``), so every step
  is the member's mean prediction of the state delta;
- CEM with K = 1000 candidate sequences per iteration, H = 15, ``--iterations`` iterations (default 4, the
  brief's), 5 elites (mbrl-lib: ``elite_ratio=0.005``), no smoothing (mbrl-lib ``alpha=0``, ours
  ``alpha=1``), the plan is the final elite mean (mbrl-lib ``return_mean_elites=True``), planned from scratch
  for every action (no warm start);
- every candidate rolled out as E = 5 trajectories, its score their mean return: ours steps every candidate
  through every member (propagation ``"mean"``); mbrl-lib runs ``num_particles=5`` with ``fixed_model``
  propagation (PETS' TS-inf), which spreads the 5000 particles over the members by a random permutation, 1000
  per member. Same rows through the same matmuls; only which member a particle meets differs;
- rewards from the observation (no learned reward), no termination: mbrl-lib's ``reward_fns.halfcheetah`` and
  ``termination_fns.no_termination``, our cheetah task's reward.

What differs (mbrl-lib's own defaults, kept because that is how it plans): its PETS input normaliser runs in
float64 at every step (``normalize_double_precision=True`` as in its PETS config; ours folds the normaliser
into the first layer's weights), its populations are truncated normals (ours: uniform first, then clipped
normals), and it computes in float32 only. Ours is timed as ``MPCAgent.mpc_policy`` plans in a run: the folded
step, 512-row chunks, float32 and (``bf16=True``) bfloat16 matmuls.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

OBS, ACT, E, K, H, HIDDEN, LAYERS, ELITES = 21, 6, 5, 1000, 15, 250, 2, 5
INSTALL = ("python -m venv /root/mbrllib_venv && /root/mbrllib_venv/bin/pip install torch==2.13.0 "
           "gymnasium==0.26.3 hydra-core omegaconf 'numpy<2' mujoco==2.3.7 imageio termcolor tqdm && "
           "/root/mbrllib_venv/bin/pip install --no-deps mbrl==0.2.0")


def single_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers (VMs often show only "Intel Xeon Processor")."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                      if ":" in line)
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return (f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')})")


# ---------------------------------------------------------------------------------------------------------------
# The worker: runs under the mbrl-lib Python; imports only torch, numpy, omegaconf, gymnasium 0.26 and mbrl.


def worker(iterations: int) -> None:
    import gymnasium
    import mbrl
    import mbrl.models
    import mbrl.planning
    import numpy as np
    import omegaconf
    import torch
    from mbrl.env import reward_fns, termination_fns

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = mbrl.models.GaussianMLP(in_size=OBS + ACT, out_size=OBS, device="cpu", num_layers=LAYERS,
                                    ensemble_size=E, hid_size=HIDDEN, deterministic=True,
                                    propagation_method="fixed_model")
    dynamics = mbrl.models.OneDTransitionRewardModel(model, target_is_delta=True, normalize=True,
                                                     normalize_double_precision=True, learned_rewards=False)

    class Spaces:  # all ModelEnv reads from the env
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACT,), np.float32)

    model_env = mbrl.models.ModelEnv(Spaces(), dynamics, termination_fns.no_termination, reward_fns.halfcheetah,
                                     generator=torch.Generator().manual_seed(0))
    agent_cfg = omegaconf.OmegaConf.create({
        "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
        "_recursive_": False,  # the agent instantiates its optimizer itself, once it has set the bounds
        "action_lb": [-1.0] * ACT,
        "action_ub": [1.0] * ACT,
        "planning_horizon": H,
        "replan_freq": 1,
        "verbose": False,
        "optimizer_cfg": {
            "_target_": "mbrl.planning.CEMOptimizer",
            "num_iterations": iterations,
            "elite_ratio": ELITES / K,
            "population_size": K,
            "alpha": 0.0,
            "device": "cpu",
            "lower_bound": "???",
            "upper_bound": "???",
            "return_mean_elites": True,
            "clipped_normal": False,
        },
    })
    agent = mbrl.planning.create_trajectory_optim_agent_for_model(model_env, agent_cfg, num_particles=E)
    elites = int(agent.optimizer.optimizer.elite_num)
    if elites != ELITES:
        raise RuntimeError(f"mbrl-lib CEM keeps {elites} elites, expected {ELITES}")
    obs = np.random.default_rng(0).standard_normal(OBS).astype(np.float32)
    print(json.dumps({"mbrl": mbrl.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "gymnasium": gymnasium.__version__, "elites": elites}), flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        agent.reset()  # plan from scratch (no shifted previous solution), as ours does below
        start = time.perf_counter()
        action = agent.act(obs)
        seconds = time.perf_counter() - start
        assert action.shape == (ACT,)
        print(json.dumps({"seconds": seconds}), flush=True)


class Worker:
    """The mbrl-lib side: a child process under ``python``, answering one timed action per request."""

    def __init__(self, python: str, iterations: int) -> None:
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", "--iterations",
                                      str(iterations)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=single_thread_env())
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"the mbrl-lib worker exited (code {self.proc.wait()}); its error is above")
        return json.loads(line)

    def time_action(self) -> float:
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def check_mbrl_python(python: str) -> str:
    """mbrl-lib's version at ``python``, or exit saying how to install it."""
    if not Path(python).exists():
        sys.exit(f"--mbrl-python {python}: no such file. Make a Python with mbrl-lib:\n  {INSTALL}")
    probe = subprocess.run([python, "-c", "import mbrl, mbrl.planning, mbrl.models; print(mbrl.__version__)"],
                           capture_output=True, text=True, env=single_thread_env())
    if probe.returncode != 0:
        error = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"mbrl-lib does not import with {python}: {error}\nInstall it there:\n  {INSTALL}")
    return probe.stdout.strip()


# ---------------------------------------------------------------------------------------------------------------
# Our side, in this process.


def our_planner(iterations: int, bf16: bool):
    """A function planning one action with our MPC policy (fresh plan, no warm start); returns its seconds."""
    import torch

    from mbrl_lightning.agents import MPCAgent
    from mbrl_lightning.envs import get_task
    from mbrl_lightning.planning import CEM

    torch.manual_seed(0)
    planner = CEM(H, K, num_iterations=iterations, num_elites=ELITES, alpha=1.0)
    agent = MPCAgent(OBS, ACT, planner=planner, ensemble_size=E, hidden_size=HIDDEN, num_layers=LAYERS,
                     activation="relu", loss="mse", bf16=bf16).eval()
    policy = agent.mpc_policy(get_task("mbrl/Cheetah-v0"), -torch.ones(ACT), torch.ones(ACT), 1)
    obs = torch.randn(1, OBS, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(1)

    def run() -> float:
        policy.reset(idx)
        start = time.perf_counter()
        action = policy.act(obs, idx)
        seconds = time.perf_counter() - start
        assert action.shape == (1, ACT)
        return seconds

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mbrl-python", help="a Python with mbrl-lib 0.2.0 installed")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after one warm-up round")
    parser.add_argument("--iterations", type=int, default=4, help="CEM iterations on both sides")
    parser.add_argument("--no-bf16", action="store_true", help="leave out our bfloat16 row")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.iterations)
        return
    if not args.mbrl_python:
        parser.error(f"--mbrl-python is required: a Python with mbrl-lib 0.2.0, e.g. made by\n  {INSTALL}")
    check_mbrl_python(args.mbrl_python)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # before torch starts its thread pool

    import torch

    from mbrl_lightning.precision import cpu_has_bf16

    torch.set_num_threads(1)
    native_bf16 = cpu_has_bf16()
    ours = {"float32": our_planner(args.iterations, bf16=False)}
    if native_bf16 and not args.no_bf16:
        ours["bfloat16"] = our_planner(args.iterations, bf16=True)
    theirs = Worker(args.mbrl_python, args.iterations)
    times: dict[str, list[float]] = {"mbrl-lib": [], **{name: [] for name in ours}}
    try:
        for rep in range(args.repeats + 1):  # round 0 is the warm-up
            seconds = {"mbrl-lib": theirs.time_action(), **{name: run() for name, run in ours.items()}}
            if rep:
                for name, s in seconds.items():
                    times[name].append(s)
    finally:
        theirs.close()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"{datetime.datetime.now().isoformat(timespec='minutes')} | {cpu_model()} | native bf16 {native_bf16} "
          f"| {cores} core(s) usable, load average {load} | torch threads: ours {torch.get_num_threads()}, "
          f"mbrl-lib {theirs.info['threads']} (gymnasium {theirs.info['gymnasium']})")
    print(f"shape: cheetah obs {OBS}, act {ACT}; E = {E} deterministic members of {LAYERS} x {HIDDEN} ReLU; "
          f"CEM {args.iterations} x K = {K}, {ELITES} elites, H = {H}, from scratch; median of {args.repeats} "
          "alternating repeats after a warm-up\n")
    info = theirs.info
    base = statistics.median(times["mbrl-lib"])
    print("| planner | torch | precision | s / planned action | mbrl-lib / this |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| mbrl-lib {info['mbrl']} | {info['torch']} | float32 | {base:.3f} | 1.0x |")
    for name in ours:
        median = statistics.median(times[name])
        print(f"| mbrl-lightning | {torch.__version__} | {name} | {median:.3f} | {base / median:.1f}x |")
    print("\nall repeats (s): " + "; ".join(f"{name} " + " ".join(f"{s:.3f}" for s in ts)
                                            for name, ts in times.items()))


if __name__ == "__main__":
    main()
