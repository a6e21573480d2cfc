#!/usr/bin/env bash
# Create .venv and install PHS desktop with its test tools, then the system libraries Qt's window needs.
# PyTorch: the pinned pair below is what CI uses; any torch>=2.2 with a matching torchvision works (pick the
# build for your CUDA from pytorch.org).
#   scripts/setup.sh                 everything
#   scripts/setup.sh --system-only   only the system libraries (an existing .venv)
# System libraries: what Qt's xcb plugin needs and this machine lacks (found with ldd on the plugin) is
# installed with apt-get or dnf, as root or through sudo (which asks for your password); without either,
# the one command to run is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

system_libraries() {
    local check=${PHS_PLATFORM_CHECK:-python -m phs_gui.platform_check}
    local cmd
    if cmd=$($check --install-command); then
        echo "Qt's platform libraries are present."
        return 0
    fi
    local run=()
    if [ "$(id -u)" = 0 ]; then
        run=()
    elif command -v sudo >/dev/null 2>&1; then
        echo "Installing the system libraries Qt needs with sudo: $cmd"
        run=(sudo)
    else
        echo "Qt's window needs system libraries that are missing; as root, run: $cmd"
        return 0
    fi
    case "$cmd" in
        apt-get*) "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
                  "${run[@]}" env DEBIAN_FRONTEND=noninteractive $cmd ;;
        *) "${run[@]}" $cmd ;;
    esac || { echo "Installing failed; run it yourself: ${run[*]:+sudo }$cmd"; return 0; }
    $check || true
}

if [ "${1:-}" != "--system-only" ]; then
    [ -d .venv ] || "$PY" -m venv .venv
    . .venv/bin/activate
    python -m pip install -q --upgrade pip
    python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
    python -m pip install -q -e ".[test]"
else
    [ -d .venv ] && . .venv/bin/activate
fi
system_libraries
