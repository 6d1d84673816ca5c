import sys

from mbrl_lightning.report import main

sys.exit(main())
