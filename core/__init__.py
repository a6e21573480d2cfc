"""PHS desktop core: Qt-free library for prompt-guided attention head selection (PHS).

The main entry point is :class:`core.method.engine.PHSEngine` ("encode once, prompt many").
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that finish a parallel region sleep instead of spinning (set before torch loads OpenMP; an
# explicit setting wins): spinning workers took the cores from the Python, SQLite and FAISS work between the
# Query-DB re-rank's matrix products on a 2-core machine, while photo encoding and prompt edits gained nothing
# from them (figures: README, "Measured figures"; bench/bench_scale.py, bench/bench_engine.py).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

