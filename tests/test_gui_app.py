"""``phs-gui`` itself: what it prints on the console, and faults met before or while the window starts, each
one sentence with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_app(tmp_path: Path, env_extra: dict, args: list[str], quit_ms: int = 800, drop: tuple = ()) -> subprocess.CompletedProcess:
    """Run ``phs_gui.app.main`` in a child (offscreen), quitting after ``quit_ms``."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f'''
        import sys
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from phs_gui import app, main_window

        def loader(name, device):
            from core.method.engine import load_engine
            return load_engine("demo", device="cpu")

        orig = main_window.MainWindow.__init__
        def init(self, *a, **k):
            k["engine_loader"] = loader
            orig(self, *a, **k)
            QTimer.singleShot({quit_ms}, QApplication.instance().quit)
        main_window.MainWindow.__init__ = init
        sys.exit(app.main(["phs-gui", *{args!r}]))
    '''))
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), **env_extra)
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


@pytest.mark.gui
def test_only_warnings_reach_the_console_unless_verbose(tmp_path):
    quiet = _run_app(tmp_path, {"PHS_DATA_DIR": str(tmp_path / "d1")}, [])
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "INFO" not in quiet.stderr and "window shown" not in quiet.stderr, quiet.stderr
    loud = _run_app(tmp_path, {"PHS_DATA_DIR": str(tmp_path / "d2")}, ["--verbose"])
    assert loud.returncode == 0 and "INFO phs_gui: window shown" in loud.stderr, loud.stderr[-2000:]


def test_a_data_folder_that_is_a_file_is_one_sentence(tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    out = _run_app(tmp_path, {"PHS_DATA_DIR": str(f)}, [])
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phs-gui: ") and str(f) in lines[0]


@pytest.mark.gui
def test_home_unset_starts_with_its_data_folder_or_says_why(tmp_path):
    out = _run_app(tmp_path, {"PHS_DATA_DIR": str(tmp_path / "data")}, [], drop=("HOME",))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    out = _run_app(tmp_path, {}, [], drop=("HOME", "PHS_DATA_DIR", "XDG_DATA_HOME"))
    assert out.returncode in (0, 2) and "Traceback" not in out.stderr, out.stderr[-2000:]
    if out.returncode == 2:
        assert out.stderr.strip().startswith("phs-gui: ") and len(out.stderr.strip().splitlines()) == 1
