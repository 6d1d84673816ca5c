"""``python -m mbrl_lightning sweep``: variants of one config run as Ray Tune trials (grids, ablations, seeds).

Example (the brief's Problem 4 ablation: the default run plus each value of each parameter on its own)::

    python -m mbrl_lightning sweep --config configs/mpc/reacher_ablation.yaml \\
        --grid model.init_args.ensemble_size=1,5 \\
        --grid model.init_args.planner.init_args.num_sequences=500,2000 \\
        --grid model.init_args.planner.init_args.horizon=5,20 [--seeds 0,1] [--dry-run] [-- --trainer.max_epochs 3]

Each trial is the ordinary ``fit`` of the config, its values given as LightningCLI arguments
(``--model.init_args.ensemble_size=5``, checked by LightningCLI's parser before anything runs) and its TensorBoard
logger named after what changed, so it logs to ``<save_dir>/<run name>/version_N`` like any run and ``report``
reads it. Ray Tune places the trials on the cores, GPUs and machines there are and, when a trial dies, runs it
again from its ``last.ckpt``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shlex
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint

from mbrl_lightning.cli import MBRLCLI, cli_kwargs, lightning_main

POINTER = "last_ckpt.txt"  # the file of a trial's Ray checkpoint: the path of its run's last.ckpt


class SweepError(ValueError):
    """A bad grid, key or value; the message names it."""


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: its name and its ``fit`` arguments."""

    name: str
    args: list[str]

    @property
    def command(self) -> str:
        """The same run as a standalone command."""
        return shlex.join(["python", "-m", "mbrl_lightning", "fit", *self.args])


# -- grid syntax and names ----------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A grid value as YAML reads it (``5`` -> int, ``true`` -> bool), with ``1e-3`` read as a float too."""
    value = yaml.safe_load(text) if text.strip() else text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_grid(spec: str) -> tuple[str, list[Any]]:
    """``key=v1,v2,...`` -> (key, [v1, v2, ...])."""
    key, sep, values = spec.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key or not values.strip():
        raise SweepError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. model.init_args.ensemble_size=1,5)")
    parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if len(set(map(_fmt_value, parsed))) != len(parsed):
        raise SweepError(f"--grid {spec!r}: repeated value")
    return key, parsed


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise SweepError(f"--seeds {text!r}: expected integers like 0,1,2") from err


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _name_value(value: Any) -> str:
    text = _fmt_value(value)
    return "".join(c if c.isalnum() or c in "-.+" else "-" for c in text).strip("-") or "none"


def short_labels(keys: list[str]) -> dict[str, str]:
    """The shortest tail of each dotted key (``init_args`` left out) that tells the keys apart."""
    parts = {k: [p for p in k.split(".") if p != "init_args"] or [k] for k in keys}
    labels = {}
    for key, comps in parts.items():
        for n in range(1, len(comps) + 1):
            tail = comps[-n:]
            if not any(o != key and oc[-n:] == tail for o, oc in parts.items()):
                break
        labels[key] = ".".join(tail)
    return labels


def plan_changes(defaults: Any, grids: list[tuple[str, list[Any]]], mode: str) -> list[dict[str, Any]]:
    """The sets of changes, one per run (before seeds).

    ``product``: every combination. ``one-at-a-time``: the unchanged config first, then each value of each grid on
    its own, the others at their defaults (``defaults.get(key)``; a value equal to its default is the default run).
    """
    keys = [k for k, _ in grids]
    if len(set(keys)) != len(keys):
        raise SweepError("the same key is given to --grid twice: " + ", ".join(k for k in keys if keys.count(k) > 1))
    if mode == "product":
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in grids))]
    if mode != "one-at-a-time":
        raise SweepError(f"--mode {mode!r}: expected product or one-at-a-time")
    changes: list[dict[str, Any]] = [{}]
    for key, values in grids:
        changes += [{key: v} for v in values if _fmt_value(v) != _fmt_value(defaults.get(key))]
    return changes


# -- the trials, checked by LightningCLI's parser ---------------------------------------------------------------
class _ParseOnly(MBRLCLI):
    """The ``fit`` command's parser, defaults and checks, building nothing: validates every trial up front."""

    def instantiate_classes(self) -> None:
        """Nothing to build: only the parsed config is wanted."""


@contextlib.contextmanager
def _args_from_python() -> Any:
    """LightningCLI warns when handed arguments while ``sys.argv`` has some: the sweep does so by design."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        yield


def _parser(args: list[str]) -> _ParseOnly:
    try:
        with _args_from_python():  # built as `fit` builds its CLI, raising instead of exiting
            return _ParseOnly(**cli_kwargs(), parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
                              run=False, args=args)
    except Exception as err:  # jsonargparse's ArgumentError and what a class raises while its arguments are checked
        raise SweepError(f"{shlex.join(args)}: {err}") from err


def plan_sweep(config: Path, grids: list[tuple[str, list[Any]]], mode: str = "one-at-a-time",
               seeds: list[int] | None = None, name: str | None = None, extra_args: list[str] | None = None,
               ) -> tuple[list[Trial], Path]:
    """Every trial with its name and checked ``fit`` arguments, and the folder their runs log to."""
    if seeds and any(k == "seed_everything" for k, _ in grids):
        raise SweepError("give seeds either with --seeds or with --grid seed_everything=..., not both")
    extra = list(extra_args or [])
    cli = _parser(["--config", str(config), *extra])
    logger = cli.config.get("trainer.logger")
    if not str(getattr(logger, "class_path", "")).endswith("TensorBoardLogger"):
        raise SweepError(f"{config}: trainer.logger must be one TensorBoardLogger (the report reads its event "
                         f"files; the run names go in its init_args.name), got {logger!r}")
    sweep = name or Path(config).stem
    labels = {**short_labels([k for k, _ in grids]), "seed_everything": "seed"}
    trials = []
    for changes in plan_changes(cli.config, grids, mode):
        for seed in seeds or [None]:
            full = dict(changes) if seed is None else {**changes, "seed_everything": seed}
            run = "__".join([sweep] + [f"{labels[k]}={_name_value(v)}" for k, v in full.items()])
            args = ["--config", str(config), *(f"--{k}={v if isinstance(v, str) else _fmt_value(v)}"
                                               for k, v in full.items()),
                    f"--trainer.logger.init_args.name={run}", *extra]
            try:
                cli.parser.parse_args(args)
            except Exception as err:
                raise SweepError(f"run {run}: {err}") from err
            trials.append(Trial(run, args))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise SweepError("two runs got the same name: " + ", ".join(sorted({n for n in names if names.count(n) > 1})))
    return trials, Path(logger.init_args.save_dir)


# -- running on Ray Tune ----------------------------------------------------------------------------------------
class ReportToTune(pl.Callback):
    """Each iteration's logged scalars to Ray Tune, with the run's ``last.ckpt`` as the trial's checkpoint (a file
    naming it, so Ray copies no weights): a trial that Ray retries goes on from there."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from ray import tune

        if not trainer.is_global_zero:
            return
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        metrics["iteration"] = trainer.current_epoch + 1
        ckpt = trainer.checkpoint_callback
        if not (isinstance(ckpt, ModelCheckpoint) and ckpt.save_last and ckpt.dirpath):
            tune.report(metrics)
            return
        last = Path(ckpt.dirpath, ckpt.CHECKPOINT_NAME_LAST + ckpt.FILE_EXTENSION).resolve()
        with tempfile.TemporaryDirectory() as folder:  # this epoch's last.ckpt is written after this callback
            Path(folder, POINTER).write_text(str(last))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _trial(config: dict[str, Any], runs: dict[str, list[str]], cwd: str, sys_path: list[str]) -> None:
    """One trial on a Ray worker: ``fit`` with its run's arguments, from its ``last.ckpt`` when Ray retries it."""
    from ray import tune

    os.chdir(cwd)  # relative paths in the config mean what they mean to the driver
    sys.path.extend(p for p in sys_path if p not in sys.path)  # class_paths the driver imports (a user's callback)
    args = ["fit", *runs[config["run"]], f"--trainer.callbacks+={__name__}.ReportToTune"]
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            last = Path(folder, POINTER).read_text()
        if Path(last).is_file():
            args.append(f"--ckpt_path={last}")
    with _args_from_python():
        lightning_main(args)


def _trial_name(trial: Any) -> str:
    return trial.config["run"]


def run_trials(trials: list[Trial], storage: Path, sweep: str, address: str | None = None, cpus: float = 1,
               gpus: float = 0, max_failures: int = 1) -> Any:
    """Run the trials on Ray Tune (local Ray, or the cluster at ``address``), ``cpus``/``gpus`` each and
    ``OMP_NUM_THREADS`` = ``cpus``; a failed trial is retried up to ``max_failures`` times. Returns Ray's
    ``ResultGrid``."""
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # Ray's own event files would show up as runs in `report`
    threads = str(max(1, math.floor(cpus)))
    # RAY_worker_niceness: Ray runs its workers at +15 niceness by default, so a trial starves next to a plain `fit`
    env = {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                        "RAY_worker_niceness": "0"}}}
    if address:
        ray.init(address=address, **env)
    else:  # "local": a new Ray in this process, not a cluster that happens to run on this machine
        ray.init(address="local", include_dashboard=False, **env)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, runs={t.name: t.args for t in trials}, cwd=os.getcwd(),
                                                     sys_path=list(sys.path)), {"cpu": cpus, "gpu": gpus}),
            param_space={"run": tune.grid_search([t.name for t in trials])},
            tune_config=tune.TuneConfig(trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=sweep, storage_path=str(storage.resolve()), callbacks=[JsonLoggerCallback()],
                                      failure_config=tune.FailureConfig(max_failures=max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        return tuner.fit()
    finally:
        ray.shutdown()


def summary(results: Any) -> str:
    """Ray's results (a ``ResultGrid``) as a table: run, status, iterations, final eval/return, time in the trial."""
    import pandas as pd

    keys = ("iteration", "eval/return", "time_total_s")
    table = pd.DataFrame([{"run": r.config["run"], "status": "FAILED" if r.error else "ok",
                           **{k: (r.metrics or {}).get(k) for k in keys}} for r in results])
    failed = table["run"][table["status"] != "ok"].tolist()
    return (table.to_string(index=False, float_format="{:.4g}".format) + f"\n{len(table) - len(failed)}/{len(table)}"
            " runs succeeded" + (f"; failed: {', '.join(failed)}" if failed else ""))


# -- command line -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Arguments of the ``sweep`` command (LightningCLI arguments for every run go after ``--``)."""
    p = argparse.ArgumentParser(
        prog="python -m mbrl_lightning sweep",
        description="Run variants of one config as Ray Tune trials, each logged to <save_dir>/<run name>.",
        epilog="Arguments after -- go to every run's `fit` (e.g. -- --trainer.logger.init_args.save_dir runs/x).")
    p.add_argument("--config", type=Path, required=True, help="the base YAML (e.g. configs/mpc/reacher_ablation.yaml)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="dotted config key and its values; repeat for several keys")
    p.add_argument("--mode", choices=("product", "one-at-a-time"), default=None,
                   help="one-at-a-time (default for several --grid): the default run plus each value alone; "
                        "product (default for one --grid): every combination")
    p.add_argument("--seeds", type=str, default=None, help="comma-separated seed_everything values, e.g. 0,1")
    p.add_argument("--name", default=None, help="sweep name, the start of every run name (default: the config's)")
    p.add_argument("--address", default=None,
                   help="join the Ray cluster at HOST:PORT (default: a local Ray, started in this process)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial, also its OMP_NUM_THREADS")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs per trial (fractions share a GPU)")
    p.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial, each from its last.ckpt")
    p.add_argument("--dry-run", action="store_true", help="check every run's arguments and print the commands only")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit code (1 if any run failed, 2 for a bad grid, key or value)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    try:
        grids = [parse_grid(g) for g in args.grid]
        if not grids and not args.seeds:
            raise SweepError("nothing to sweep: give at least one --grid KEY=V1,V2 or --seeds")
        mode = args.mode or ("one-at-a-time" if len(grids) > 1 else "product")
        seeds = parse_seeds(args.seeds) if args.seeds else None
        if not args.config.is_file():
            raise SweepError(f"--config {args.config}: no such file")
        trials, save_dir = plan_sweep(args.config, grids, mode, seeds, args.name, extra)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sweep = args.name or args.config.stem
    print(f"sweep {sweep}: {len(trials)} runs ({mode}{', seeds ' + args.seeds if seeds else ''}), "
          f"logged to {save_dir}/<run>:\n" + "\n".join(t.command for t in trials), flush=True)
    if args.dry_run:
        return 0
    try:
        import ray  # noqa: F401
    except ImportError:
        print('error: sweeps run on Ray Tune: pip install -e ".[sweep]"', file=sys.stderr)
        return 2
    results = run_trials(trials, save_dir / "tune", sweep, args.address, args.cpus_per_trial, args.gpus_per_trial,
                         args.max_failures)
    print("\n" + summary(results))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
