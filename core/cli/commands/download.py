"""``phs download MODEL``: fetch a model's weights into the Hugging Face cache (needs internet)."""

from __future__ import annotations

import argparse

NAME = "download"
HELP = "Download a model's weights into the Hugging Face cache, with progress (needs internet)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``MODEL`` positional."""
    parser.add_argument("model", help="model name, e.g. dinov2-b14 (see `phs models`)")


def run(args: argparse.Namespace) -> int:
    """Download (or find) the weights, then load them once to check they fit the architecture."""
    from core.errors import WeightsNotFoundError
    from core.models.backbones import get_spec, hf_weights_path, load_backbone  # torch: import on use

    spec = get_spec(args.model)
    if spec.resource is not None:
        print(f"{spec.name} ships with PHS desktop; nothing to download.")
        return 0
    if spec.hf_repo is None:
        raise WeightsNotFoundError(f"'{spec.name}' has no download source; pass a local file with --weights.")
    path = hf_weights_path(spec, download=True)
    load_backbone(spec.name, weights=path)
    print(f"{spec.label}: weights ready at {path}")
    return 0
