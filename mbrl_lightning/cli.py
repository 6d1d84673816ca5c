"""``python -m mbrl_lightning fit --config configs/....yaml``: LightningCLI with the env dims linked in."""

from __future__ import annotations

import sys

from pytorch_lightning.cli import LightningCLI


class MBRLCLI(LightningCLI):
    """LightningCLI whose model receives ``obs_dim``/``act_dim`` from the DataModule's environment."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.obs_dim", "model.init_args.obs_dim", apply_on="instantiate")
        parser.link_arguments("data.act_dim", "model.init_args.act_dim", apply_on="instantiate")


def lightning_main(args: list[str] | None = None, run: bool = True) -> MBRLCLI:
    """Run LightningCLI (``fit``, ``validate``, ...); model and data are chosen by ``class_path``.

    ``run=False`` only parses ``args`` (no subcommand) and instantiates trainer, model and data.
    """
    return MBRLCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults={"reload_dataloaders_every_n_epochs": 1},
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


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
    lightning_main(None if from_command_line else argv)
