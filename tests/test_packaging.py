"""Packaging: every package is listed, resources ship inside the wheel, core stays Qt-free."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _packages_on_disk() -> set[str]:
    found = set()
    for top in ("core", "phs_gui"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_every_package_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    assert _packages_on_disk() <= listed
    assert cfg["tool"]["setuptools"]["package-dir"]["phs_resources"] == "resources"


def test_core_never_imports_qt():
    """The same rule import-linter enforces in CI, checked on the source text."""
    for path in (ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(("PySide6", "shiboken6", "phs_gui")), f"{path} imports {n}"


@pytest.mark.slow
def test_wheel_contains_resources(tmp_path):
    """Resources must be found from an installed wheel, not only from a checkout."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("phs_desktop-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "resources").iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".md")}
    for name in shipped:
        assert f"phs_resources/{name}" in names
    assert "core/method/engine.py" in names and "core/cli/commands/models.py" in names
    # Installed from the wheel, away from the checkout, the resources folder is the installed one.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = "import core.paths as p; print(p.resources_dir())"
    res = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == target / "phs_resources"
