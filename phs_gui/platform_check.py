"""Can Qt open a window here? On Linux, Qt's xcb platform plugin needs a few X11 libraries that a fresh
Debian, Ubuntu or Fedora does not always have; without them Qt aborts with a generic plugin message.

This module imports no Qt. ``python -m phs_gui.platform_check`` prints the one command that installs what is
missing (``scripts/setup.sh`` runs it); ``phs-gui`` calls :func:`problem` before it creates the application
and prints that sentence instead of Qt's abort.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package)
XCB_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
}


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(
    libraries: dict[str, tuple[str, str]] | None = None, loads: Callable[[str], bool] = _loads
) -> list[str]:
    """The sonames of ``libraries`` (default :data:`XCB_LIBRARIES`) that the dynamic loader cannot load."""
    return [so for so in (libraries or XCB_LIBRARIES) if not loads(so)]


def distro_family(os_release: str | Path = "/etc/os-release") -> str:
    """``debian``, ``fedora`` or ``""`` from ``ID`` and ``ID_LIKE`` in os-release."""
    try:
        text = Path(os_release).read_text("utf-8", "replace").lower()
    except OSError:
        return ""
    ids = " ".join(line.split("=", 1)[1].strip('"\' ') for line in text.splitlines()
                   if line.startswith(("id=", "id_like=")))
    if any(k in ids for k in ("debian", "ubuntu")):
        return "debian"
    if any(k in ids for k in ("fedora", "rhel", "centos")):
        return "fedora"
    return ""


def install_command(missing: list[str], family: str = "debian",
                    libraries: dict[str, tuple[str, str]] | None = None) -> str:
    """The one command that installs the packages providing ``missing`` sonames."""
    libs = libraries or XCB_LIBRARIES
    if family == "fedora":
        return "sudo dnf install -y " + " ".join(libs[so][1] for so in missing)
    return "sudo apt-get install -y " + " ".join(libs[so][0] for so in missing)


def needs_xcb(env: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether Qt will use its xcb plugin: Linux, no other platform asked for, no Wayland session."""
    env = os.environ if env is None else env
    if not platform.startswith("linux"):
        return False
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa:
        return qpa.startswith("xcb")
    return not env.get("WAYLAND_DISPLAY")


def problem(
    env: dict[str, str] | None = None,
    platform: str = sys.platform,
    libraries: dict[str, tuple[str, str]] | None = None,
    loads: Callable[[str], bool] = _loads,
    os_release: str | Path = "/etc/os-release",
) -> str | None:
    """One sentence saying what to install before the window can open, or ``None`` when nothing is missing."""
    if not needs_xcb(env, platform):
        return None
    missing = missing_libraries(libraries, loads)
    if not missing:
        return None
    family = distro_family(os_release)
    if family:
        how = install_command(missing, family, libraries)
    else:
        how = (f"{install_command(missing, 'debian', libraries)} (Debian, Ubuntu) or "
               f"{install_command(missing, 'fedora', libraries)} (Fedora)")
    return (f"PHS desktop cannot open its window: system libraries that Qt needs on X11 are missing "
            f"({', '.join(missing)}). Install them with: {how}")


def main() -> int:
    """Print what is missing and how to install it; exit 1 when something is missing."""
    text = problem()
    if text:
        print(text)
        return 1
    print("Qt's platform libraries are present.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
