"""Public entry point of the engine: ``from core.engine import load_engine, PHSEngine``.

The engine lives in :mod:`core.method.engine`; this module is the same module object under its public name,
so ``core.engine.PHSEngine is core.method.engine.PHSEngine``.
"""

import sys

from core.method import engine as _engine

sys.modules[__name__] = _engine
