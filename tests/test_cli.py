"""The command line: a tiny config runs end to end; bad configs fail naming the problem."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "obstacles.yaml"


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mbrl_lightning", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_tiny_config_runs_end_to_end(tmp_path):
    proc = run_cli("fit", "--config", str(TINY), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "iteration 2/2" in proc.stdout and "eval return" in proc.stdout and "fit finished in" in proc.stdout
    run = tmp_path / "runs" / "tiny_obstacles" / "version_0"
    assert (run / "loss_curve.png").stat().st_size > 0 and (run / "config.yaml").exists()
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "eval/return", "data/env_steps"} <= set(tags)
    assert len(events.Scalars("eval/return")) == 2
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # plain tensors only
    buffer = ckpt["ReplayDataModule"]["buffer"]
    assert buffer["size"] == 300 + 100  # random data + one iteration of MPC data (none after the last)


def test_unknown_key_is_rejected_with_its_name(tmp_path):
    proc = run_cli("fit", "--config", str(TINY), "--model.init_args.hiden_size", "8", cwd=tmp_path)
    assert proc.returncode != 0
    assert "hiden_size" in proc.stderr


def test_wrong_type_is_rejected(tmp_path):
    proc = run_cli("fit", "--config", str(TINY), "--data.init_args.batch_size", "many", cwd=tmp_path)
    assert proc.returncode != 0
    assert "batch_size" in proc.stderr


def test_env_without_reward_function_is_named(tmp_path):
    proc = run_cli("fit", "--config", str(TINY), "--data.init_args.env_id", "CartPole-v1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "CartPole-v1" in proc.stderr


def test_help_and_print_config(tmp_path):
    proc = run_cli("fit", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--config" in proc.stdout
    help_text = " ".join(proc.stdout.split())  # argparse wraps lines
    for choice in ("mbrl_lightning.agents.MPCAgent", "mbrl_lightning.agents.SAC", "mbrl_lightning.agents.MBPO",
                   "mbrl_lightning.data.ReplayDataModule"):  # the choices of --model / --data
        assert choice in help_text, choice
    assert "Tip:" not in proc.stdout + proc.stderr
    proc = run_cli("fit", "--model.help", "MPCAgent", cwd=tmp_path)
    assert proc.returncode == 0
    assert "members E of the dynamics ensemble" in " ".join(proc.stdout.split())  # from the docstring's Args
    proc = run_cli("fit", "--config", str(TINY), "--print_config", cwd=tmp_path)
    assert proc.returncode == 0
    assert "mbrl_lightning.planning.RandomShooting" in proc.stdout and "num_sequences: 50" in proc.stdout


CONFIGURABLE = ["mbrl_lightning.agents.MPCAgent", "mbrl_lightning.agents.SAC", "mbrl_lightning.agents.MBPO",
                "mbrl_lightning.models.DynamicsEnsemble", "mbrl_lightning.data.ReplayDataModule",
                "mbrl_lightning.callbacks.CollectRandom", "mbrl_lightning.callbacks.CollectOnPolicy",
                "mbrl_lightning.callbacks.Evaluate", "mbrl_lightning.callbacks.ProgressReport",
                "mbrl_lightning.planning.RandomShooting", "mbrl_lightning.planning.CEM",
                "mbrl_lightning.planning.ICEM", "mbrl_lightning.planning.MPPI"]


@pytest.mark.parametrize("class_path", CONFIGURABLE)
def test_every_constructor_argument_has_a_help_line(class_path):
    """``--model.help``/``--data.help`` print each argument's line from the class docstring's ``Args:``."""
    from jsonargparse._parameter_resolvers import get_signature_parameters

    module, name = class_path.rsplit(".", 1)
    params = get_signature_parameters(getattr(importlib.import_module(module), name))
    assert [p.name for p in params if not p.doc] == []
