"""Public entry point of the engine: ``from core.engine import load_engine, PHSEngine``.

The engine lives in :mod:`core.method.engine`; these are its public names, re-exported
(``core.engine.PHSEngine is core.method.engine.PHSEngine``).
"""

from core.method.engine import (
    ENGINE_ITAE,
    EncodedBatch,
    EngineCounters,
    FAParams,
    PHSEngine,
    load_engine,
)

__all__ = ["ENGINE_ITAE", "EncodedBatch", "EngineCounters", "FAParams", "PHSEngine", "load_engine"]
