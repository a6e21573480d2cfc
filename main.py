"""Start PHS desktop from a checkout: ``python main.py`` (the same as the ``phs-gui`` command)."""

import sys

from phs_gui.app import main

if __name__ == "__main__":
    sys.exit(main())
