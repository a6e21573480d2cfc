"""``phs models``: the supported backbones and whether their weights are on this machine."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "List the supported models and whether their weights are on this machine."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print one line per model: name, label, availability."""
    from core.models.backbones import DEFAULT_MODEL, list_models, weights_available  # torch: import on use

    for spec in list_models():
        if spec.family == "test":
            continue
        if spec.resource is not None:
            state = "shipped" if weights_available(spec) else "missing from this install (reinstall)"
        else:
            state = "ready" if weights_available(spec) else f"not downloaded (phs download {spec.name})"
        default = "  (default)" if spec.name == DEFAULT_MODEL else ""
        print(f"{spec.name:18s} {spec.label:36s} {state}{default}")
    return 0
