"""What data a model fits: each registered model declares it, so a mismatch is caught before building.

A model that cannot take the data would otherwise fail mid-run with a framework shape traceback (a
28 x 28 CNN fed 8 x 8 digits). ``DataFit`` states the model's needs in the terms of the data - image
views, sides, size, classes - and :func:`cohep.models.check_fits` turns a mismatch into one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Mapping, Sequence


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class DataFit:
    """The images ``(views, H, W)`` and classes a model takes; ``None`` means any.

    ``min_side`` may be a function of the spec's ``params`` (the compact model's patch size sets how
    small its images may be). A malformed declaration raises ``ValueError`` where it is written, so a
    model module with a bad one fails at import.
    """

    views: int | None = None  #: exact number of views (image channels)
    min_side: int | Callable[[Mapping[str, Any]], int] = 1  #: smallest H and W
    size: tuple[int, int] | None = None  #: exact (H, W)
    classes: int | None = None  #: exact number of classes

    def __post_init__(self) -> None:
        if self.views is not None and not _positive_int(self.views):
            raise ValueError(f"DataFit.views must be a positive integer or None, got {self.views!r}")
        if not (callable(self.min_side) or _positive_int(self.min_side)):
            raise ValueError(f"DataFit.min_side must be a positive integer or a function of params, got {self.min_side!r}")
        if self.size is not None and not (
            isinstance(self.size, tuple) and len(self.size) == 2 and all(_positive_int(s) for s in self.size)
        ):
            raise ValueError(f"DataFit.size must be a (H, W) tuple of positive integers or None, got {self.size!r}")
        if self.size is not None and _positive_int(self.min_side) and min(self.size) < self.min_side:
            raise ValueError(f"DataFit.size {self.size} is below DataFit.min_side {self.min_side}")
        if self.classes is not None and not _positive_int(self.classes):
            raise ValueError(f"DataFit.classes must be a positive integer or None, got {self.classes!r}")

    def min_side_for(self, params: Mapping[str, Any]) -> int:
        return int(self.min_side(params)) if callable(self.min_side) else self.min_side

    def mismatch(
        self, input_shape: Sequence[int], n_classes: int | None = None, params: Mapping[str, Any] | None = None
    ) -> tuple[str, str] | None:
        """``(needed, given)`` for the first way the data does not fit, or None when it fits.

        ``n_classes=None`` skips the class check (choosing a model for an image shape alone).
        """
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3:
            return "images of shape (views, H, W)", f"shape {list(shape)}"
        views, h, w = shape
        if self.views is not None and views != self.views:
            return f"{self.views} view{'s' if self.views != 1 else ''} per image", f"{views}"
        if self.size is not None and (h, w) != self.size:
            return f"{self.size[0]} x {self.size[1]} images", f"{h} x {w}"
        side = self.min_side_for(params or {})
        if min(h, w) < side:
            return f"images of at least {side} x {side}", f"{h} x {w}"
        if n_classes is not None and self.classes is not None and n_classes != self.classes:
            return f"{self.classes} classes", f"{n_classes}"
        return None
