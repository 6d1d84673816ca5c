"""Why PETS falls on InvertedPendulum-v5: plan on a run's model with its learned reward and termination, or with
the env's own (gymnasium's rule: terminated once |pole angle| > 0.2 or a value is not finite; reward 1 while not
terminated), and print where each episode ended (cart position, pole angle). ``--dynamics sim`` plans on the
simulator itself (MuJoCo's batched rollout from each predicted state) with the env's own heads: what the planner's
objective reaches with a perfect model.

    git show 8e07dc1:results/pets_inverted_pendulum/version_0/checkpoints/last.ckpt > pets_ip_iter3.ckpt
    OMP_NUM_THREADS=1 python benchmarks/pets_inverted_pendulum.py --checkpoint pets_ip_iter3.ckpt \
        --heads learned true --horizons 15 45
    OMP_NUM_THREADS=1 python benchmarks/pets_inverted_pendulum.py --dynamics sim --horizons 15 45

The planner is the config's CEM (200 x 3, 20 elites, alpha 0.1; ``--population`` etc. change it) with the
checkpoint's propagation (TS-inf, 10 particles); episode i starts from seed ``--seed`` + i, as ``Evaluate``.
The cart's rail ends at x = +-1.
"""

from __future__ import annotations

import argparse
import itertools
import time

import gymnasium as gym
import mujoco
import numpy as np
import pytorch_lightning as pl
import torch
from mujoco import rollout
from optimizers import EpisodeReturn  # benchmarks/
from planners_checkpoint import load_model

from mbrl_lightning.agents import MPCAgent
from mbrl_lightning.data import collect
from mbrl_lightning.envs import make
from mbrl_lightning.models.dynamics import Prediction
from mbrl_lightning.planning import CEM, MPCPolicy


class LastStep(EpisodeReturn):
    """Keeps the episode's return and its last observation."""

    def step(self, action):
        out = super().step(action)
        self.last_obs = out[0]
        return out


def env_heads(nxt: torch.Tensor) -> Prediction:
    """InvertedPendulum-v5's own termination and reward for predicted next states."""
    done = ~(torch.isfinite(nxt).all(-1) & (nxt[..., 1].abs() <= 0.2))
    return Prediction(nxt, (~done).to(nxt.dtype), done)


def with_true_heads(step):
    """The model's next state with InvertedPendulum-v5's own termination and reward in place of the learned ones."""

    def true_step(obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        return env_heads(step(obs, act).next_obs)

    return true_step


def simulator_step(env: gym.Env):
    """The true dynamics as a planning step: each (obs, act) row is one MuJoCo rollout of the env's frame_skip
    physics steps from the state obs = (qpos, qvel), with the action held, in one batched call."""
    model, frame_skip = env.unwrapped.model, env.unwrapped.frame_skip
    data = mujoco.MjData(model)
    assert mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS) == 1 + model.nq + model.nv

    def step(obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        lead = obs.shape[:-1]
        rows = obs.reshape(-1, obs.shape[-1]).double().numpy()
        initial = np.concatenate([np.zeros((rows.shape[0], 1)), rows], axis=1)  # (time, qpos, qvel)
        control = np.repeat(act.reshape(-1, 1, act.shape[-1]).double().numpy(), frame_skip, axis=1)
        state, _ = rollout.rollout(model, data, initial, control)
        nxt = torch.as_tensor(state[:, -1, 1:], dtype=obs.dtype).reshape(*lead, -1)
        return env_heads(nxt)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="an MPCAgent checkpoint of configs/pets/inverted_pendulum")
    parser.add_argument("--dynamics", default="learned", choices=["learned", "sim"],
                        help="the checkpoint's model, or the simulator (then the env's own heads, no checkpoint)")
    parser.add_argument("--heads", nargs="+", default=["learned", "true"], choices=["learned", "true"])
    parser.add_argument("--horizons", type=int, nargs="+", default=[15])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--population", type=int, default=200, help="CEM's sequences per iteration")
    parser.add_argument("--cem-iterations", type=int, default=3)
    parser.add_argument("--elites", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.1, help="CEM's smoothing of the mean and std")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    if args.dynamics == "learned" and args.checkpoint is None:
        parser.error("--dynamics learned needs --checkpoint")
    heads_list = ["true"] if args.dynamics == "sim" else args.heads
    model_args, state = load_model(args.checkpoint) if args.dynamics == "learned" else (None, None)
    for heads, horizon in itertools.product(heads_list, args.horizons):
        pl.seed_everything(0, verbose=False)
        planner = CEM(horizon=horizon, num_sequences=args.population, num_iterations=args.cem_iterations,
                      num_elites=args.elites, alpha=args.alpha)
        envs = [LastStep(make("InvertedPendulum-v5")) for _ in range(args.episodes)]
        low, high = (torch.as_tensor(b) for b in (envs[0].action_space.low, envs[0].action_space.high))
        if args.dynamics == "sim":
            policy = MPCPolicy(simulator_step(envs[0]), 1, None, planner, low, high, args.episodes, chunk_size=None)
        else:
            agent = MPCAgent(planner=planner, bf16=False, **model_args)  # float32, as docs/ quotes it
            agent.load_state_dict(state)
            agent.eval()
            if heads == "true":
                learned_step = agent.planning_step
                agent.planning_step = lambda seed=0, f=learned_step: with_true_heads(f(seed))
            policy = agent.mpc_policy(None, low, high, max_envs=args.episodes, seed=0)
        t0 = time.perf_counter()
        collect(envs, policy, num_episodes=args.episodes, seed=args.seed, progress=False)
        returns = torch.tensor([env.episode_return for env in envs])
        ends = ", ".join(f"x {env.last_obs[0]:+.2f} angle {env.last_obs[1]:+.2f}" for env in envs)
        error = returns.std() / len(envs) ** 0.5 if len(envs) > 1 else float("nan")
        cem = f"CEM {args.population} x {args.cem_iterations}"
        print(f"{args.dynamics} dynamics, {heads} heads, H {horizon}, {cem}: return {returns.mean():.1f} ± {error:.1f} "
              f"(episodes {[round(r) for r in returns.tolist()]}; ended at {ends}), {time.perf_counter() - t0:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
