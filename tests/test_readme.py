"""The README stays true: its Python example runs and every `phs` command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from core.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_python_example_runs(capsys):
    code = re.findall(r"```python\n(.*?)```", README, re.S)
    assert code, "README has no Python example"
    exec(compile(code[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "selected heads:" in out and "VisionTransformer" in out


def test_every_documented_command_exists():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    documented = set(re.findall(r"`phs ([a-z-]+)", README))
    assert documented, "README documents no phs command"
    assert documented <= set(sub.choices), documented - set(sub.choices)


def test_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in README and "bash scripts/test.sh" in ci
