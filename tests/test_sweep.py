"""Sweeps: variant names, the rewritten YAML, key errors, and a real two-run sweep."""

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_lightning.sweep import SweepError, main, plan_sweep, short_labels

HORIZON = "model.init_args.planner.init_args.horizon"
ENSEMBLE = "model.init_args.ensemble_size"


@pytest.fixture
def tiny_yaml(tmp_path):
    """A seconds-long MPC run on the obstacles env (one iteration, two evaluation episodes)."""
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False,
                    "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": "runs", "name": "tiny"}},
                    "callbacks": [
                        {"class_path": "mbrl_lightning.callbacks.CollectRandom", "init_args": {"num_steps": 200}},
                        {"class_path": "mbrl_lightning.callbacks.Evaluate", "init_args": {"num_episodes": 2}},
                    ]},
        "model": {"class_path": "mbrl_lightning.agents.MPCAgent",
                  "init_args": {"ensemble_size": 2, "hidden_size": 16, "num_layers": 1,
                                "planner": {"class_path": "mbrl_lightning.planning.RandomShooting",
                                            "init_args": {"horizon": 3, "num_sequences": 16}}}},
        "data": {"class_path": "mbrl_lightning.data.ReplayDataModule",
                 "init_args": {"env_id": "mbrl/Obstacles-v0", "env_kwargs": {"max_episode_steps": 40},
                               "batch_size": 32, "steps_per_epoch": 5}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_one_at_a_time_names_and_yaml(tiny_yaml, tmp_path, capsys):
    root = tmp_path / "sweeps"
    code = main(["--config", str(tiny_yaml), "--grid", f"{ENSEMBLE}=1,2,5", "--grid", f"{HORIZON}=10",
                 "--seeds", "0,1", "--root", str(root), "--dry-run", "--", "--trainer.max_epochs", "3"])
    assert code == 0
    out = capsys.readouterr().out
    # the default run, then each value alone (ensemble_size=2 is the default: not repeated), each seed
    names = ["tiny__seed=0", "tiny__seed=1", "tiny__ensemble_size=1__seed=0", "tiny__ensemble_size=1__seed=1",
             "tiny__ensemble_size=5__seed=0", "tiny__ensemble_size=5__seed=1", "tiny__horizon=10__seed=0",
             "tiny__horizon=10__seed=1"]
    commands = [line for line in out.splitlines() if " fit --config " in line]
    assert len(commands) == len(names)
    for name, command in zip(names, commands, strict=True):
        assert command.endswith(f"{root / 'tiny' / 'configs' / name}.yaml --trainer.max_epochs 3")
    variant = yaml.safe_load((root / "tiny" / "configs" / "tiny__horizon=10__seed=1.yaml").read_text())
    base = yaml.safe_load(tiny_yaml.read_text())
    assert variant["model"]["init_args"]["planner"]["init_args"]["horizon"] == 10
    assert variant["model"]["init_args"]["ensemble_size"] == 2 and variant["seed_everything"] == 1
    assert variant["trainer"]["logger"]["init_args"] == {"save_dir": str(root / "tiny"),
                                                         "name": "tiny__horizon=10__seed=1"}
    variant["trainer"]["logger"] = base["trainer"]["logger"]
    variant["model"]["init_args"]["planner"]["init_args"]["horizon"] = 3
    variant["seed_everything"] = 0
    assert variant == base  # nothing else changed
    assert not (root / "tiny" / "tiny__seed=0").exists()  # a dry run runs nothing


def test_product_mode_and_short_labels(tiny_yaml, tmp_path):
    variants = plan_sweep(tiny_yaml, [(ENSEMBLE, [1, 3]), ("model.init_args.lr", [0.001, 0.003])], mode="product",
                          root=tmp_path, name="grid")
    assert [v.name for v in variants] == ["grid__ensemble_size=1__lr=0.001", "grid__ensemble_size=1__lr=0.003",
                                          "grid__ensemble_size=3__lr=0.001", "grid__ensemble_size=3__lr=0.003"]
    assert short_labels(["model.init_args.planner.init_args.horizon", "data.init_args.horizon"]) == {
        "model.init_args.planner.init_args.horizon": "planner.horizon", "data.init_args.horizon": "data.horizon"}


def test_unknown_key_is_named(tiny_yaml, tmp_path, capsys):
    with pytest.raises(SweepError, match="hiden_size"):
        plan_sweep(tiny_yaml, [("model.init_args.hiden_size", [8])], root=tmp_path)
    # a CEM-only argument under a RandomShooting planner is not accepted either
    with pytest.raises(SweepError, match="num_iterations"):
        plan_sweep(tiny_yaml, [("model.init_args.planner.init_args.num_iterations", [2])], root=tmp_path)
    assert main(["--config", str(tiny_yaml), "--grid", "trainer.max_epoch=2", "--dry-run",
                 "--root", str(tmp_path)]) == 2
    assert "trainer.max_epoch" in capsys.readouterr().err


def test_known_cli_argument_missing_from_yaml_becomes_an_override(tiny_yaml, tmp_path):
    (variant,) = plan_sweep(tiny_yaml, [("data.init_args.capacity", [1000])], mode="product", root=tmp_path)
    assert variant.name == "tiny__capacity=1000"
    assert "--data.init_args.capacity=1000" in variant.command
    assert "capacity" not in variant.config["data"]["init_args"]
    (variant,) = plan_sweep(tiny_yaml, [("trainer.max_time", ["00:00:01:00"])], mode="product", root=tmp_path)
    assert "--trainer.max_time=00:00:01:00" in variant.command


def test_real_sweep_runs_two_variants(tiny_yaml, tmp_path, capsys):
    root = tmp_path / "sweeps"
    assert main(["--config", str(tiny_yaml), "--grid", f"{HORIZON}=2,4", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for horizon in (2, 4):
        run = root / "tiny" / f"tiny__horizon={horizon}" / "version_0"
        config = yaml.safe_load((run / "config.yaml").read_text())  # as LightningCLI resolved it
        assert config["model"]["init_args"]["planner"]["init_args"]["horizon"] == horizon
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        final = events.Scalars("eval/return")[-1].value
        row = next(line for line in out.splitlines() if line.startswith(f"tiny__horizon={horizon} "))
        assert row.split()[1] == "0" and row.split()[-1] == f"{final:.4g}"  # exit code, final return
        assert (root / "tiny" / "logs" / f"tiny__horizon={horizon}.log").stat().st_size > 0
    assert "2/2 runs succeeded" in out


def test_failed_run_is_reported_and_sweep_fails(tiny_yaml, tmp_path, capsys):
    root = tmp_path / "sweeps"
    code = main(["--config", str(tiny_yaml), "--grid", "data.init_args.env_id=mbrl/NoSuchEnv-v0",
                 "--root", str(root)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out and "0/1 runs succeeded; failed: tiny__env_id=mbrl-NoSuchEnv-v0" in out
