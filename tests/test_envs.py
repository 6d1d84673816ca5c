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


@pytest.mark.parametrize("env_id", sorted(set(ALL_ENVS) - {"mbrl/Obstacles-v0"}))
def test_task_matches_env_random_actions(env_id):
    out, _ = rollout(env_id, 300)
    check_task(env_id, out)
    if env_id == "Hopper-v5":
        assert out["term"].any(), "random hopper should fall over at least once"


def test_obstacles_task_matches_env_including_collisions_and_goal():
    """Issue 13 fact: the batched torch reward/termination agree with step exactly, walls and goal included."""
    rand, rand_info = rollout("mbrl/Obstacles-v0", 400, seed=1)
    greedy, greedy_info = rollout("mbrl/Obstacles-v0", 300, seed=3, policy=lambda o, rng: toward(obs_mod.GOAL, o[:2]))
    assert any(i["blocked"] for i in rand_info + greedy_info), "some move should be rejected"
    assert greedy["term"].any(), "heading for the goal reaches it from some start"
    for out in (rand, greedy):
        check_task("mbrl/Obstacles-v0", out)


def test_obstacles_layout_is_the_reference():
    """Issue 13 facts: the five obstacles (x_min, x_max, y_min, y_max), goal (0.7, -0.8), open square 0.99."""
    expected = [(-0.4, 0.0, 0.5, 0.8), (-0.9, -0.7, -0.3, 0.3), (0.6, 0.72, -0.5, -0.1), (-0.1, 0.05, -0.2, 0.2),
                (0.1, 0.4, -0.85, -0.7)]
    np.testing.assert_array_equal(obs_mod.OBSTACLES, np.array(expected))
    np.testing.assert_array_equal(obs_mod.GOAL, [0.7, -0.8])
    for x0, x1, y0, y1 in expected:
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        assert obs_mod.in_obstacle(centre) and not obs_mod.is_valid(centre)
        for edge in ([x0, centre[1]], [x1, centre[1]], [centre[0], y0], [centre[0], y1]):
            assert not obs_mod.in_obstacle(np.array(edge)), f"a point on an edge is outside: {edge}"
    for pos in ([0.99, 0.0], [0.0, -0.99], [-0.995, 0.5]):
        assert not obs_mod.is_valid(np.array(pos)), f"{pos} is on or outside the boundary"
    assert obs_mod.is_valid(np.array([0.989, -0.989]))


def place(env, pos) -> None:
    env.unwrapped.pos = np.array(pos, dtype=np.float64)


def test_obstacles_moves_clip_scale_and_rejections():
    """Issue 13 facts: action clipped to [-1, 1], moved by action / 10; moves into an obstacle or onto the
    boundary are rejected (agent stays put), moves onto an obstacle's edge are not."""
    env = envs.make("mbrl/Obstacles-v0")
    env.reset(seed=0)
    place(env, [-0.5, 0.0])
    o, *_, info = env.step(np.array([5.0, -0.3], dtype=np.float32))  # clipped to (1, -0.3): moves (0.1, -0.03)
    assert not info["blocked"] and np.allclose(o[:2], [-0.4, -0.03], atol=1e-6)
    place(env, [-0.2, 0.9])  # above the first block (y in [0.5, 0.8]); stepping down ends inside it
    o, r, *_, info = env.step(np.array([0.0, -1.0], dtype=np.float32))
    assert not info["blocked"] and np.allclose(o[:2], [-0.2, 0.8], atol=1e-9)  # y = 0.8 is the edge: allowed
    o, r, *_, info = env.step(np.array([0.0, -0.5], dtype=np.float32))
    assert info["blocked"] and np.allclose(o[:2], [-0.2, 0.8])
    assert r == pytest.approx(-np.linalg.norm(np.array([-0.2, 0.8]) - obs_mod.GOAL), abs=1e-6)
    place(env, [0.94, -0.5])
    o, *_, info = env.step(np.array([0.5, 0.0], dtype=np.float32))  # x would be 0.99: on the boundary
    assert info["blocked"] and np.allclose(o[:2], [0.94, -0.5])
    o, *_, info = env.step(np.array([0.4, 0.0], dtype=np.float32))
    assert not info["blocked"] and np.allclose(o[:2], [0.98, -0.5], atol=1e-6)


def test_obstacles_spaces_reward_termination_and_episode_length():
    """Issue 13 facts: action Box(-0.99, 0.99, (2,)); obs (x, y, goal); reward -distance after the move;
    terminated within 0.1 of the goal; 100-step episodes."""
    env = envs.make("mbrl/Obstacles-v0")
    space = env.action_space
    assert space.shape == (2,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, np.float32([-0.99, -0.99]))
    np.testing.assert_array_equal(space.high, np.float32([0.99, 0.99]))
    o, _ = env.reset(seed=5)
    np.testing.assert_array_equal(o[2:], np.float32([0.7, -0.8]))
    place(env, [0.82, -0.8])
    o, r, term, trunc, _ = env.step(np.array([-0.1, 0.0], dtype=np.float32))  # to 0.81: distance 0.11
    assert r == pytest.approx(-0.11, abs=1e-6) and not term
    o, r, term, trunc, _ = env.step(np.array([-0.2, 0.0], dtype=np.float32))  # to 0.79: distance 0.09
    assert r == pytest.approx(-0.09, abs=1e-6) and term
    env.reset(seed=6)
    steps = 0
    while True:
        steps += 1
        *_, term, trunc, _ = env.step(np.zeros(2, dtype=np.float32))
        if term or trunc:
            break
    assert steps == 100 and trunc and not term


def test_obstacles_random_starts_cover_the_reference_region():
    """Issue 13 fact: every reset draws the start uniformly from x in [-0.99, 0.59], y in [0.26, 0.99],
    redrawn until valid, from the env's own seeded generator."""
    env = envs.make("mbrl/Obstacles-v0")
    env.reset(seed=0)
    starts = np.array([env.reset()[0][:2] for _ in range(3000)], dtype=np.float64)
    assert (starts[:, 0] >= -0.99).all() and (starts[:, 0] <= 0.59).all()
    assert (starts[:, 1] >= 0.26).all() and (starts[:, 1] <= 0.99).all()
    assert all(obs_mod.is_valid(p) for p in starts)
    # uniform over the region minus the first block: each edge of the region is approached
    assert starts[:, 0].min() < -0.97 and starts[:, 0].max() > 0.57
    assert starts[:, 1].min() < 0.28 and starts[:, 1].max() > 0.97
    inside_block = (starts[:, 0] > -0.4) & (starts[:, 0] < 0.0) & (starts[:, 1] > 0.5) & (starts[:, 1] < 0.8)
    assert not inside_block.any()
    # seeded: same seed same start, and the global numpy stream plays no part
    np.random.seed(1)
    a = env.reset(seed=11)[0]
    np.random.seed(2)
    assert np.array_equal(a, env.reset(seed=11)[0])


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
        bound = 0.99 if env_id == "mbrl/Obstacles-v0" else 1.0
        assert space.dtype == np.float32 and np.all(space.low == -bound) and np.all(space.high == bound)


@pytest.mark.parametrize("env_id", sorted(ALL_ENVS))
def test_different_seeds_different_initial_obs(env_id):
    env = envs.make(env_id)
    o1, o2 = env.reset(seed=1)[0], env.reset(seed=2)[0]
    assert not np.array_equal(o1, o2)
    if env_id == "mbrl/Reacher7DOF-v0":
        assert not np.allclose(o1[reacher_mod.TARGET], o2[reacher_mod.TARGET])


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


def test_cheetah_obs_is_post_step_state_with_torso_position():
    """Issue 13 fact: obs = qpos (9) | qvel (9) | torso position (gymnasium's get_body_com, i.e. data.xpos);
    ours is refreshed after the step (the reference's lags by one step: a deliberate difference)."""
    env = envs.make("mbrl/Cheetah-v0")
    env.reset(seed=0)
    for _ in range(5):
        o, *_ = env.step(env.action_space.sample())
    base = env.unwrapped
    data = mujoco.MjData(base.model)
    data.qpos[:], data.qvel[:] = base.data.qpos, base.data.qvel
    mujoco.mj_forward(base.model, data)
    expected = np.concatenate([data.qpos, data.qvel, data.body("torso").xpos])
    np.testing.assert_allclose(o, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(o[18:], base.get_body_com("torso"), rtol=1e-6, atol=1e-6)


def test_cheetah_is_the_reference():
    """Issue 13 facts: gymnasium's half_cheetah model, frame_skip 1; reward obs[9] - 10 [obs[6] > 0.2]
    - 10 [obs[7] > 0] - 10 [obs[8] > 0]; reset qpos = init + U(-0.1, 0.1), qvel = init + 0.1 N(0, 1); 500 steps."""
    from mbrl_lightning.envs import cheetah as cheetah_mod

    assert os.path.basename(cheetah_mod.XML_PATH) == "half_cheetah.xml"
    assert os.path.dirname(cheetah_mod.XML_PATH).endswith(os.path.join("gymnasium", "envs", "mujoco", "assets"))
    env = envs.make("mbrl/Cheetah-v0")
    base = env.unwrapped
    assert base.frame_skip == 1 and gym.spec("mbrl/Cheetah-v0").max_episode_steps == 500
    obs = torch.zeros(5, 21)
    obs[:, 9] = torch.tensor([1.5, 1.5, 1.5, 1.5, 1.5])
    obs[1, 6], obs[2, 7], obs[3, 8] = 0.21, 0.01, 0.01
    obs[0, 6], obs[0, 7], obs[0, 8] = 0.2, 0.0, 0.0  # on the thresholds: no penalty
    obs[4, 6:9] = 0.3  # all three past: the penalties add up
    torch.testing.assert_close(envs.get_task("mbrl/Cheetah-v0").reward(obs, torch.zeros(5, 6), obs),
                               torch.tensor([1.5, -8.5, -8.5, -8.5, -28.5]))
    qpos, qvel = [], []
    for seed in range(300):
        env.reset(seed=seed)
        qpos.append(base.data.qpos - base.init_qpos)
        qvel.append(base.data.qvel - base.init_qvel)
    qpos, qvel = np.array(qpos), np.array(qvel)
    assert np.abs(qpos).max() <= 0.1 and np.abs(qpos).max() > 0.095 and abs(qpos.mean()) < 0.01
    assert 0.09 < qvel.std() < 0.11 and abs(qvel.mean()) < 0.01


def test_reacher_model_is_the_reference_arm():
    """Issue 13 facts: timestep 0.01, gravity 0, Euler, frame_skip 2; armature 0.004, damping 0.8 (2.0 on the
    shoulder pan and lift); the joint chain, axes and ranges; gear 20 / 10 with ctrlrange [-1, 1]; at qpos = 0
    the fingertip (the wrist-roll body's origin) is at (0.821, -0.6, 0)."""
    env = envs.make("mbrl/Reacher7DOF-v0")
    m = env.unwrapped.model
    assert env.unwrapped.frame_skip == 2 and m.opt.timestep == pytest.approx(0.01)
    np.testing.assert_array_equal(m.opt.gravity, [0, 0, 0])
    assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    names = ["shoulder_pan", "shoulder_lift", "upper_arm_roll", "elbow_flex", "forearm_roll", "wrist_flex",
             "wrist_roll"]
    axes = ["z", "y", "x", "y", "x", "y", "x"]
    ranges = [(-2.2854, 1.714602), (-0.5236, 1.3963), (-1.5, 1.7), (-2.3213, 0), (-1.5, 1.5), (-1.094, 0),
              (-1.5, 1.5)]
    body_pos = [(0, -0.6, 0), (0.1, 0, 0), (0, 0, 0), (0.4, 0, 0), (0, 0, 0), (0.321, 0, 0), (0, 0, 0)]
    for i, (name, axis, rng, pos) in enumerate(zip(names, axes, ranges, body_pos, strict=True)):
        j = m.joint(name)
        assert j.id == i and m.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE and m.jnt_limited[i]
        np.testing.assert_array_equal(m.jnt_axis[i], np.eye(3)["xyz".index(axis)])
        np.testing.assert_array_equal(m.jnt_pos[i], [0, 0, 0])
        np.testing.assert_allclose(m.jnt_range[i], rng)
        np.testing.assert_allclose(m.body_pos[m.jnt_bodyid[i]], pos)
        assert m.jnt_bodyid[i] == i + 1, "each joint has its own body, chained in this order"
        assert m.body_parentid[i + 1] == i
        assert m.dof_armature[i] == pytest.approx(0.004)
        assert m.dof_damping[i] == pytest.approx(2.0 if i < 2 else 0.8)
        assert m.actuator_trnid[i, 0] == i and m.actuator_gear[i, 0] == (20 if i == 0 else 10)
        np.testing.assert_array_equal(m.actuator_ctrlrange[i], [-1, 1])
        assert m.actuator_ctrllimited[i]
    assert (m.body_mass[1:8] > 0).all(), "inertia from geoms: every link has mass"
    site = m.site("fingertip")
    assert m.site_bodyid[site.id] == m.joint("wrist_roll").id + 1 and np.all(m.site_pos[site.id] == 0)
    data = mujoco.MjData(m)
    mujoco.mj_kinematics(m, data)
    np.testing.assert_allclose(data.site_xpos[site.id], [0.821, -0.6, 0.0], atol=1e-12)


def test_reacher_reset_observation_and_reward():
    """Issue 13 facts: reset puts qpos = qvel = 0 exactly, draws the target from x in [-0.3, 0.3],
    y in [-0.2, 0.2], z in [-0.25, 0.25], then takes one zero-action step; obs = qpos | qvel / 10 | fingertip |
    target; reward -10 ||fingertip - target||; never terminates; 200-step episodes."""
    env = envs.make("mbrl/Reacher7DOF-v0")
    base = env.unwrapped
    targets = []
    for seed in range(400):
        o, _ = env.reset(seed=seed)
        assert base.data.time == pytest.approx(0.02), "one zero-action step (dt 0.02) after the reset"
        np.testing.assert_array_equal(o[:14], np.zeros(14, dtype=np.float32))
        np.testing.assert_allclose(o[reacher_mod.FINGERTIP], [0.821, -0.6, 0.0], atol=1e-6)
        targets.append(o[reacher_mod.TARGET])
    targets = np.array(targets, dtype=np.float64)
    low, high = np.array([-0.3, -0.2, -0.25]), np.array([0.3, 0.2, 0.25])
    assert (targets >= low - 1e-7).all() and (targets <= high + 1e-7).all()
    assert (targets.min(0) < low + 0.02).all() and (targets.max(0) > high - 0.02).all()
    dist = np.linalg.norm(targets - [0.821, -0.6, 0.0], axis=1)
    assert 0.7 < dist.min() and dist.max() < 1.4, "the targets are about 1 m from the starting fingertip"
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.uniform(-1, 1, 7).astype(np.float32)
        o, r, term, trunc, _ = env.step(a)
        d = base.data
        np.testing.assert_allclose(o[:7], d.qpos, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(o[7:14], d.qvel / 10, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(o[14:17], d.site_xpos[base.model.site("fingertip").id], atol=1e-6)
        assert r == pytest.approx(-10 * np.linalg.norm(o[14:17].astype(np.float64) - o[17:].astype(np.float64)))
        assert not term
    assert gym.spec("mbrl/Reacher7DOF-v0").max_episode_steps == 200
    fixed = envs.make("mbrl/Reacher7DOF-v0", fixed_target=(0.1, 0.1, 0.1))
    np.testing.assert_allclose(fixed.reset(seed=0)[0][17:], [0.1, 0.1, 0.1], atol=1e-7)


def test_obstacles_render():
    env = envs.make("mbrl/Obstacles-v0", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert (img == (110, 110, 110)).all(-1).sum() > 100, "the obstacles are drawn"
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
    missing = ("Cannot initialize a EGL device display", "cannot initialize EGL", "Failed to initialize OpenGL",
               "libEGL", "libOSMesa", "OSMesa library", "Could not find GLFW", "The DISPLAY environment variable",
               "'NoneType' object has no attribute 'glGetError'")  # PyOpenGL's osmesa without the library
    if proc.returncode != 0 and any(m in proc.stderr for m in missing):
        pytest.skip(f"no OpenGL backend: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_hopper_termination_reads_gymnasiums_default_observation_and_the_reward_asks_for_x():
    """MBPO's Hopper runs on gymnasium's 11-number observation (no x): the task's termination still matches the env;
    its reward, which needs x, says so instead of reading the wrong columns."""
    out, _ = rollout("Hopper-v5", 300, exclude_current_positions_from_observation=True)
    assert out["obs"].shape[1] == 11 and out["term"].any()
    task = envs.get_task("Hopper-v5")
    o, a, o2 = (torch.as_tensor(out[k], dtype=torch.float32) for k in ("obs", "act", "next_obs"))
    assert torch.equal(task.terminated(o, a, o2), torch.as_tensor(out["term"]))
    with pytest.raises(ValueError, match="needs the x position"):
        task.reward(o, a, o2)
