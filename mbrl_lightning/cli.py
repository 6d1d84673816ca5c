"""``python -m mbrl_lightning fit --config configs/....yaml``: LightningCLI with the env dims linked in.

The dispatcher imports Lightning only for ``fit``/``validate`` (``MBRLCLI`` lives in ``lightning_cli``), so
``theory`` and ``report`` start in about a second.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mbrl_lightning.lightning_cli import MBRLCLI


def __getattr__(name: str) -> Any:
    if name == "MBRLCLI":  # ``from mbrl_lightning.cli import MBRLCLI`` imports Lightning on first use
        from mbrl_lightning.lightning_cli import MBRLCLI

        return MBRLCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cli_kwargs() -> dict[str, Any]:
    """How every LightningCLI of ours is built (``fit`` and the sweep's up-front check of its trials)."""
    return dict(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
                seed_everything_default=0, trainer_defaults={"reload_dataloaders_every_n_epochs": 1},
                save_config_kwargs={"overwrite": True})


def lightning_main(args: list[str] | None = None, run: bool = True) -> MBRLCLI:
    """Run LightningCLI (``fit``, ``validate``, ...); model and data are chosen by ``class_path``.

    ``run=False`` only parses ``args`` (no subcommand) and instantiates trainer, model and data.
    """
    from mbrl_lightning.lightning_cli import MBRLCLI

    return MBRLCLI(**cli_kwargs(), args=args, run=run)


def main(argv: list[str] | None = None) -> None:
    """Dispatch: ``theory``, ``report``, ``sweep`` are our own commands; everything else goes to LightningCLI."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "theory":
        from mbrl_lightning.theory.cli import main as theory_main

        sys.exit(theory_main(argv[1:]))
    if argv and argv[0] == "report":
        from mbrl_lightning.report import main as report_main

        sys.exit(report_main(argv[1:]))
    if argv and argv[0] == "sweep":
        from mbrl_lightning.sweep import main as sweep_main

        sys.exit(sweep_main(argv[1:]))
    if not argv or argv[0] in ("-h", "--help"):
        print("mbrl-lightning commands: fit | validate (LightningCLI, below), sweep, report, theory\n"
              "  python -m mbrl_lightning {sweep,report,theory} --help\n")
    from mbrl_lightning.checkpoints import CheckpointError

    try:
        lightning_main(None if from_command_line else argv)
    except CheckpointError as err:  # a broken --ckpt_path: its message says what to do, a traceback would hide it
        sys.exit(f"error: {err}")
