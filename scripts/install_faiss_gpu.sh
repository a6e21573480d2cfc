#!/usr/bin/env bash
# Replace faiss-cpu (a hard dependency) with faiss-gpu-cu12 in the active environment: both ship the same
# faiss/ package, so they are alternatives and must never be installed together (core.library.vectors
# refuses to start with both). Back to the CPU build: pip uninstall -y faiss-gpu-cu12 && pip install --force-reinstall faiss-cpu
set -euo pipefail
python -m pip uninstall -y faiss-cpu faiss-gpu-cu12 || true
python -m pip install "faiss-gpu-cu12>=1.8"
python - <<'PY'
import faiss
from core.library.vectors import check_faiss_install, gpu_available, installed_faiss
check_faiss_install()
print("FAISS", faiss.__version__, "from", installed_faiss(), "- GPUs visible:", faiss.get_num_gpus() if gpu_available() else 0)
PY
