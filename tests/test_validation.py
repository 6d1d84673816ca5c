"""Every size and count argument is checked where it is given, and the error names it."""

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from mbrl_lightning.agents import MBPO, SAC, MPCAgent
from mbrl_lightning.callbacks import CollectOnPolicy, CollectRandom, Evaluate
from mbrl_lightning.data import RandomPolicy, ReplayBuffer, ReplayDataModule, collect
from mbrl_lightning.envs import get_task, make
from mbrl_lightning.models import DynamicsEnsemble
from mbrl_lightning.planning import CEM, MPCPolicy, RandomShooting

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    (lambda: DynamicsEnsemble(4, 2, ensemble_size=0), "ensemble_size"),
    (lambda: DynamicsEnsemble(4, 2, ensemble_size=-2), "ensemble_size"),
    (lambda: DynamicsEnsemble(4, 2, hidden_size=0), "hidden_size"),
    (lambda: DynamicsEnsemble(4, 2, num_layers=-1), "num_layers"),
    (lambda: DynamicsEnsemble(0, 2), "obs_dim"),
    (lambda: MPCAgent(4, 2, ensemble_size=0), "ensemble_size"),
    (lambda: MPCAgent(4, 2, chunk_size=0), "chunk_size"),
    (lambda: ReplayBuffer(0, 4, 2), "capacity"),
    (lambda: ReplayBuffer(10, 4, -1), "act_dim"),
    (lambda: ReplayDataModule("mbrl/Obstacles-v0", batch_size=0), "batch_size"),
    (lambda: ReplayDataModule("mbrl/Obstacles-v0", steps_per_epoch=-5), "steps_per_epoch"),
    (lambda: ReplayDataModule("mbrl/Obstacles-v0", capacity=0), "capacity"),
    (lambda: CollectRandom(num_steps=0), "num_steps"),
    (lambda: CollectRandom(num_envs=0), "num_envs"),
    (lambda: CollectOnPolicy(num_steps=-1), "num_steps"),
    (lambda: CollectOnPolicy(num_envs=0), "num_envs"),
    (lambda: Evaluate(num_episodes=0), "num_episodes"),
    (lambda: Evaluate(num_envs=-1), "num_envs"),
    (lambda: Evaluate(every_n_iters=0), "every_n_iters"),
    (lambda: RandomShooting(horizon=0), "horizon"),
    (lambda: RandomShooting(num_sequences=-3), "num_sequences"),
    (lambda: CEM(num_iterations=0), "num_iterations"),
    (lambda: CEM(num_elites=0), "num_elites"),
    (lambda: CEM(alpha=0.0), "alpha"),
    (lambda: MPCPolicy(lambda o, a: o, 1, get_task("mbrl/Obstacles-v0"), RandomShooting(), -torch.ones(2),
                       torch.ones(2), max_envs=0), "max_envs"),
    (lambda: collect([make("mbrl/Obstacles-v0")], RandomPolicy(-torch.ones(2), torch.ones(2)), num_steps=-1),
     "num_steps"),
    (lambda: collect([], RandomPolicy(-torch.ones(2), torch.ones(2)), num_episodes=2), "num_envs"),
    # SAC and MBPO name their own arguments; MBPO's dynamics is a DynamicsEnsemble, which names its own
    (lambda: SAC(4, 2, num_critics=0, backup="mean"), "num_critics"),
    (lambda: SAC(4, 2, hidden_size=0), "hidden_size"),
    (lambda: MBPO(4, 2, dynamics=partial(DynamicsEnsemble, ensemble_size=0)), "ensemble_size"),
    (lambda: MBPO(4, 2, dynamics=partial(DynamicsEnsemble, hidden_size=0)), "hidden_size"),
    (lambda: MBPO(4, 2, num_elites=0), "num_elites"),
    (lambda: MBPO(4, 2, model_buffer_capacity=0), "model_buffer_capacity"),
]


@pytest.mark.parametrize("build,name", CASES, ids=[f"{i}-{name}" for i, (_, name) in enumerate(CASES)])
def test_bad_size_is_refused_by_name(build, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        build()


def test_a_count_must_be_an_integer():
    with pytest.raises(TypeError, match="ensemble_size must be an integer"):
        DynamicsEnsemble(4, 2, ensemble_size=2.5)


def test_zero_ensemble_size_from_the_command_line_fails_naming_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mbrl_lightning", "fit", "--config",
                           str(ROOT / "configs" / "tiny" / "obstacles.yaml"), "--model.init_args.ensemble_size", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "ensemble_size must be a positive integer, got 0" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))  # nothing trained
