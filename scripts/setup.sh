#!/usr/bin/env bash
# Create .venv and install PHS desktop with its test tools. PyTorch: the pinned pair below is what CI uses;
# any torch>=2.2 with a matching torchvision works (pick the build for your CUDA from pytorch.org).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
python -m pip install -q -e ".[test]"
# Qt's window needs a few X11 libraries on Linux; say which, and the command that installs them.
python -m phs_gui.platform_check || true
