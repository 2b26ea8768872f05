"""Region evidence: the classifier's class probabilities for parts of a photo, pooled with the whole frame's.

The bundled classifier is linear on the average-pooled 7x7 feature grid (``encoders.efficientnet.
classifier_weights``), so the class logits of a window of the photo are the classifier applied to the mean of
that window's grid cells: a dog in a corner or a bus behind people gets the probability its window gives it,
at the cost of a (windows x 1280) @ (1280 x 1000) product per photo and no second pass through the backbone.
Each class's evidence is pooled over the whole frame and the windows (``max``, or ``noisy-or``: the chance that
at least one view shows it, each window's probability scaled by ``region_weight``), and is handed on as
``log(evidence)``: softmax(log p / T) is softmax(logits / T) for the whole frame alone, so the concept space reads
evidence exactly as it reads logits, and the layout ``(7,)`` is the release's whole-frame evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from vistext.errors import ModelError

GRID = 7  # the bundled encoder's grid side at 224 px
POOLINGS = ("max", "noisy-or")
_FLOOR = 1e-12


def window_boxes(sizes: tuple[int, ...], grid: int = GRID) -> list[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) of every window: for each size k, k x k windows whose starts spread evenly
    from 0 to ``grid - k`` (two per side for k >= 4, three below), so they overlap and cover the grid."""
    boxes: list[tuple[int, int, int, int]] = []
    for k in sizes:
        if not 1 <= k <= grid:
            raise ModelError(f"region windows must be 1..{grid} cells wide, got {k}")
        count = 1 if k == grid else (2 if k >= 4 else 3)
        starts = sorted({round(float(x)) for x in np.linspace(0, grid - k, count)})
        boxes.extend((r, r + k, c, c + k) for r in starts for c in starts)
    return list(dict.fromkeys(boxes))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class RegionEvidence:
    """Window sizes over the grid (7 = the whole frame, which is always included), the pooling and the weight of
    a window's probability against the whole frame's."""

    sizes: tuple[int, ...] = (GRID,)
    pooling: str = "max"
    region_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ModelError(f"region pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if not 0.0 < self.region_weight <= 1.0:
            raise ModelError(f"region weight must be in (0, 1], got {self.region_weight}")
        window_boxes(self.sizes)  # fails on a bad size here, not at the first photo

    @property
    def whole_frame_only(self) -> bool:
        return not self.windows

    @cached_property
    def windows(self) -> list[tuple[int, int, int, int]]:
        """The windows other than the whole frame."""
        return [box for box in window_boxes(self.sizes) if box != (0, GRID, 0, GRID)]

    def evidence(
        self, logits: np.ndarray, grid: np.ndarray | None, classifier: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        """(N, classes) log of each class's pooled probability, from the whole frame's ``logits`` (N, classes)
        and the feature ``grid`` (N, D, 7, 7); the whole-frame log-probabilities when there are no windows."""
        logits = np.asarray(logits, dtype=np.float64)
        whole = _softmax(logits)
        if self.whole_frame_only:
            return np.log(np.maximum(whole, _FLOOR)).astype(np.float32)
        if grid is None or grid.ndim != 4 or grid.shape[2:] != (GRID, GRID):
            raise ModelError(f"region evidence needs the {GRID}x{GRID} feature grid")
        weight, bias = classifier
        means = np.stack([grid[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for r0, r1, c0, c1 in self.windows], axis=1)
        regions = _softmax(means.astype(np.float32) @ weight.T + bias) * self.region_weight  # (N, W, classes)
        if self.pooling == "max":
            pooled = np.maximum(whole, regions.max(axis=1))
        else:
            pooled = 1.0 - (1.0 - whole) * np.prod(1.0 - regions, axis=1)
        return np.log(np.maximum(pooled, _FLOOR)).astype(np.float32)

    def to_card(self) -> dict[str, Any]:
        return {"sizes": list(self.sizes), "pooling": self.pooling, "region_weight": self.region_weight}

    @classmethod
    def from_card(cls, card: dict[str, Any] | None) -> RegionEvidence:
        """The settings saved in a concept card (none saved: the whole frame alone, as before regions)."""
        if not card:
            return cls()
        try:
            return cls(tuple(int(k) for k in card["sizes"]), str(card["pooling"]), float(card["region_weight"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"unreadable region evidence settings ({error})") from None
