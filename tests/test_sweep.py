"""Sweeps on Ray Tune: run names, arguments checked up front, two trials side by side, a crashed trial resumed."""

import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_lightning.report.runs import load_runs
from mbrl_lightning.sweep import SweepError, main, plan_sweep, short_labels

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "obstacles.yaml"
HORIZON = "model.init_args.planner.init_args.horizon"
ENSEMBLE = "model.init_args.ensemble_size"


class Rendezvous(pl.Callback):
    """Test-only: each run waits at fit start until ``parties`` runs have arrived, so runs made one after another
    fail (after ``timeout`` s) and only runs that are running side by side pass."""

    def __init__(self, folder: str, parties: int = 2, timeout: float = 300.0) -> None:
        self.folder, self.parties, self.timeout = Path(folder), parties, timeout

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / trainer.logger.name).touch()
        deadline = time.monotonic() + self.timeout
        while len(list(self.folder.iterdir())) < self.parties:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Rendezvous: {trainer.logger.name} was alone for {self.timeout} s")
            time.sleep(0.2)


class CrashOnce(pl.Callback):
    """Test-only: raises at the start of iteration ``epoch + 1`` unless ``marker`` exists (creating it first), so
    the trial's first attempt dies after a checkpoint and its retry runs through."""

    def __init__(self, marker: str, epoch: int = 1) -> None:
        self.marker, self.epoch = Path(marker), epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError("CrashOnce: the first attempt dies here")


def test_one_at_a_time_names_and_commands(tmp_path, capsys):
    code = main(["--config", str(TINY), "--name", "tiny", "--grid", f"{ENSEMBLE}=1,2,5", "--grid", f"{HORIZON}=10",
                 "--seeds", "0,1", "--dry-run", "--", "--trainer.max_epochs", "3",
                 "--trainer.logger.init_args.save_dir", str(tmp_path)])
    assert code == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if " fit --config " in line]
    # the default run, then each value alone (ensemble_size=2 is the default: not repeated), each seed
    runs = {"tiny__seed=0": [], "tiny__seed=1": [], "tiny__ensemble_size=1__seed=0": [f"--{ENSEMBLE}=1"],
            "tiny__ensemble_size=1__seed=1": [f"--{ENSEMBLE}=1"], "tiny__ensemble_size=5__seed=0": [f"--{ENSEMBLE}=5"],
            "tiny__ensemble_size=5__seed=1": [f"--{ENSEMBLE}=5"], "tiny__horizon=10__seed=0": [f"--{HORIZON}=10"],
            "tiny__horizon=10__seed=1": [f"--{HORIZON}=10"]}
    assert len(commands) == len(runs)
    for (name, changes), command in zip(runs.items(), commands, strict=True):
        seed = f"--seed_everything={name[-1]}"
        assert command.split() == ["python", "-m", "mbrl_lightning", "fit", "--config", str(TINY), *changes, seed,
                                   f"--trainer.logger.init_args.name={name}", "--trainer.max_epochs", "3",
                                   "--trainer.logger.init_args.save_dir", str(tmp_path)]
    assert not any(tmp_path.iterdir())  # a dry run runs nothing


def test_product_mode_defaults_and_short_labels():
    trials, save_dir = plan_sweep(TINY, [(ENSEMBLE, [1, 3]), ("model.init_args.lr", [0.001, 0.003])], mode="product",
                                  name="grid")
    assert [t.name for t in trials] == ["grid__ensemble_size=1__lr=0.001", "grid__ensemble_size=1__lr=0.003",
                                        "grid__ensemble_size=3__lr=0.001", "grid__ensemble_size=3__lr=0.003"]
    assert save_dir == Path("runs")  # the config's logger save_dir
    # lr is not in the YAML, but 0.001 is MPCAgent's default: one-at-a-time does not run the default twice
    trials, _ = plan_sweep(TINY, [("model.init_args.lr", [0.001, 0.01])], mode="one-at-a-time")
    assert [t.name for t in trials] == ["obstacles", "obstacles__lr=0.01"]
    assert short_labels([HORIZON, "data.init_args.horizon"]) == {HORIZON: "planner.horizon",
                                                                 "data.init_args.horizon": "data.horizon"}


def test_bad_keys_and_values_are_named_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SweepError, match="hiden_size"):
        plan_sweep(TINY, [("model.init_args.hiden_size", [8])])
    with pytest.raises(SweepError, match="num_iterations"):  # a CEM argument under a RandomShooting planner
        plan_sweep(TINY, [("model.init_args.planner.init_args.num_iterations", [2])])
    with pytest.raises(SweepError, match=r"(?s)obstacles__ensemble_size=two.*ensemble_size"):
        plan_sweep(TINY, [(ENSEMBLE, ["two"])])
    assert main(["--config", str(TINY), "--grid", "trainer.max_epoch=2", "--dry-run"]) == 2  # no abbreviations
    assert "trainer.max_epoch" in capsys.readouterr().err


def test_two_trials_run_side_by_side(tmp_path):
    code = main(["--config", str(TINY), "--grid", f"{HORIZON}=2,4", "--cpus-per-trial", "1", "--max-failures", "0",
                 "--", "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.max_epochs", "1",
                 f"--trainer.callbacks+={Rendezvous.__module__}.Rendezvous",
                 f"--trainer.callbacks.folder={tmp_path / 'arrived'}"])
    assert code == 0  # both passed the rendezvous: they ran at the same time
    for horizon in (2, 4):
        run = tmp_path / f"obstacles__horizon={horizon}" / "version_0"
        config = yaml.safe_load((run / "config.yaml").read_text())  # as LightningCLI resolved it
        assert config["model"]["init_args"]["planner"]["init_args"]["horizon"] == horizon
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        assert len(events.Scalars("eval/return")) == 1


def test_crashed_trial_is_retried_from_last_ckpt(tmp_path):
    marker = tmp_path / "crashed"
    code = main(["--config", str(TINY), "--seeds", "0", "--max-failures", "1", "--",
                 "--trainer.logger.init_args.save_dir", str(tmp_path),
                 f"--trainer.callbacks+={CrashOnce.__module__}.CrashOnce", f"--trainer.callbacks.marker={marker}"])
    assert code == 0 and marker.exists()  # the first attempt crashed, the retry finished
    run_dir = tmp_path / "obstacles__seed=0" / "version_0"  # a resumed fit logs on in its run's folder
    resumed_from = yaml.safe_load((run_dir / "config.yaml").read_text())["ckpt_path"]
    assert Path(resumed_from) == (run_dir / "checkpoints" / "last.ckpt").resolve()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one event file per attempt
    (run,) = load_runs(tmp_path)  # what the report sees: one run of both iterations, each evaluated once
    assert run.eval_curve()[0].tolist() == [1.0, 2.0]
