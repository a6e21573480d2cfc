"""The settings of a learned visual prompt (seed 004), importable without torch (the CLI shows their defaults).

:class:`TrainConfig` is what :func:`core.method.lvp_train.train_prompt` runs with and what a prompt's
sidecar records; :func:`check_shape` is the one check of a prompt's shape and ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.errors import PHSError, PromptError

SHAPES = ("circle", "square")
"""Shape masks of seed 004, Fig. 3: hollow circle and hollow square."""


def check_shape(shape: str, ratio: float) -> None:
    """Refuse a shape other than :data:`SHAPES` or a ratio outside ``[0, 1)`` with one sentence.

    Raises:
        PromptError: naming the bad value.
    """
    if shape not in SHAPES:
        raise PromptError(f"The prompt shape must be circle or square, not '{shape}'.")
    if not (0.0 <= ratio < 1.0):
        raise PromptError(f"The shape ratio must be at least 0 and below 1, not {ratio}.")


@dataclass
class TrainConfig:
    """Everything that determines a learned prompt (recorded in its JSON sidecar).

    Attributes:
        shape: ``circle`` or ``square`` (seed 004, Fig. 3).
        ratio: ``lambda``, inner to outer size of the hollow shape.
        size: patch side in input pixels; ``None`` = three tokens (``3 x`` the model's patch size).
        steps: optimisation steps.
        batch: images per step.
        lr: Adam learning rate of the neural prior.
        sigma: standard deviation of the Gaussian target, in tokens.
        seed: seeds the noise prior, the prior's initial weights, the images and the positions of each step.
        scenes: generated training scenes (``--images synthetic``).
        checkpoint_every: steps between checkpoints.
        gain_images: held-out images for the attention gain written with the prompt (0: skip).
    """

    shape: str = "circle"
    ratio: float = 0.5
    size: int | None = None
    steps: int = 600
    batch: int = 32
    lr: float = 3e-4
    sigma: float = 1.0
    seed: int = 0
    scenes: int = 2000
    checkpoint_every: int = 50
    gain_images: int = 200

    def resolved_size(self, patch_size: int, input_size: int) -> int:
        """The patch side in input pixels (``size``, or three tokens), checked against the input."""
        n = self.size if self.size is not None else 3 * patch_size
        if not 3 <= n <= input_size:
            raise PHSError(f"The prompt size must be between 3 and {input_size} pixels (the model's input), not {n}.")
        return int(n)

    def check(self) -> None:
        """Refuse impossible settings with one sentence."""
        check_shape(self.shape, self.ratio)
        if self.steps < 1 or self.batch < 1:
            raise PHSError(f"--steps and --batch must be at least 1, got {self.steps} and {self.batch}.")
        if not (self.lr > 0 and self.sigma > 0):
            raise PHSError("The learning rate and sigma must be positive.")
        if self.scenes < 1 or self.checkpoint_every < 1 or self.gain_images < 0:
            raise PHSError("--scenes and --checkpoint-every must be at least 1, and the gain images not negative.")

    def resume_key(self) -> dict[str, Any]:
        """Settings a checkpoint must share to be continued (``steps`` may grow, ``gain_images`` may change)."""
        return {k: v for k, v in asdict(self).items() if k not in ("steps", "checkpoint_every", "gain_images")}
