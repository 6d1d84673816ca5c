"""The ``fit``/``validate`` commands: LightningCLI with the env dims linked in, user modules imported, resume in place.

Kept apart from ``mbrl_lightning.cli`` (the dispatcher) so that ``theory`` and ``report`` start without importing
Lightning.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path

from jsonargparse import Namespace
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_info

# imported for their classes: jsonargparse lists the loaded subclasses as the choices of --model / --data in --help
import mbrl_lightning.agents  # noqa: F401
import mbrl_lightning.callbacks  # noqa: F401
import mbrl_lightning.data  # noqa: F401
import mbrl_lightning.models  # noqa: F401
from mbrl_lightning.callbacks.preemption import CheckpointOnSignal
from mbrl_lightning.checkpoints import (
    CheckpointError,
    check_checkpoint,
    find_last_checkpoint,
    install_atomic_checkpoint_io,
)


class _NoTips(logging.Filter):
    """Drops Lightning's promotional "💡 Tip: ... try installing ..." lines; its other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def silence_tips() -> None:
    """Install ``_NoTips`` on the logger Lightning's ``rank_zero_info`` writes to (once)."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in logger.filters):
        logger.addFilter(_NoTips())


def import_modules(names: list[str]) -> None:
    """Import a config's ``imports:`` (user modules that register environments and tasks), naming a missing one."""
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the module exists but itself imports something missing
            raise ModuleNotFoundError(f"imports: cannot import '{name}' ({err}); run from the folder that holds "
                                      "it or put that folder on PYTHONPATH") from err


LEARNED_HEAD_ARGS = ("learn_reward", "learn_termination")


def resolve_learned_heads(config) -> None:
    """Turn the model's ``learn_reward``/``learn_termination: auto`` (MBPO's: its ``dynamics``') into whether the
    run's env lacks a registered task: such an env plans and rolls out on the model's own reward and termination.
    The resolved values are what config.yaml records."""
    env_id, init = config.get("data.init_args.env_id"), config.get("model.init_args")
    if env_id is None or init is None:
        return
    from mbrl_lightning import envs

    learn = envs.find_task(env_id) is None
    dynamics = init.get("dynamics")
    for args in (init, dynamics.get("init_args") if dynamics is not None and hasattr(dynamics, "get") else None):
        for key in LEARNED_HEAD_ARGS:
            if args is not None and args.get(key) == "auto":
                args[key] = learn


def resumed_version(ckpt_path: str | None, logger: object) -> str | None:
    """The ``version_N`` folder a checkpoint lies in, if it is this logger's ``<save_dir>/<name>/version_N/
    checkpoints/``: resuming from it logs on into that folder (one curve), not into a new version."""
    init = getattr(logger, "init_args", None)
    if not ckpt_path or init is None or getattr(init, "version", 0) is not None or "save_dir" not in init:
        return None
    ckpt = Path(ckpt_path).resolve()
    root = Path(init.save_dir) / init.name if init.get("name") else Path(init.save_dir)
    if ckpt.parent.name != "checkpoints" or ckpt.parent.parent.parent != root.resolve():
        return None
    return ckpt.parent.parent.name


def last_checkpoint(config: Namespace) -> tuple[Path | None, str]:
    """What ``--ckpt_path last`` means for ``config`` (one subcommand's): (the run's newest ``last.ckpt`` or
    ``None``, the files searched, for messages).

    That is ``<save_dir>/<name>/version_N/checkpoints/last.ckpt`` of the logger's highest ``N`` that has one (of its
    ``version`` only, where the config fixes it), or ``<dirpath>/last.ckpt`` where a ``ModelCheckpoint`` names its
    ``dirpath``. A config without one logger that has a ``save_dir`` (no logger, Lightning's default one, a list)
    is refused: there is no folder of its runs to search.
    """
    for callback in config.get("trainer.callbacks") or []:
        init = getattr(callback, "init_args", None)
        if str(getattr(callback, "class_path", "")).endswith("ModelCheckpoint") and init is not None \
                and init.get("dirpath"):
            last = Path(init.dirpath) / "last.ckpt"
            return (last if last.is_file() else None), str(last)
    logger = config.get("trainer.logger")
    init = getattr(logger, "init_args", None)
    if init is None or not init.get("save_dir"):
        raise CheckpointError("--ckpt_path last resumes <save_dir>/<name>/version_N/checkpoints/last.ckpt of the "
                              "run's logger, but this config names no logger with a save_dir (trainer.logger, e.g. "
                              "a TensorBoardLogger as in configs/): give the checkpoint's path instead")
    root = Path(init.save_dir) / init.name if init.get("name") else Path(init.save_dir)
    version = init.get("version")
    folder = "version_*" if version is None else version if isinstance(version, str) else f"version_{version}"
    return find_last_checkpoint(root, version), str(root / folder / "checkpoints" / "last.ckpt")


class MBRLCLI(LightningCLI):
    """LightningCLI whose model receives ``obs_dim``/``act_dim`` from the DataModule's environment.

    Adds ``imports:`` (modules imported before anything is built); continues a run resumed with
    ``--ckpt_path <save_dir>/<name>/version_N/checkpoints/last.ckpt`` in that same ``version_N`` folder, and
    ``--ckpt_path last`` with that run's newest one (a requeued job needs no edited command); checks the checkpoint
    before anything loads it (``CheckpointError`` names a truncated, foreign or other-env file and the checkpoint
    to use instead); and saves checkpoints atomically (``AtomicCheckpointIO``), so a kill during a save leaves the
    previous checkpoint usable.
    """

    def __init__(self, *args, **kwargs) -> None:
        silence_tips()
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, then turn ``--ckpt_path last`` into the run's newest checkpoint and check the checkpoint: both
        before LightningCLI reads the checkpoint's hyperparameters (right after this), which would otherwise skip
        ``last`` (not a file) and fail on a broken file with torch's own error."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is None or not config.get("ckpt_path"):
            return
        if str(config.ckpt_path) in ("best", "hpc") or "://" in str(config.ckpt_path):
            return  # Lightning's other special values and remote files: Lightning resolves and reads them
        if str(config.ckpt_path) == "last":
            last, searched = last_checkpoint(config)
            if last is None:
                rank_zero_info(f"--ckpt_path last: no checkpoint yet ({searched}): starting the run from scratch")
                config.ckpt_path = None
                return
            rank_zero_info(f"--ckpt_path last: resuming {last}")
            config.ckpt_path = str(last)
        check_checkpoint(config.ckpt_path, env_id=config.get("data.init_args.env_id"),
                         model_class=config.get("model.class_path"))

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The configured Trainer, its checkpoints saved through ``AtomicCheckpointIO`` (unless the config chose
        another checkpoint IO), with ``CheckpointOnSignal`` (unless the config has one): SIGTERM, SIGUSR1 and
        SIGINT save a checkpoint at the next safe point, and checkpoints are put in place only once what was logged
        up to them is on disk."""
        trainer = super().instantiate_trainer(**kwargs)
        install_atomic_checkpoint_io(trainer)
        if not any(isinstance(c, CheckpointOnSignal) for c in trainer.callbacks):
            # before the checkpoint callbacks, where Lightning keeps every other callback
            first = next((i for i, c in enumerate(trainer.callbacks) if isinstance(c, Checkpoint)),
                         len(trainer.callbacks))
            trainer.callbacks.insert(first, CheckpointOnSignal())
        return trainer

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--imports", type=list[str], default=[],
                            help="Modules to import before the classes are built, e.g. one that registers your "
                                 "environment and its task (see README, Environments).")
        parser.link_arguments("data.obs_dim", "model.init_args.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.act_dim", "model.init_args.act_dim", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        import_modules(config.get("imports") or [])
        resolve_learned_heads(config)
        logger = config.get("trainer.logger")
        version = resumed_version(config.get("ckpt_path"), logger)
        if version is not None:
            logger.init_args.version = version
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
