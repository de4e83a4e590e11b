"""``python -m stagevar ...``: the same command line as the ``stagevar`` console script."""

import sys

from .cli import main

sys.exit(main())
