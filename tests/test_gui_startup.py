"""The window shows before the model's libraries load: nothing on the way to a shown window imports torch or
timm (they load in the worker that loads the model)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PHS_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_importing_the_window_does_not_import_torch(tmp_path):
    out = _run("""
        import sys
        import phs_gui.app, phs_gui.main_window
        print(sorted(m for m in ("torch", "timm") if m in sys.modules))
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.gui
def test_window_is_built_and_shown_without_torch_then_the_model_loads(tmp_path):
    out = _run("""
        import sys
        from PySide6.QtWidgets import QApplication
        from phs_gui.main_window import MainWindow

        app = QApplication([])
        w = MainWindow(check_weights=False)
        w.show()
        app.processEvents()
        print("shown", "torch" in sys.modules, w.docks.controls.method.currentText())
        sys.stdout.flush()
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["shown", "False", "PHS"]
