"""``python -m tfopt.cli``: the ``tfopt`` command (scripts and tests start ``serve`` this way)."""

import sys

from tfopt.cli import main

sys.exit(main())
