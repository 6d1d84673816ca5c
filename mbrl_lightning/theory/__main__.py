"""``python -m mbrl_lightning.theory``: see :func:`mbrl_lightning.theory.cli.main`."""

from mbrl_lightning.theory.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
