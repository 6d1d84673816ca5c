"""A user's environment joins a run without touching the package: named in the config's ``imports:``, or
declared by an installed package under the ``mbrl_lightning.envs`` entry-point group."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mbrl_lightning.envs import get_task, make, tasks

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "obstacles.yaml"


def user_module(env_id: str) -> str:
    """Source of a user module that registers a 1-D "reach 0.5" env and its batched reward and termination."""
    return textwrap.dedent(f'''
        import gymnasium as gym
        import numpy as np

        from mbrl_lightning.envs import register_task


        class Line(gym.Env):
            observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)  # position, goal
            action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.x = float(self.np_random.uniform(-1.0, 1.0))
                return np.array([self.x, 0.5], np.float32), {{}}

            def step(self, action):
                self.x += 0.1 * float(np.clip(action[0], -1.0, 1.0))
                obs = np.array([self.x, 0.5], np.float32)
                return obs, -abs(self.x - 0.5), abs(self.x - 0.5) < 0.05, False, {{}}


        def reward(obs, act, next_obs):  # tensors (..., dim) -> (...)
            return -(next_obs[..., 0] - next_obs[..., 1]).abs()


        def terminated(obs, act, next_obs):  # -> bool tensor (...)
            return (next_obs[..., 0] - next_obs[..., 1]).abs() < 0.05


        if "{env_id}" not in gym.registry:
            gym.register("{env_id}", entry_point=Line, max_episode_steps=30)
        register_task("{env_id}", reward, terminated)
    ''')


def fit(cwd, *args):
    return subprocess.run([sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(TINY), "--trainer.max_epochs",
                           "1", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_config_imports_a_user_module_that_registers_its_env(tmp_path):
    (tmp_path / "my_envs.py").write_text(user_module("MyLine-v0"))
    proc = fit(tmp_path, "--imports", "[my_envs]", "--data.init_args.env_id", "MyLine-v0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iteration 1/1" in proc.stdout and "eval return" in proc.stdout
    assert "Tip:" not in proc.stdout + proc.stderr  # Lightning's promotional tips are silenced
    config = (tmp_path / "runs" / "tiny_obstacles" / "version_0" / "config.yaml").read_text()
    assert "imports:\n- my_envs" in config  # the saved config reruns as it is


def test_a_missing_import_is_named():
    from mbrl_lightning.lightning_cli import import_modules

    with pytest.raises(ModuleNotFoundError, match="imports: cannot import 'no_such_envs'.*PYTHONPATH"):
        import_modules(["json", "no_such_envs"])


def test_installed_package_registers_its_env_through_the_entry_point_group(tmp_path, monkeypatch):
    site = tmp_path / "site"  # what `pip install` of the user's package leaves: its module and dist-info
    (site / "line_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "line_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: line-plugin\n"
                                                                 "Version: 0.1\n")
    (site / "line_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[mbrl_lightning.envs]\nline = line_plugin\n")
    (site / "line_plugin.py").write_text(user_module("PluginLine-v0"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(tasks, "_plugins_loaded", False)
    monkeypatch.delitem(sys.modules, "line_plugin", raising=False)
    task = get_task("PluginLine-v0")  # not registered yet: the plugins load, then the lookup succeeds
    env = make("PluginLine-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,) and task.terminated.__name__ == "terminated"
    with pytest.raises(KeyError, match="entry-point group"):
        get_task("NoSuchEnv-v0")
