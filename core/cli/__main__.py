"""``python -m core.cli``: the same as the ``phs`` command."""

import sys

from core.cli import main

sys.exit(main())
