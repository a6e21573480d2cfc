"""Child process for the reliability tests: index, run the CLI or drive the window, optionally as ``nobody``.

Usage: ``python -m tests.reliability_worker ACTION JSON_ARGS``. With ``"as_nobody": true`` in the arguments
the process imports everything it will need while still root, then drops to uid/gid 65534 (``nobody``), so
file permissions are enforced for real (root reads mode-000 files and writes read-only folders). It exits
with :data:`CANNOT_DROP` when it runs as root and cannot drop privileges.

Actions (the result is printed as one JSON line on stdout, prefixed with ``RESULT``):

* ``index``: index ``folder`` with the ``tiny`` real engine or the ``fake`` engine (optionally with the
  mid-run events of :func:`tests.bad_inputs.mid_run_events`; optionally with pillow-heif's import blocked).
* ``settings_loop``: save the preferences file in a tight loop until killed.
* ``cli``: run ``core.cli.main(argv)``; the exit code is the CLI's.
* ``gui_readonly``: open the window on an indexed folder, search, then ask it to index; report the banner.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

CANNOT_DROP = 77
NOBODY = 65534
TINY_MODEL = ("dinov2-s14-reg4", {"img_size": 56, "depth": 2, "embed_dim": 64, "num_heads": 4})


def tiny_engine() -> Any:
    """A tiny real DINOv2-style engine with perturbed (deterministic) weights, on the CPU."""
    from core.method.engine import load_engine
    from tests.conftest import perturb_

    engine = load_engine(TINY_MODEL[0], pretrained=False, model_kwargs=TINY_MODEL[1], device="cpu")
    perturb_(engine.model, seed=11)
    return engine


def drop_privileges() -> None:
    """Become ``nobody`` (only when root); exit with :data:`CANNOT_DROP` if that is refused."""
    if os.geteuid() != 0:
        return
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    except OSError as err:
        print(f"cannot drop privileges: {err}", file=sys.stderr)
        sys.exit(CANNOT_DROP)


def _preimport() -> None:
    """Import, while still root, the modules that code paths import lazily (the interpreter's own files
    may be unreadable to ``nobody``)."""
    import argparse  # noqa: F401
    import concurrent.futures  # noqa: F401
    import fcntl  # noqa: F401
    import heapq  # noqa: F401
    import pkgutil
    import sqlite3  # noqa: F401
    import tempfile  # noqa: F401
    import uuid  # noqa: F401

    import faiss  # noqa: F401
    import tqdm  # noqa: F401
    from PIL import Image

    Image.init()  # every Pillow format plugin

    import contextlib
    import importlib

    import core
    import core.cli
    import core.imageio as imageio

    core.cli.build_parser()  # discovers and imports every sub-command while the package folder is readable
    # Every module of the package too (a checkout in a folder only root may read: the commands import most of
    # what they use lazily). ``__main__`` would run the command line.
    for mod in pkgutil.walk_packages(core.__path__, "core."):
        if not mod.name.endswith("__main__"):
            with contextlib.suppress(ImportError):  # an optional extra that is not installed
                importlib.import_module(mod.name)
    imageio.heif_available()
    imageio.avif_available()


def _result(obj: Any) -> None:
    print("RESULT " + json.dumps(obj), flush=True)


def act_index(args: dict[str, Any]) -> None:
    """Index a folder and print the report."""
    if args.get("block_heif"):
        sys.modules["pillow_heif"] = None  # type: ignore[assignment]  # import raises ImportError
    _preimport()
    from core.library import index_folder
    from tests.bad_inputs import Corpus, mid_run_events
    from tests.index_fakes import FakeEngine

    engine = tiny_engine() if args.get("engine") == "tiny" else FakeEngine()
    import torch  # noqa: F401  - the batch stacking imports it lazily

    corpus = Corpus(
        folder=args["folder"], change_rel=args.get("change_rel"), vanish_rel=args.get("vanish_rel")
    )
    if args.get("as_nobody"):
        drop_privileges()
    events: list[str] = []
    if args.get("events"):
        with mid_run_events(corpus) as events:
            report = index_folder(args["folder"], engine, batch_size=4, workers=2)
    else:
        report = index_folder(args["folder"], engine, batch_size=4, workers=2)
    _result({
        "uid": os.geteuid(),
        "indexed": report.indexed,
        "failed": report.failed,
        "failures": [[f.rel, f.reason] for f in report.failures],
        "scan_errors": [list(e) for e in report.scan_errors],
        "events": events,
    })  # fmt: skip


def act_settings_loop(args: dict[str, Any]) -> None:
    """Save the preferences in a tight loop (until killed); each save is internally consistent."""
    from pathlib import Path

    from phs_gui.session import SearchOptions
    from phs_gui.settings import Preferences, save_preferences

    path = Path(args["path"])
    i = int(args.get("start", 0))
    while True:
        prefs = Preferences(search=SearchOptions(top_k=i % 400 + 1), current_folder=f"/photos/{i}/0",
                            folders=[f"/photos/{i}/{j}" for j in range(int(args.get("folders", 60)))])  # fmt: skip
        save_preferences(prefs, path)
        i += 1


def act_cli(args: dict[str, Any]) -> None:
    """Run the ``phs`` command line (after an optional warm-up run as root that loads every lazy import)."""
    _preimport()
    import torch  # noqa: F401

    import core.method.engine  # noqa: F401 - loads timm and torch modules before privileges are dropped
    from core.cli import main

    for warm in args.get("warmup", []):
        with open(os.devnull, "w") as null:
            old = sys.stdout
            sys.stdout = null
            try:
                main(warm)
            finally:
                sys.stdout = old
    if args.get("as_nobody"):
        drop_privileges()
    sys.exit(main(args["argv"]))


def act_gui_readonly(args: dict[str, Any]) -> None:
    """Search an indexed folder from the window, then ask it to index; print hits and the banner."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _preimport()
    from PySide6.QtWidgets import QApplication

    from phs_gui.main_window import MainWindow
    from phs_gui.render import warm_up
    from phs_gui.settings import Preferences

    app = QApplication.instance() or QApplication([])
    warm_up()

    def wait(cond: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            app.processEvents()
            if time.monotonic() > deadline:
                raise TimeoutError("the window did not get there in time")
            time.sleep(0.01)

    folder = args["folder"]
    # Not searched until the privileges are dropped: every reader of the index is the unprivileged user.
    prefs = Preferences(model="tiny", not_searched=[folder])
    w = MainWindow(prefs, engine_loader=lambda n, d: tiny_engine(), check_weights=False)
    w.show()
    w.load_model("tiny", "cpu")
    wait(lambda: w.session is not None and not w.library.busy)
    if args.get("as_nobody"):
        drop_privileges()
    w.prefs.not_searched = []
    w.prefs.folders = [folder]
    w.library.select_folder(folder)
    wait(lambda: not w.indexing)
    w.query.open_photo(args["photo"])
    wait(lambda: w.photo_path == args["photo"] and w.settled and w.outcome is not None)
    hits = w.docks.results.paths()  # what the results grid shows
    searched_banner = w.banner.text
    w.library.start_indexing(folder)
    wait(lambda: not w.indexing)
    app.processEvents()
    _result({"uid": os.geteuid(), "hits": [str(h) for h in hits], "banner_after_search": searched_banner,
             "banner": w.banner.text, "level": w.banner.level, "status": w.docks.library.status.text()})  # fmt: skip
    w.shutdown()


def main() -> None:
    """Dispatch on the action name."""
    action, args = sys.argv[1], json.loads(sys.argv[2])
    {
        "index": act_index,
        "settings_loop": act_settings_loop,
        "cli": act_cli,
        "gui_readonly": act_gui_readonly,
    }[action](args)


if __name__ == "__main__":
    main()
