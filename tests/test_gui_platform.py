"""What Qt's window needs from the system: found with ldd on the plugin, one sentence when something is
missing (hidden here with a plugin built to need a library that is not on the loader's path, and Qt's own
import failing on libEGL), and ``scripts/setup.sh`` installing it (apt-get, dnf and sudo are stand-ins that
record what they were asked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phs_gui import platform_check as pc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_plugin(tmp_path) -> tuple[Path, Path]:
    """``libqxcb.so`` linked against ``libphs-hidden.so.0``, which lies in a folder the loader does not search."""
    if shutil.which("cc") is None or shutil.which("ldd") is None:
        pytest.skip("needs a C compiler and ldd to build the stand-in plugin")
    hidden, plugin = tmp_path / "hidden", tmp_path / "plugins"
    hidden.mkdir()
    plugin.mkdir()
    (tmp_path / "a.c").write_text("int phs_hidden(void) { return 1; }\n")
    (tmp_path / "b.c").write_text("int phs_hidden(void);\nint plugin(void) { return phs_hidden(); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libphs-hidden.so.0", "-o",
                    str(hidden / "libphs-hidden.so.0"), str(tmp_path / "a.c")], check=True)
    os.symlink("libphs-hidden.so.0", hidden / "libphs-hidden.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(plugin / "libqxcb.so"), str(tmp_path / "b.c"),
                    f"-L{hidden}", "-lphs-hidden"], check=True)
    return plugin / "libqxcb.so", hidden


def test_a_library_the_plugin_links_and_the_loader_cannot_find_is_named_with_its_package(fake_plugin, tmp_path):
    plugin, hidden = fake_plugin
    osr = tmp_path / "os-release"
    osr.write_text("ID=debian\n")
    env = {"DISPLAY": ":0", "PATH": os.environ.get("PATH", "")}
    text = pc.problem(env=env, platform="linux", plugin=plugin, loads=lambda so: True, os_release=osr)
    assert text is not None and "libphs-hidden.so.0" in text
    assert text.endswith("Install them with: sudo apt-get install -y libphs-hidden0") and text.count("\n") == 0
    found = {**env, "LD_LIBRARY_PATH": str(hidden)}  # the same plugin, with the library on the path
    assert pc.problem(env=found, platform="linux", plugin=plugin, loads=lambda so: True, os_release=osr) is None
    # What Qt loads at run time (not linked) is still checked by loading it.
    text = pc.problem(env=found, platform="linux", plugin=plugin, loads=lambda so: "cursor" not in so,
                      os_release=osr)
    assert text is not None and "apt-get install -y libxcb-cursor0" in text
    osr.write_text("ID=fedora\n")
    text = pc.problem(env=env, platform="linux", plugin=plugin, loads=lambda so: "cursor" not in so, os_release=osr)
    assert "sudo dnf install -y 'libphs-hidden.so.0()(64bit)' xcb-util-cursor" in text


def test_package_names_follow_debians_rule_or_the_known_table():
    assert pc.package_for("libxcb-shape.so.0", "debian") == "libxcb-shape0"
    assert pc.package_for("libxkbcommon-x11.so.0", "debian") == "libxkbcommon-x11-0"
    assert pc.package_for("libEGL.so.1", "debian") == "libegl1"
    assert pc.package_for("libdbus-1.so.3", "debian") == "libdbus-1-3"
    assert pc.package_for("libEGL.so.1", "fedora") == "libglvnd-egl"


def test_qt_failing_to_import_for_libegl_is_one_sentence_with_the_install_command(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent('''
        import sys
        from importlib.abc import MetaPathFinder

        class NoEGL(MetaPathFinder):  # what the loader says when libEGL.so.1 is not installed
            def find_spec(self, name, path=None, target=None):
                if name in ("PySide6.QtGui", "PySide6.QtWidgets"):
                    raise ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")
                return None

        sys.meta_path.insert(0, NoEGL())
        from phs_gui import app
        sys.exit(app.main(["phs-gui"]))
    '''))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), PHS_DATA_DIR=str(tmp_path / "d"))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "libEGL.so.1" in lines[0] and "apt-get install -y libegl1" in lines[0]


def _setup(tmp_path: Path, uid: str, with_sudo: bool, missing: str = "apt-get install -y libxcb-cursor0"):
    """Run ``scripts/setup.sh --system-only`` with stand-ins for id, apt-get, sudo and the check."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True, exist_ok=True)
    log, state = tmp_path / "calls.log", tmp_path / "installed"
    tools = {"id": f'echo {uid}', "apt-get": f'echo "apt-get $*" >> {log}; [ "$1" = install ] && touch {state}; true',
             "check": f'if [ -e {state} ]; then exit 0; fi; [ "${{1:-}}" = --install-command ] && echo "{missing}"; exit 1'}
    if with_sudo:
        tools["sudo"] = f'echo "sudo $*" >> {log}; "$@"'
    for name, body in tools.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "PHS_PLATFORM_CHECK": str(bin_ / "check"), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--system-only"], env=env,
                         capture_output=True, text=True, timeout=60)
    return out, (log.read_text() if log.exists() else ""), state.exists()


def test_setup_installs_the_missing_libraries_as_root_or_through_sudo_else_prints_the_command(tmp_path):
    out, calls, installed = _setup(tmp_path / "root", "0", with_sudo=False)
    assert out.returncode == 0 and installed, out.stderr
    assert calls.splitlines() == ["apt-get update -qq", "apt-get install -y libxcb-cursor0"]
    out, calls, installed = _setup(tmp_path / "user", "1000", with_sudo=True)
    assert out.returncode == 0 and installed and "sudo env DEBIAN_FRONTEND=noninteractive apt-get install" in calls
    out, calls, installed = _setup(tmp_path / "nobody", "1000", with_sudo=False)
    assert out.returncode == 0 and not installed and calls == ""
    assert "as root, run: apt-get install -y libxcb-cursor0" in out.stdout
