"""What a person has marked on the query photo, as an immutable value, and its undo history.

The canvas edits a :class:`PromptState`; the window converts it to a :class:`core.method.prompts.Prompt` only when
it talks to the engine (:meth:`PromptState.to_prompt`). Every committed edit is pushed on a
:class:`History`, so undo and redo restore both the drawing and (through the window) the results.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, replace

import numpy as np

from core.errors import PromptError
from core.method.prompts import Box, Mask, Point, Prompt
from phs_gui.geometry import XYXY, clamp_box


@dataclass(frozen=True, eq=False)
class PromptState:
    """Points, a box and a painted mask on a photo of size ``image_size``.

    Attributes:
        image_size: ``(W, H)`` of the photo in its own pixels (after EXIF orientation).
        points: ``(x, y, positive)`` clicks in image pixels.
        box: XYXY box in image pixels, or ``None``.
        mask: ``(H, W)`` bool painted region (never modified after construction), or ``None``.
        force_on, force_off: heads forced on or off by hand (head indices of the last block); they belong to
            the state so that undo and redo take a forced head back like any other edit.
        objects: the query's other objects (a :class:`phs_gui.objects_state.ObjectSet`), or ``None`` for one.
    """

    image_size: tuple[int, int]
    points: tuple[tuple[float, float, bool], ...] = ()
    box: XYXY | None = None
    mask: np.ndarray | None = None
    force_on: frozenset[int] = frozenset()
    force_off: frozenset[int] = frozenset()
    objects: object = None

    def __post_init__(self) -> None:
        if self.mask is not None:
            m = np.asarray(self.mask, dtype=bool)
            if m.shape != (self.image_size[1], self.image_size[0]):
                raise ValueError(f"mask shape {m.shape} does not match the image size {self.image_size}")
            if not m.any():
                m = None
            else:
                m = m.copy()
                m.setflags(write=False)
            object.__setattr__(self, "mask", m)

    @property
    def is_empty(self) -> bool:
        """Nothing is marked."""
        return not self.points and self.box is None and self.mask is None

    @property
    def has_positive(self) -> bool:
        """Something positive is marked, so a prompt can be built."""
        return any(p for *_, p in self.points) or self.box is not None or self.mask is not None

    def with_point(self, x: float, y: float, positive: bool = True) -> PromptState:
        """A copy with one more click."""
        return replace(self, points=(*self.points, (float(x), float(y), bool(positive))))

    def with_box(self, box: XYXY | None) -> PromptState:
        """A copy whose box is ``box`` clipped to the photo (``None`` removes it)."""
        b = None if box is None else clamp_box(box, *self.image_size)
        return replace(self, box=b)

    def with_mask(self, mask: np.ndarray | None) -> PromptState:
        """A copy with a new painted mask (copied)."""
        return replace(self, mask=mask)

    def cleared(self) -> PromptState:
        """An empty prompt on the same photo (heads forced by hand stay forced)."""
        return PromptState(self.image_size, force_on=self.force_on, force_off=self.force_off, objects=self.objects)

    def with_forced(self, on: set[int] | frozenset[int], off: set[int] | frozenset[int]) -> PromptState:
        """A copy with these heads forced on and off by hand."""
        return replace(self, force_on=frozenset(on), force_off=frozenset(off))

    @property
    def forced(self) -> bool:
        """Some head is forced by hand."""
        return bool(self.force_on or self.force_off)

    def same_as(self, other: PromptState | None) -> bool:
        """Whether two states mark the same thing (masks compared by content)."""
        if other is None or other.image_size != self.image_size:
            return False
        if other.points != self.points or other.box != self.box:
            return False
        if other.force_on != self.force_on or other.force_off != self.force_off:
            return False
        if (self.mask is None) != (other.mask is None):
            return False
        if self.objects is not other.objects and (self.objects is None or not self.objects.same_as(other.objects)):
            return False
        return self.mask is None or bool(np.array_equal(self.mask, other.mask))

    def to_prompt(self) -> Prompt | None:
        """The engine's :class:`core.method.prompts.Prompt`, or ``None`` when nothing positive is marked."""
        if not self.has_positive:
            return None
        w, h = self.image_size
        pts = tuple(
            Point(min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h)), pos) for x, y, pos in self.points
        )
        try:
            return Prompt(
                points=pts,
                box=None if self.box is None else Box(*self.box),
                mask=None if self.mask is None else Mask(self.mask),
            )
        except PromptError:
            return None


class History:
    """Undo/redo of prompt states: a list and a cursor; pushing after an undo drops the redo branch."""

    def __init__(self, initial: PromptState | None = None, limit: int = 200) -> None:
        self._states: list[PromptState] = [] if initial is None else [initial]
        self._pos = len(self._states) - 1
        self._limit = limit

    def reset(self, initial: PromptState) -> None:
        """Start over from ``initial`` (a new photo)."""
        self._states = [initial]
        self._pos = 0

    @property
    def current(self) -> PromptState | None:
        """The state shown now."""
        return self._states[self._pos] if self._states else None

    def push(self, state: PromptState) -> bool:
        """Record an edit; returns ``False`` (and records nothing) when it changes nothing."""
        if state.same_as(self.current):
            return False
        del self._states[self._pos + 1 :]
        self._states.append(state)
        if len(self._states) > self._limit:
            del self._states[0]
        self._pos = len(self._states) - 1
        return True

    @property
    def can_undo(self) -> bool:
        """There is an earlier state."""
        return self._pos > 0

    @property
    def can_redo(self) -> bool:
        """There is a later state."""
        return self._pos < len(self._states) - 1

    def undo(self) -> PromptState | None:
        """Step back; returns the state to show, or ``None`` if there is nothing to undo."""
        if not self.can_undo:
            return None
        self._pos -= 1
        return self._states[self._pos]

    def redo(self) -> PromptState | None:
        """Step forward; returns the state to show, or ``None`` if there is nothing to redo."""
        if not self.can_redo:
            return None
        self._pos += 1
        return self._states[self._pos]


def state_to_dict(state: PromptState) -> dict:
    """A JSON-able copy of ``state`` (the mask bit-packed, zlib-compressed, base64)."""
    d: dict = {"size": list(state.image_size), "points": [list(p) for p in state.points],
               "box": None if state.box is None else [float(v) for v in state.box],
               "force_on": sorted(state.force_on), "force_off": sorted(state.force_off)}
    if state.mask is not None:
        d["mask"] = base64.b64encode(zlib.compress(np.packbits(state.mask).tobytes())).decode("ascii")
    return d


def state_from_dict(d: dict, image_size: tuple[int, int], num_heads: int) -> PromptState | None:
    """The state :func:`state_to_dict` wrote, on a photo of ``image_size``; ``None`` when it does not fit
    (another photo size, a damaged entry). Heads past ``num_heads`` are dropped."""
    try:
        if "size" in d and tuple(d["size"]) != tuple(image_size):
            return None
        w, h = image_size
        mask = None
        if d.get("mask"):
            bits = np.frombuffer(zlib.decompress(base64.b64decode(d["mask"])), np.uint8)
            mask = np.unpackbits(bits)[: w * h].reshape(h, w).astype(bool)
        heads = range(num_heads)
        return PromptState(
            (w, h), tuple((float(x), float(y), bool(p)) for x, y, p in d.get("points", [])),
            None if d.get("box") is None else clamp_box(tuple(float(v) for v in d["box"]), w, h), mask,
            frozenset(int(i) for i in d.get("force_on", []) if int(i) in heads),
            frozenset(int(i) for i in d.get("force_off", []) if int(i) in heads))
    except (KeyError, TypeError, ValueError, zlib.error):
        return None
