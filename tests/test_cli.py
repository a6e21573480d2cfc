"""The command line answers at once (no torch to parse), shows its defaults, and folds identical files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from core.cli import build_parser, main, plural
from core.synthetic.scenes import generate_scene

REPO = Path(__file__).resolve().parent.parent

# One valid command line per command: parsing it must not load a heavy library.
_COMMAND_LINES = [
    ["index", "photos"],
    ["index", "--status", "photos"],
    ["search", "--folder", "photos", "--image", "q.jpg", "--box", "0,0,9,9"],
    ["eval", "--model", "demo", "--seed", "1"],
    ["lvp", "train", "--model", "demo", "--images", "synthetic"],
    ["lvp", "info"],
    ["models"],
    ["scenes", "out"],
    ["download", "demo"],
]


def test_parsing_every_command_imports_no_torch_timm_or_faiss():
    code = f"""
import sys
from core.cli import build_parser, join_negative_values
parser = build_parser()
for argv in {_COMMAND_LINES!r}:
    parser.parse_args(join_negative_values(argv))
subs = parser._subparsers._group_actions[0].choices
for name, sub in subs.items():
    sub.format_help()
print(sorted(name for name in subs))
print(sorted(m for m in ("torch", "timm", "faiss", "torchvision") if m in sys.modules))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    commands, heavy = out.stdout.strip().splitlines()
    assert {c[0] for c in _COMMAND_LINES} <= set(eval(commands))  # every command was parsed here
    assert eval(heavy) == []


def test_every_help_text_shows_its_defaults():
    subs = build_parser()._subparsers._group_actions[0].choices
    search = " ".join(subs["search"].format_help().split())
    assert "--mode {qo,qd} qo: Query-Only; qd: Query-DB re-rank (default: qo)" in search
    assert "(default: 0.2)" in search and "(default: 100.0)" in search and "(default: 4)" in search
    ev = " ".join(subs["eval"].format_help().split())
    assert "cut-off of MP@k and MAP@k (default: 100)" in ev
    assert "(default: 1000)" in ev  # K'
    # An option whose help already says its default is not repeated, and an unset one shows none.
    assert search.count("default") == search.count("(default") + search.count("default:") - search.count("(default:")
    assert "--itae THETA ITAE: attenuate patches whose query norm exceeds THETA, on the query photo --force" in search


def test_plural_forms():
    assert plural(1, "photo") == "1 photo" and plural(2, "photo") == "2 photos"
    assert plural(1, "copy", "copies") == "1 copy" and plural(0, "copy", "copies") == "0 copies"


def test_search_lists_identical_files_once_with_their_copies(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(generate_scene(41, i, (200, 160)).image).save(folder / f"p{i}.png")
    shutil.copyfile(folder / "p2.png", folder / "twin_of_p2.png")
    assert main(["index", str(folder), "--model", "demo", "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    query = tmp_path / "query.png"
    Image.fromarray(generate_scene(41, 2, (200, 160)).image).save(query)  # outside the folder, same pixels
    base = ["search", "--folder", str(folder), "--image", str(query), "--k", "6"]
    assert main([*base, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    paths = [Path(r["path"]).name for r in rows]
    assert len(rows) == 5 and len(set(paths)) == 5  # six files, five distinct contents
    twin = next(r for r in rows if Path(r["path"]).name in ("p2.png", "twin_of_p2.png"))
    assert rows[0] is twin and twin["is_query"]  # the query's content ranks first and is marked
    assert sorted([Path(twin["path"]).name, *(Path(c).name for c in twin["copies"])]) == ["p2.png", "twin_of_p2.png"]
    assert all(r["copies"] == [] for r in rows if r is not twin)
    assert main(base) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 5 and text[0].endswith("(+1 copy; the query photo)")


def test_force_on_without_a_prompt_says_it_has_no_effect(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(generate_scene(43, i, (120, 100)).image).save(folder / f"p{i}.png")
    assert main(["index", str(folder), "--model", "demo", "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    argv = ["search", "--folder", str(folder), "--image", str(folder / "p0.png"), "--force-off", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert captured.err.strip().endswith("they have no effect.") and captured.err.count("\n") == 1
