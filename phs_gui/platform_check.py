"""Can Qt open a window here? On Linux, Qt's xcb platform plugin needs X11 libraries that a fresh Debian,
Ubuntu or Fedora does not always have; without them Qt aborts with a generic plugin message.

What the plugin needs is read from the plugin itself: ``ldd`` resolves ``libqxcb.so`` and every library it
pulls in (Qt's own and the system's), and each ``not found`` is a library to install; ``libxcb-cursor``,
which Qt loads at run time rather than links, is checked by loading it. Without ``ldd`` or the plugin, a
short list of the usual culprits is loaded one by one instead.

This module imports no Qt. ``python -m phs_gui.platform_check`` prints the one command that installs what is
missing (``--install-command``: just that command, for ``scripts/setup.sh``, which runs it); ``phs-gui``
calls :func:`problem` before it creates the application and prints that sentence instead of Qt's abort.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package), where the package name does not follow from the soname
KNOWN_PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
}
RUNTIME_LOADED = ("libxcb-cursor.so.0",)
"""Libraries the xcb plugin loads at run time (``dlopen``), so ``ldd`` cannot see them."""
FALLBACK = tuple(KNOWN_PACKAGES)[:6]
"""What is checked when ``ldd`` or the plugin cannot be found."""


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt (``None`` when PySide6 is not installed)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def unresolved(path: Path, env: dict[str, str] | None = None) -> list[str] | None:
    """Sonames ``ldd`` reports as ``not found`` for ``path`` and everything it pulls in (``None``: no ldd)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        out = subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=30,
                             env=None if env is None else dict(env)).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.findall(r"^\s*(\S+)\s+=>\s+not found", out, flags=re.MULTILINE)
    return list(dict.fromkeys(found))


def missing_libraries(plugin: Path | None = None, loads: Callable[[str], bool] = _loads,
                      env: dict[str, str] | None = None) -> list[str]:
    """The sonames the xcb plugin needs that this machine cannot load."""
    plugin = plugin if plugin is not None else xcb_plugin()
    linked = unresolved(plugin, env) if plugin is not None and plugin.is_file() else None
    if linked is None:
        return [so for so in FALLBACK if not loads(so)]
    return linked + [so for so in RUNTIME_LOADED if so not in linked and not loads(so)]


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


def package_for(soname: str, family: str) -> str:
    """The package that provides ``soname``: a known name, else Debian's naming rule (``libfoo-bar.so.0`` is
    ``libfoo-bar0``; a name ending in a digit takes a dash), or on Fedora dnf's soname provide."""
    if soname in KNOWN_PACKAGES:
        return KNOWN_PACKAGES[soname][1 if family == "fedora" else 0]
    if family == "fedora":
        return f"'{soname}()(64bit)'"
    m = re.match(r"^(lib.+?)\.so\.(\d+)", soname)
    if m is None:
        return soname
    stem, version = m.group(1).lower(), m.group(2)
    return f"{stem}{'-' if stem[-1].isdigit() else ''}{version}"


def install_command(missing: list[str], family: str = "debian", sudo: bool = True) -> str:
    """The one command that installs the packages providing the ``missing`` sonames."""
    pkgs = " ".join(dict.fromkeys(package_for(so, family) for so in missing))
    tool = "dnf install -y" if family == "fedora" else "apt-get install -y"
    return f"{'sudo ' if sudo else ''}{tool} {pkgs}"


def needs_xcb(env: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether Qt will use its xcb plugin: Linux, no other platform asked for, no Wayland session."""
    env = os.environ if env is None else env
    if not platform.startswith("linux"):
        return False
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa:
        return qpa.startswith("xcb")
    return not env.get("WAYLAND_DISPLAY")


def sentence(missing: list[str], os_release: str | Path = "/etc/os-release") -> str:
    """One sentence naming ``missing`` and the command that installs them."""
    family = distro_family(os_release)
    if family:
        how = install_command(missing, family)
    else:
        how = f"{install_command(missing, 'debian')} (Debian, Ubuntu) or {install_command(missing, 'fedora')} (Fedora)"
    return (f"PHS desktop cannot open its window: system libraries that Qt needs are missing "
            f"({', '.join(missing)}). Install them with: {how}")


def problem(env: dict[str, str] | None = None, platform: str = sys.platform, plugin: Path | None = None,
            loads: Callable[[str], bool] = _loads, os_release: str | Path = "/etc/os-release") -> str | None:
    """One sentence saying what to install before the window can open, or ``None`` when nothing is missing."""
    if not needs_xcb(env, platform):
        return None
    missing = missing_libraries(plugin, loads, env)
    return sentence(missing, os_release) if missing else None


def import_failure(err: ImportError, os_release: str | Path = "/etc/os-release") -> str | None:
    """The sentence for Qt failing to import because a system library is missing (libEGL, libGL, ...), or
    ``None`` when the error names no shared library."""
    m = re.search(r"(lib[\w.+-]*\.so(?:\.\d+)*)", str(err))
    return sentence([m.group(1)], os_release) if m else None


def main(argv: list[str] | None = None) -> int:
    """Print what is missing and how to install it (``--install-command``: only the command, without
    ``sudo``); exit 1 when something is missing."""
    argv = sys.argv[1:] if argv is None else argv
    missing = missing_libraries() if needs_xcb() or "--install-command" in argv else []
    if "--install-command" in argv:
        if missing:
            print(install_command(missing, distro_family() or "debian", sudo=False))
        return 1 if missing else 0
    if missing:
        print(sentence(missing))
        return 1
    print("Qt's platform libraries are present.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
