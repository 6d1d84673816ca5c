"""The ``fit``/``validate`` commands: LightningCLI with the env dims linked in, user modules imported, resume in place.

Kept apart from ``mbrl_lightning.cli`` (the dispatcher) so that ``theory`` and ``report`` start without importing
Lightning.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningCLI

# imported for their classes: jsonargparse lists the loaded subclasses as the choices of --model / --data in --help
import mbrl_lightning.agents  # noqa: F401
import mbrl_lightning.callbacks  # noqa: F401
import mbrl_lightning.data  # noqa: F401
import mbrl_lightning.models  # noqa: F401


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


class MBRLCLI(LightningCLI):
    """LightningCLI whose model receives ``obs_dim``/``act_dim`` from the DataModule's environment.

    Adds ``imports:`` (modules imported before anything is built) and continues a run resumed with
    ``--ckpt_path <save_dir>/<name>/version_N/checkpoints/last.ckpt`` in that same ``version_N`` folder.
    """

    def __init__(self, *args, **kwargs) -> None:
        silence_tips()
        super().__init__(*args, **kwargs)

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
