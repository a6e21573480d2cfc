"""PHS desktop core: Qt-free library for prompt-guided attention head selection (PHS).

The main entry point is :class:`core.method.engine.PHSEngine` ("encode once, prompt many").
"""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that finish a parallel region sleep instead of spinning (set before torch loads OpenMP; an
# explicit setting wins). On a 2-core machine spinning workers took the core from the Python, SQLite and
# FAISS work between the Query-DB re-rank's matrix products: with spinning, the re-rank of 1,000 ViT-B
# candidates took p50 63 ms / p90 113 ms, with sleeping 47 / 51 ms; photo encoding and prompt edits did not
# change (bench/bench_scale.py, bench/bench_engine.py).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

