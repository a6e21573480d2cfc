"""Public name of :mod:`core.method.prompts` (``from core.prompts import Prompt``): the same module object."""

import sys

from core.method import prompts as _prompts

sys.modules[__name__] = _prompts
