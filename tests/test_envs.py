"""Tests for mbrl_lightning.envs: task rewards reproduce env.step, seeding, shapes, obstacle physics."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch

from mbrl_lightning import envs
from mbrl_lightning.envs import obstacles as obs_mod
from mbrl_lightning.envs import reacher as reacher_mod
from mbrl_lightning.envs import tasks as tasks_mod

OWN_ENVS = {"mbrl/Obstacles-v0": (4,), "mbrl/Cheetah-v0": (21,), "mbrl/Reacher7DOF-v0": (20,)}
GYM_ENVS = {"HalfCheetah-v5": (18,), "Hopper-v5": (12,), "Reacher-v5": (10,)}
ALL_ENVS = {**OWN_ENVS, **GYM_ENVS}
Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The reward checks are tiny; one intra-op thread is faster and leaves the other core alone."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _chdir_tmp(tmp_path, monkeypatch):
    """MuJoCo appends model-compiler warnings to ./MUJOCO_LOG.TXT; keep that out of the repository."""
    monkeypatch.chdir(tmp_path)


def rollout(env_id: str, n_steps: int, seed: int = 0, policy: Policy | None = None, **make_kwargs):
    """Step ``n_steps`` times (resetting on done); return stacked obs, act, next_obs, rew, term and infos."""
    env = envs.make(env_id, **make_kwargs)
    rng = np.random.default_rng(seed)
    o, _ = env.reset(seed=seed)
    data: dict[str, list] = {k: [] for k in ("obs", "act", "next_obs", "rew", "term", "info")}
    for _ in range(n_steps):
        a = rng.uniform(-1, 1, env.action_space.shape) if policy is None else policy(o, rng)
        a = a.astype(np.float32)
        o2, r, term, trunc, info = env.step(a)
        for k, v in zip(data, (o, a, o2, r, term, info), strict=True):
            data[k].append(v)
        o = env.reset()[0] if term or trunc else o2
    env.close()
    out = {k: np.stack(v) for k, v in data.items() if k != "info"}
    return out, data["info"]


def check_task(env_id: str, out: dict[str, np.ndarray]) -> None:
    """The registered task reproduces the env's rewards and terminations on float32 tensors."""
    task = envs.get_task(env_id)
    o, a, o2 = (torch.as_tensor(out[k], dtype=torch.float32) for k in ("obs", "act", "next_obs"))
    rew = torch.as_tensor(out["rew"], dtype=torch.float32)
    pred = task.reward(o, a, o2)
    assert pred.shape == rew.shape and pred.dtype == torch.float32
    torch.testing.assert_close(pred, rew, rtol=0.0, atol=1e-4 * max(1.0, rew.abs().max().item()))
    term = task.terminated(o, a, o2)
    assert term.dtype == torch.bool and term.shape == rew.shape
    assert torch.equal(term, torch.as_tensor(out["term"]))


def toward(target: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.clip(10.0 * (target - pos), -1.0, 1.0)


def waypoint_policy() -> Policy:
    """Drive the point mass around the two blocks on the diagonal (north-east of each), then to the goal."""
    waypoints = [np.array([0.35, 0.3]), np.array([0.65, -0.35]), obs_mod.GOAL]
    state = {"i": 0}

    def policy(o: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = o[:2].astype(np.float64)
        if state["i"] < len(waypoints) - 1 and np.linalg.norm(pos - waypoints[state["i"]]) < 0.05:
            state["i"] += 1
        return toward(waypoints[state["i"]], pos)

    return policy


@pytest.mark.parametrize("env_id", sorted(set(ALL_ENVS) - {"mbrl/Obstacles-v0"}))
def test_task_matches_env_random_actions(env_id):
    out, _ = rollout(env_id, 300)
    check_task(env_id, out)
    if env_id == "Hopper-v5":
        assert out["term"].any(), "random hopper should fall over at least once"


def test_obstacles_task_matches_env_including_collisions_and_goal():
    rand, rand_info = rollout("mbrl/Obstacles-v0", 300, seed=1)
    greedy, greedy_info = rollout("mbrl/Obstacles-v0", 60, policy=lambda o, rng: toward(obs_mod.GOAL, o[:2]))
    scripted, _ = rollout("mbrl/Obstacles-v0", 40, policy=waypoint_policy())
    assert any(i["blocked"] for i in rand_info), "random walk should bump into a wall"
    assert any(i["blocked"] for i in greedy_info), "the straight line to the goal must be blocked"
    assert not greedy["term"].any()
    assert scripted["term"].any(), "the scripted detour must reach the goal"
    for out in (rand, greedy, scripted):
        check_task("mbrl/Obstacles-v0", out)


def test_obstacles_layout_blocks_straight_line_but_start_and_goal_free():
    line = obs_mod.START + np.linspace(0, 1, 200)[:, None] * (obs_mod.GOAL - obs_mod.START)
    assert any(obs_mod.in_obstacle(p) for p in line)
    assert not obs_mod.in_obstacle(obs_mod.START) and not obs_mod.in_obstacle(obs_mod.GOAL)
    assert ((obs_mod.OBSTACLES[:, 2:] - obs_mod.OBSTACLES[:, :2]) > 0.1).all(), "one step could tunnel"


def test_obstacles_move_into_obstacle_or_wall_is_rejected():
    env = envs.make("mbrl/Obstacles-v0")
    env.reset(seed=0)
    base = env.unwrapped
    base.pos = np.array([0.0, 0.25])  # just above the first block (top edge y = 0.2)
    o, r, *_, info = env.step(np.array([0.0, -1.0], dtype=np.float32))
    assert info["blocked"] and np.allclose(o[:2], [0.0, 0.25])
    assert r == pytest.approx(-np.linalg.norm(np.array([0.0, 0.25]) - obs_mod.GOAL), abs=1e-6)
    base.pos = np.array([0.95, -0.9])
    o, *_, info = env.step(np.array([1.0, 0.0], dtype=np.float32))  # x would be 1.05: outside the square
    assert info["blocked"] and np.allclose(o[:2], [0.95, -0.9])
    o, *_, info = env.step(np.array([-0.5, 5.0], dtype=np.float32))  # clipped to (-0.05, +0.1): free move
    assert not info["blocked"] and np.allclose(o[:2], [0.9, -0.8], atol=1e-6)


@pytest.mark.parametrize("env_id", sorted(ALL_ENVS))
def test_same_seed_same_trajectory_and_documented_shapes(env_id):
    def run() -> np.ndarray:
        env = envs.make(env_id)
        rng = np.random.default_rng(7)
        seq = [env.reset(seed=123)[0]]
        for _ in range(20):
            seq.append(env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))[0])
        return np.stack(seq)

    a, b = run(), run()
    assert np.array_equal(a, b)
    assert a.shape[1:] == ALL_ENVS[env_id]
    if env_id in OWN_ENVS:
        assert a.dtype == np.float32
        space = envs.make(env_id).action_space
        assert space.dtype == np.float32 and np.all(space.low == -1) and np.all(space.high == 1)


@pytest.mark.parametrize("env_id", sorted(ALL_ENVS))
def test_different_seeds_different_initial_obs(env_id):
    kwargs = {"start_noise": 0.05} if env_id == "mbrl/Obstacles-v0" else {}
    env = envs.make(env_id, **kwargs)
    o1, o2 = env.reset(seed=1)[0], env.reset(seed=2)[0]
    assert not np.array_equal(o1, o2)
    if env_id == "mbrl/Reacher7DOF-v0":
        assert not np.allclose(o1[reacher_mod.TARGET], o2[reacher_mod.TARGET])


def test_obstacles_default_start_is_fixed():
    env = envs.make("mbrl/Obstacles-v0")
    np.testing.assert_array_equal(env.reset(seed=1)[0], np.float32([-0.5, 0.75, 0.7, -0.8]))
    np.testing.assert_array_equal(env.reset(seed=2)[0], np.float32([-0.5, 0.75, 0.7, -0.8]))


@pytest.mark.parametrize("env_id", sorted(ALL_ENVS))
def test_task_fns_accept_extra_leading_dims(env_id):
    env = envs.make(env_id)
    obs_dim, act_dim = ALL_ENVS[env_id][0], env.action_space.shape[0]
    g = torch.Generator().manual_seed(0)
    o, o2 = torch.randn(3, 5, obs_dim, generator=g), torch.randn(3, 5, obs_dim, generator=g)
    a = torch.rand(3, 5, act_dim, generator=g) * 2 - 1
    task = envs.get_task(env_id)
    r, t = task.reward(o, a, o2), task.terminated(o, a, o2)
    assert r.shape == (3, 5) and t.shape == (3, 5) and t.dtype == torch.bool
    flat = task.reward(o.reshape(15, -1), a.reshape(15, -1), o2.reshape(15, -1))
    torch.testing.assert_close(r.reshape(15), flat)
    r64 = task.reward(o.double(), a.double(), o2.double())
    assert r64.dtype == torch.float64
    torch.testing.assert_close(r64.float(), r, rtol=1e-5, atol=1e-5)


def test_get_task_unknown_id_names_it():
    with pytest.raises(KeyError, match=re.escape("mbrl/DoesNotExist-v0")) as exc:
        envs.get_task("mbrl/DoesNotExist-v0")
    assert "register_task" in str(exc.value) and "mbrl/Cheetah-v0" in str(exc.value)


def test_register_task_and_make():
    env_id = "mbrl/TestOnlyTask-v0"
    try:
        envs.register_task(env_id, lambda o, a, o2: o2[..., 0], foo=1)
        task = envs.get_task(env_id)
        assert dict(task.make_kwargs) == {"foo": 1}
        o = torch.zeros(2, 4, 3)
        assert task.terminated(o, o, o).shape == (2, 4) and not task.terminated(o, o, o).any()
    finally:
        tasks_mod._TASKS.pop(env_id, None)
    env = envs.make("CartPole-v1")  # ids without a task still work
    assert env.reset(seed=0)[0].shape == (4,)
    # explicit kwargs override the task's make_kwargs
    hc = envs.make("HalfCheetah-v5", exclude_current_positions_from_observation=True)
    assert hc.observation_space.shape == (17,)
    assert envs.make("HalfCheetah-v5").observation_space.shape == (18,)


def test_reimport_does_not_fail_and_episode_lengths():
    importlib.reload(envs)
    assert gym.spec("mbrl/Obstacles-v0").max_episode_steps == 100
    assert gym.spec("mbrl/Cheetah-v0").max_episode_steps == 500
    assert gym.spec("mbrl/Reacher7DOF-v0").max_episode_steps == 200
    assert envs.make("mbrl/Cheetah-v0").unwrapped.dt == pytest.approx(0.01)
    assert envs.make("mbrl/Reacher7DOF-v0").unwrapped.dt == pytest.approx(0.02)


def test_cheetah_obs_is_post_step_state():
    env = envs.make("mbrl/Cheetah-v0")
    env.reset(seed=0)
    for _ in range(5):
        o, *_ = env.step(env.action_space.sample())
    base = env.unwrapped
    data = mujoco.MjData(base.model)
    data.qpos[:], data.qvel[:] = base.data.qpos, base.data.qvel
    mujoco.mj_forward(base.model, data)
    expected = np.concatenate([data.qpos, data.qvel, data.subtree_com[base.model.body("torso").id]])
    np.testing.assert_allclose(o, expected, rtol=1e-6, atol=1e-6)


def test_reacher_target_box_is_reachable():
    """Damped-least-squares IK from the neutral pose gets the fingertip within 5 cm of sampled targets."""
    model = mujoco.MjModel.from_xml_path(reacher_mod.XML_PATH)
    data = mujoco.MjData(model)
    site = model.site("fingertip").id
    lo, hi = model.jnt_range.T
    rng = np.random.default_rng(0)
    low, high = reacher_mod.TARGET_LOW, reacher_mod.TARGET_HIGH
    corners = np.array(np.meshgrid(*zip(low, high, strict=True))).reshape(3, -1).T
    targets = np.concatenate([corners, rng.uniform(low, high, (8, 3))])
    jac = np.zeros((3, model.nv))
    for target in targets:
        q, err = reacher_mod.NEUTRAL_QPOS.copy(), np.inf
        for _ in range(200):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            err_vec = target - data.site_xpos[site]
            err = np.linalg.norm(err_vec)
            if err < 0.01:
                break
            mujoco.mj_jacSite(model, data, jac, None, site)
            q = np.clip(q + 0.5 * jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(3), err_vec), lo, hi)
        assert err < 0.05, f"target {target} unreachable (error {err:.3f})"


def test_obstacles_render():
    env = envs.make("mbrl/Obstacles-v0", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert (img == (30, 60, 220)).all(-1).any() and (img == (40, 180, 60)).all(-1).any()


def test_mujoco_envs_render_rgb_array(tmp_path):
    """Offscreen MuJoCo rendering in a subprocess (needs an OpenGL backend; skipped where there is none)."""
    code = (
        "import mbrl_lightning.envs as E\n"
        "for i in ('mbrl/Cheetah-v0', 'mbrl/Reacher7DOF-v0'):\n"
        "    e = E.make(i, render_mode='rgb_array', width=64, height=48); e.reset(seed=0)\n"
        "    e.step(e.action_space.sample()); img = e.render()\n"
        "    assert img.shape == (48, 64, 3) and img.std() > 0, img.shape\n"
        "print('ok')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0 and ("OpenGL" in proc.stderr or "EGL" in proc.stderr or "GL" in proc.stderr):
        pytest.skip(f"no OpenGL backend: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
