"""Where PHS desktop keeps its own files.

Everything the app writes (indexes, caches, settings, the generated demo gallery) lives under one data
directory: ``$PHS_DATA_DIR`` when set (tests and portable installs use it), else the platform's user data
directory from platformdirs. A user's photo folder is only ever opened for reading.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from core.errors import PHSError

APP_NAME = "phs-desktop"
ENV_DATA_DIR = "PHS_DATA_DIR"


def data_dir() -> Path:
    """Return the data directory, creating it if needed.

    Raises:
        PHSError: It is a file, lies under a file, or cannot be created (a read-only disk, no permission);
            an existing folder on a read-only disk is returned as it is, so searching keeps working.
    """
    env = os.environ.get(ENV_DATA_DIR)
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    where = f"The data folder {path}" + (f" (from {ENV_DATA_DIR})" if env else "")
    fix = f"set {ENV_DATA_DIR} to a folder you can write to" if env else f"set {ENV_DATA_DIR} to another folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PHSError(f"{where} is a file or lies under a file, not a folder: move that file away or {fix}.") from None
    except OSError as err:
        if path.is_dir():
            return path
        reason = (err.strerror or str(err)).lower()
        raise PHSError(f"{where} cannot be created ({reason}): {fix}.") from None
    return path


def resources_dir() -> Path:
    """Return the folder of shipped resources (demo model weights, model card, icons).

    Found through the installed ``phs_resources`` package (a wheel maps the repository's ``resources/``
    folder to it), else next to this checkout.
    """
    try:
        from importlib.resources import files

        path = Path(str(files("phs_resources")))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "resources"
