"""The ``phs`` command line: ``phs <command> [options]``; ``phs <command> --help`` for each command.

Parsing imports no torch, timm or faiss (a command imports them when it runs), so ``phs --help``, every
``phs X --help``, ``phs models`` and ``phs index --status`` answer at once.

Errors the user can act on (:class:`core.errors.PHSError`) are printed as one sentence on stderr with a
non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import pkgutil
import re
import sys
from collections.abc import Sequence

from core import __version__
from core.cli import commands as _commands_pkg
from core.errors import PHSError


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help shows its default: ``(default: X)`` is added where the text does not say it.

    Options without a value to show (``None``, a flag that is off, an empty list) are left as written.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or (isinstance(default, (list, tuple)) and not default)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 photo``, ``2 photos``: ``n`` with the word in the right number (``words``: an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


@functools.cache
def _command_modules() -> tuple:
    """The sub-command modules, discovered once per process (later calls need no access to the package folder)."""
    mods = []
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{_commands_pkg.__name__}.{info.name}"))
    return tuple(mods)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-parser per module in :mod:`core.cli.commands`."""
    parser = argparse.ArgumentParser(
        prog="phs",
        description="PHS desktop: mark an object in a photo, find the photos of your library that contain it.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"phs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP, formatter_class=HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


_NEGATIVE_NUMBERS = re.compile(r"^-\.?\d")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--box -5,-5,50,50`` -> ``--box=-5,-5,50,50``: argparse takes a value that starts with ``-`` (and is not
    a single plain number) for an option; coordinates of a prompt may be negative."""
    out: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--") and "=" not in tok and i + 1 < len(argv) and _NEGATIVE_NUMBERS.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (0 ok, 1 failure reported, 2 usage or user error)."""
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a full or failing output is found here, not at exit
        return code
    except PHSError as err:
        print(f"phs: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phs: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`phs search ... | head`): not an error, and no traceback at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        # What is left: the output cannot be written (`> /dev/full`), or a file or folder the command needs
        # failed in a way no command foresaw. One sentence either way, never a traceback.
        where = f" ({err.filename})" if err.filename else ""
        what = "write the output" if err.filename is None else "use a file or folder it needs"
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        print(f"phs: could not {what}{where}: {err.strerror or err}.", file=sys.stderr)
        return 2
